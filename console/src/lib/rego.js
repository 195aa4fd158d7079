// Rego syntax highlighting for CodeMirror 6: Styra's codemirror-rego mode
// (written for CodeMirror 5's stream modes) run by StreamLanguage, which
// takes the same token(stream, state) interface and maps its token names
// (keyword, builtin, variable-2, string-2...) to highlight tags.
import 'codemirror-rego/mode.js';
import { StreamLanguage } from '@codemirror/language';
import { mode } from './cm5shim.js';

export const rego = StreamLanguage.define(mode('rego')({}, {}));
