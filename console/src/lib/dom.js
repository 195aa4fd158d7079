// el(tag, attrs, ...children) builds an element. Text always goes in as
// text nodes (never innerHTML), so server data cannot become markup.
// attrs: onX functions become listeners; true sets an empty attribute,
// false/null/undefined leave it out; value, checked, disabled, selected
// and hidden are set as properties; everything else with setAttribute.
// (No style attribute: the CSP admits none; use classes.)
const props = new Set(['value', 'checked', 'disabled', 'selected', 'hidden']);

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on') && typeof v === 'function') {
      node.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (props.has(k)) {
      node[k] = v;
    } else if (v === true) {
      node.setAttribute(k, '');
    } else if (v !== false && v !== null && v !== undefined) {
      node.setAttribute(k, String(v));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.append(c);
    else node.append(document.createTextNode(String(c)));
  }
}

// clear removes every child of node.
export function clear(node) {
  node.replaceChildren();
}
