// Writes pca8.reference.json: the outputs onnxruntime gives for the model
// pca8.onnx on the rows of pca8.inputs.json. See README.md.
//
//   node reference.mjs <dir with node_modules/onnxruntime-node>
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const modules = process.argv[2];
if (!modules) {
  console.error('usage: node reference.mjs <dir where onnxruntime-node is installed>');
  process.exit(2);
}
const require = createRequire(join(modules, 'package.json'));
const ort = require('onnxruntime-node');
const version = require('onnxruntime-node/package.json').version;

const inputs = JSON.parse(readFileSync(join(here, 'pca8.inputs.json'), 'utf8'));
const session = await ort.InferenceSession.create(readFileSync(join(here, 'pca8.onnx')));
const outputs = [];
for (const row of inputs.rows) {
  const feeds = { [inputs.input]: new ort.Tensor('float64', Float64Array.from(row), inputs.shape) };
  const result = await session.run(feeds);
  outputs.push(Array.from(result[inputs.output].data));
}
const doc = { producer: `onnxruntime-node ${version}`, outputs };
writeFileSync(join(here, 'pca8.reference.json'), JSON.stringify(doc, null, 2) + '\n');
console.log(`wrote pca8.reference.json: ${outputs.length} rows, ${doc.producer}`);
