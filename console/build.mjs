// Builds dist/ from src/: one app.js (an ES module), one app.css and
// index.html. The output is committed and must come out byte for byte the
// same on every machine (make generate checks it), so: no timestamps, no
// source maps, no absolute paths (esbuild works relative to this folder),
// one entry point, and a fixed target.
import { build } from 'esbuild';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

// codemirror-rego is Styra's Rego mode for CodeMirror 5: it registers
// itself with require('codemirror').defineMode. Its require is pointed at a
// shim that keeps the mode so src/lib/rego.js can run it under CodeMirror
// 6's StreamLanguage; CodeMirror 5 itself is never bundled.
const cm5shim = {
  name: 'cm5shim',
  setup(b) {
    b.onResolve({ filter: /^codemirror$/ }, (args) =>
      args.importer.includes(`${'node_modules'}/codemirror-rego/`)
        ? { path: join(here, 'src', 'lib', 'cm5shim.js') }
        : undefined,
    );
  },
};

await rm(dist, { recursive: true, force: true });
await mkdir(dist);
const result = await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: false,
  legalComments: 'eof',
  charset: 'utf8',
  outdir: 'dist',
  metafile: true,
  logLevel: 'warning',
  plugins: [cm5shim],
});
for (const f of ['index.html', 'icon.svg']) await copyFile(join(here, 'src', f), join(dist, f));

const out = (await readdir(dist)).sort();
const want = ['app.css', 'app.js', 'icon.svg', 'index.html'];
if (out.join() !== want.join()) {
  throw new Error(`dist holds ${out.join(', ')}; want ${want.join(', ')}`);
}
for (const input of Object.keys(result.metafile.inputs)) {
  if (input.startsWith('/')) throw new Error(`absolute input path in the bundle: ${input}`);
}
