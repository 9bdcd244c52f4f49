// Writes <name>.reference.json: what onnxruntime (the reference ONNX
// runtime, not wanwu's gonnx) outputs for <name>.onnx on the rows of
// <name>.inputs.json. internal/ml's tests run the same model with gonnx and
// compare (docs/MODELS.md, "Check it").
//
//   node reference.mjs <dir with node_modules/onnxruntime-node> [DIR [NAME...]]
//
// DIR defaults to this script's directory, the names to every *.onnx in it.
// Install onnxruntime-node once, in a scratch directory:
//   mkdir -p /tmp/ortnode && cd /tmp/ortnode && npm init -y && npm install --ignore-scripts onnxruntime-node
import { createRequire } from 'node:module';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [modules, dirArg, ...namesArg] = process.argv.slice(2);
if (!modules) {
  console.error('usage: node reference.mjs <dir where onnxruntime-node is installed> [DIR [NAME...]]');
  process.exit(2);
}
const require = createRequire(join(modules, 'package.json'));
const ort = require('onnxruntime-node');
const version = require('onnxruntime-node/package.json').version;

const dir = dirArg ?? dirname(fileURLToPath(import.meta.url));
const names = namesArg.length > 0 ? namesArg
  : readdirSync(dir).filter((f) => f.endsWith('.onnx')).map((f) => f.slice(0, -'.onnx'.length)).sort();
if (names.length === 0) {
  console.error(`no *.onnx in ${dir}`);
  process.exit(1);
}

const arrays = { float32: Float32Array, float64: Float64Array };
for (const name of names) {
  const inputs = JSON.parse(readFileSync(join(dir, `${name}.inputs.json`), 'utf8'));
  const dtype = inputs.dtype ?? 'float64';
  const outputNames = inputs.outputs ?? [inputs.output];
  const session = await ort.InferenceSession.create(readFileSync(join(dir, `${name}.onnx`)));
  const outputs = Object.fromEntries(outputNames.map((o) => [o, []]));
  for (const row of inputs.rows) {
    const feeds = { [inputs.input]: new ort.Tensor(dtype, arrays[dtype].from(row), inputs.shape) };
    const result = await session.run(feeds);
    for (const o of outputNames) {
      outputs[o].push(Array.from(result[o].data, Number));
    }
  }
  await session.release();
  const doc = { producer: `onnxruntime-node ${version}`, outputs };
  writeFileSync(join(dir, `${name}.reference.json`), JSON.stringify(doc, null, 2) + '\n');
  console.log(`wrote ${join(dir, `${name}.reference.json`)}: ${inputs.rows.length} rows, ${outputNames.join(', ')}, ${doc.producer}`);
}
