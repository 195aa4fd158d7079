// Compiles AnchorRegistry.sol with the pinned solc (package.json) through its
// standard JSON interface and writes AnchorRegistry.abi and AnchorRegistry.bin.
// The output depends on the source bytes and these settings only, so two runs
// give identical files (the CBOR metadata hash solc appends is kept: it is a
// hash of the source and settings).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import solc from 'solc';

const SOLC_VERSION = '0.8.37';
const NAME = 'AnchorRegistry';
const here = dirname(fileURLToPath(import.meta.url));

if (!solc.version().startsWith(SOLC_VERSION + '+')) {
  console.error(`solc ${solc.version()} installed, ${SOLC_VERSION} required: run npm ci`);
  process.exit(1);
}

const file = `${NAME}.sol`;
const input = {
  language: 'Solidity',
  sources: { [file]: { content: readFileSync(join(here, file), 'utf8') } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'osaka',
    outputSelection: { [file]: { [NAME]: ['abi', 'evm.bytecode.object'] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const e of output.errors ?? []) {
  // Warnings fail the build too: the contract is small enough to keep clean.
  console.error(e.formattedMessage ?? e.message);
  failed = true;
}
if (failed) {
  process.exit(1);
}

const contract = output.contracts[file][NAME];
writeFileSync(join(here, `${NAME}.abi`), JSON.stringify(contract.abi, null, 2) + '\n');
// No trailing newline: abigen embeds the file's bytes verbatim.
writeFileSync(join(here, `${NAME}.bin`), contract.evm.bytecode.object);
