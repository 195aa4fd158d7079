// The piece of CodeMirror 5's API that codemirror-rego's mode.js calls when
// it loads (build.mjs points its require('codemirror') here): the mode
// factory it defines is kept for rego.js.
const modes = new Map();

export function defineMode(name, factory) {
  modes.set(name, factory);
}

export function defineMIME() {}

export function mode(name) {
  const factory = modes.get(name);
  if (!factory) throw new Error(`no CodeMirror 5 mode ${name}`);
  return factory;
}
