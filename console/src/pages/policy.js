// The Policy page. mount renders into el; see the shell (main.js) for ctx.
export function mount(el, ctx) {
  el.append(ctx.el('h1', { tabindex: '-1' }, 'Policy'));
}
