// The peer's half of bench/ml.sh: onnxruntime-node on the same model files
// and rows as wanwu's Go benchmarks (internal/ml/bench_test.go), one
// thread, and the summary of both halves.
//
//   node --expose-gc bench/ml.mjs run ORTDIR [--rounds R] [--round-ms MS] [--sessions K] PREFIX...
//   node bench/ml.mjs summary FILE
//
// run: ORTDIR holds node_modules/onnxruntime-node; each PREFIX names
// PREFIX.onnx and PREFIX.inputs.json (internal/ml/testdata/pca8, ...).
// Sessions are made with intraOpNumThreads 1, interOpNumThreads 1,
// executionMode sequential and the default graph optimisations, from the
// model's bytes as wanwu loads them. It prints "mlbench ort ..." lines:
//   env    the first InferenceSession.create of the process (ORT's
//          environment made, then the session) and what it added to RSS;
//   load   per model: create time (median of K sessions made one after
//          the other, after the first) and the RSS each adds (K held at
//          once, after a GC);
//   infer  per model and round: ns per call, the rows of the inputs file
//          in turn, after a warm-up: api is `await session.run(feeds)` as
//          a Node program calls it, binding the native session's
//          synchronous run (what is left without the API's event-loop hop).
// summary: reads the "mlbench" lines and the Go benchmark lines of FILE
// and prints the medians over the rounds and the ratios wanwu/onnxruntime.
import { createRequire } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'run') {
  await run(args);
} else if (cmd === 'summary') {
  summary(args[0]);
} else {
  console.error('usage: node --expose-gc bench/ml.mjs run ORTDIR [--rounds R] [--round-ms MS] [--sessions K] PREFIX...\n       node bench/ml.mjs summary FILE');
  process.exit(2);
}

async function run(argv) {
  const opts = { rounds: 5, 'round-ms': 1000, sessions: 100 };
  const prefixes = [];
  const modules = argv.shift();
  while (argv.length > 0) {
    const a = argv.shift();
    if (a.startsWith('--')) {
      opts[a.slice(2)] = Number(argv.shift());
    } else {
      prefixes.push(a);
    }
  }
  if (!modules || prefixes.length === 0) {
    console.error('run: ORTDIR and at least one PREFIX');
    process.exit(2);
  }
  const require = createRequire(join(modules, 'package.json'));
  const ort = require('onnxruntime-node');
  const { binding, initOrt } = require('onnxruntime-node/dist/binding');
  const version = require('onnxruntime-node/package.json').version;
  const sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' };
  const gc = globalThis.gc ?? (() => {});
  const rss = () => { gc(); gc(); return process.memoryUsage.rss(); };
  const now = () => process.hrtime.bigint();
  const arrays = { float32: Float32Array, float64: Float64Array };

  const models = prefixes.map((p) => {
    const inputs = JSON.parse(readFileSync(`${p}.inputs.json`, 'utf8'));
    const dtype = inputs.dtype ?? 'float64';
    return {
      name: basename(p),
      bytes: readFileSync(`${p}.onnx`),
      inputs,
      feeds: inputs.rows.map((row) => ({ [inputs.input]: new ort.Tensor(dtype, arrays[dtype].from(row), inputs.shape) })),
      fetches: Object.fromEntries((inputs.outputs ?? [inputs.output]).map((o) => [o, null])),
    };
  });

  // The first session of the process makes ORT's environment.
  {
    const r0 = rss();
    const t0 = now();
    const s = await ort.InferenceSession.create(models[0].bytes, sessionOptions);
    const ms = Number(now() - t0) / 1e6;
    const r1 = rss();
    console.log(`mlbench ort env version=${version} model=${models[0].name} first_create_ms=${ms.toFixed(3)} rss_B=${r1 - r0}`);
    await s.release();
  }

  for (const m of models) {
    const times = [];
    const held = [];
    const r0 = rss();
    for (let i = 0; i < opts.sessions; i++) {
      const t0 = now();
      held.push(await ort.InferenceSession.create(m.bytes, sessionOptions));
      times.push(Number(now() - t0));
    }
    const r1 = rss();
    for (const s of held) {
      await s.release();
    }
    console.log(`mlbench ort load model=${m.name} size_B=${m.bytes.length} create_ns=${median(times.slice(1)).toFixed(0)} rss_B_per_session=${((r1 - r0) / opts.sessions).toFixed(0)} sessions=${opts.sessions}`);
  }

  for (const m of models) {
    const session = await ort.InferenceSession.create(m.bytes, sessionOptions);
    initOrt();
    const native = new binding.InferenceSession();
    await native.loadModel(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength, sessionOptions);
    const rows = m.feeds.length;
    const api = async (n) => {
      const t0 = now();
      for (let i = 0; i < n; i++) {
        await session.run(m.feeds[i % rows]);
      }
      return Number(now() - t0) / n;
    };
    const sync = (n) => {
      const t0 = now();
      for (let i = 0; i < n; i++) {
        native.run(m.feeds[i % rows], m.fetches, {});
      }
      return Number(now() - t0) / n;
    };
    // Warm-up, which also sizes a round to about round-ms.
    const perApi = await api(2000);
    const perSync = sync(2000);
    const nApi = Math.max(1000, Math.round((opts['round-ms'] * 1e6) / perApi));
    const nSync = Math.max(1000, Math.round((opts['round-ms'] * 1e6) / perSync));
    // Per call: each call timed with process.hrtime.bigint, for about
    // round-ms of calls; the p50, p99 and slowest (nearest rank).
    const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
    const percall = async (call) => {
      const times = [];
      let spent = 0n;
      const limit = BigInt(opts['round-ms']) * 1000000n;
      for (let i = 0; spent < limit; i++) {
        const t0 = now();
        const p = call(i);
        if (p) await p;
        const d = now() - t0;
        times.push(d);
        spent += d;
      }
      times.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return `p50_ns=${pct(times, 0.5)} p99_ns=${pct(times, 0.99)} max_ns=${times[times.length - 1]} calls=${times.length}`;
    };
    // Rate: calls in a tight loop for about round-ms (the clock read every
    // 64 calls): calls per second of wall time and per second of the
    // process's CPU time (user + system: Node's other threads included).
    const rate = async (call) => {
      const limit = BigInt(opts['round-ms']) * 1000000n;
      const c0 = process.cpuUsage();
      const t0 = now();
      let calls = 0;
      let wall;
      for (;;) {
        for (let k = 0; k < 64; k++) {
          const p = call(calls++);
          if (p) await p;
        }
        if ((wall = now() - t0) >= limit) break;
      }
      const c = process.cpuUsage(c0);
      const cpuS = (c.user + c.system) / 1e6;
      const wallS = Number(wall) / 1e9;
      return `per_s=${(calls / wallS).toFixed(0)} per_cpu_s=${(calls / cpuS).toFixed(0)} calls=${calls} wall_ms=${(wallS * 1e3).toFixed(1)} cpu_ms=${(cpuS * 1e3).toFixed(1)}`;
    };
    const apiCall = (i) => session.run(m.feeds[i % rows]);
    // percall and rate await a call only when it returns a Promise: the
    // native run is synchronous and gets no microtask turn.
    const syncCall = (i) => { native.run(m.feeds[i % rows], m.fetches, {}); };
    for (let r = 1; r <= opts.rounds; r++) {
      const a = await api(nApi);
      const b = sync(nSync);
      console.log(`mlbench ort infer model=${m.name} round=${r} api_ns=${a.toFixed(0)} binding_ns=${b.toFixed(0)} calls=${nApi}/${nSync}`);
      console.log(`mlbench ort latency model=${m.name} layer=api ${await percall(apiCall)}`);
      console.log(`mlbench ort latency model=${m.name} layer=binding ${await percall(syncCall)}`);
      console.log(`mlbench ort rate model=${m.name} layer=api ${await rate(apiCall)}`);
      console.log(`mlbench ort rate model=${m.name} layer=binding ${await rate(syncCall)}`);
    }
    await session.release();
  }
}

function summary(file) {
  const text = readFileSync(file, 'utf8');
  const go = {}; // "ModelInfer/pca8/session" → {unit: [values]}
  const ort = { env: [], load: {}, infer: {} };
  const percall = {}; // "go latency pca8 session", "ort rate ae32 binding" → {figure: [values]}
  const other = {};
  const push = (o, k, v) => { (o[k] ??= []).push(v); };
  for (const line of text.split('\n')) {
    let m = line.match(/^Benchmark(\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$/);
    if (m) {
      push(go[m[1]] ??= {}, 'calls', Number(m[2]));
      const fields = m[3].trim().split(/\s+/);
      for (let i = 0; i + 1 < fields.length; i += 2) {
        push(go[m[1]] ??= {}, fields[i + 1], Number(fields[i]));
      }
      continue;
    }
    m = line.match(/^mlbench (\S+) (\S+) (.*)$/);
    if (!m) continue;
    const kv = Object.fromEntries(m[3].split(/\s+/).map((f) => f.split('=')));
    if (m[1] === 'ort' && m[2] === 'env') {
      ort.env.push(kv);
    } else if (m[1] === 'ort' && m[2] === 'load') {
      for (const k of ['create_ns', 'rss_B_per_session', 'size_B']) push(ort.load[kv.model] ??= {}, k, Number(kv[k]));
    } else if (m[2] === 'latency' || m[2] === 'rate') {
      // "go latency model=M ...", "ort rate model=M layer=api ...": per
      // model and layer (Go: session), a list per figure over the rounds.
      const key = `${m[1]} ${m[2]} ${kv.model} ${kv.layer ?? 'session'}`;
      for (const k of ['p50_ns', 'p99_ns', 'max_ns', 'per_s', 'per_cpu_s', 'calls']) {
        if (kv[k] !== undefined) push(percall[key] ??= {}, k, Number(kv[k]));
      }
    } else if (m[1] === 'ort' && m[2] === 'infer') {
      for (const k of ['api_ns', 'binding_ns']) push(ort.infer[kv.model] ??= {}, k, Number(kv[k]));
    } else {
      for (const [k, v] of Object.entries(kv)) push(other[`${m[1]} ${m[2]}`] ??= {}, k, Number(v));
    }
  }
  const g = (bench, unit) => (go[bench]?.[unit] ? median(go[bench][unit]) : NaN);
  const o = (table, model, k) => (table[model]?.[k] ? median(table[model][k]) : NaN);
  const us = (ns) => (ns / 1e3).toFixed(1);
  const kib = (b) => (b / 1024).toFixed(1);
  const x = (a, b) => `${(a / b).toFixed(2)}×`;
  const n = () => Math.max(0, ...Object.values(go).map((u) => u['ns/op']?.length ?? 0));
  const models = Object.keys(ort.infer);

  console.log(`\nmedians over ${n()} Go rounds and ${ort.infer[models[0]]?.api_ns.length ?? 0} onnxruntime rounds (${ort.env[0]?.version ? 'onnxruntime-node ' + ort.env[0].version : 'no onnxruntime'})\n`);
  console.log('| model | wanwu Session.Infer | gonnx Run alone | onnxruntime await run() | onnxruntime native run | Infer / await run() | gonnx / native run |');
  console.log('|---|---|---|---|---|---|---|');
  for (const m of models) {
    const si = g(`ModelInfer/${m}/session`, 'ns/op');
    const gr = g(`ModelInfer/${m}/gonnx`, 'ns/op');
    const oa = o(ort.infer, m, 'api_ns');
    const ob = o(ort.infer, m, 'binding_ns');
    console.log(`| ${m} | ${us(si)} µs | ${us(gr)} µs | ${us(oa)} µs | ${us(ob)} µs | **${x(si, oa)}** | ${x(gr, ob)} |`);
  }
  const pc = (key, k) => (percall[key]?.[k] ? median(percall[key][k]) : NaN);
  const range = (f) => {
    const xs = f();
    return xs.length > 1 ? ` (rounds ${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})` : '';
  };
  // The ratio of round i's figures, for the ranges.
  const rounds = (a, b, k) => (percall[a]?.[k] ?? []).map((v, i) => v / percall[b]?.[k]?.[i]).filter(Number.isFinite);
  if (Object.keys(percall).length > 0) {
    const rows = [
      ['wanwu `Session.Infer`', 'go', 'session'],
      ['onnxruntime `await session.run()`', 'ort', 'api'],
      ['onnxruntime native `run` (sync)', 'ort', 'binding'],
    ];
    const nr = Math.max(0, ...Object.values(percall).map((u) => u.calls?.length ?? 0));
    console.log(`\nper call, each call timed (one thread; medians over ${nr} rounds of about 1 s of calls each): p50 / p99`);
    console.log(`\n| per call: p50 / p99 | ${models.join(' | ')} |`);
    console.log(`|---|${models.map(() => '---|').join('')}`);
    for (const [label, side, layer] of rows) {
      console.log(`| ${label} | ${models.map((m) => `${us(pc(`${side} latency ${m} ${layer}`, 'p50_ns'))} / ${us(pc(`${side} latency ${m} ${layer}`, 'p99_ns'))} µs`).join(' | ')} |`);
    }
    for (const [q, k] of [['p50', 'p50_ns'], ['p99', 'p99_ns']]) {
      console.log(`| **ratio ${q}** (Infer / await run) | ${models.map((m) => `**${x(pc(`go latency ${m} session`, k), pc(`ort latency ${m} api`, k))}**${range(() => rounds(`go latency ${m} session`, `ort latency ${m} api`, k))}`).join(' | ')} |`);
    }
    for (const [q, k] of [['p50', 'p50_ns'], ['p99', 'p99_ns']]) {
      console.log(`| ratio ${q} (Infer / native run) | ${models.map((m) => x(pc(`go latency ${m} session`, k), pc(`ort latency ${m} binding`, k))).join(' | ')} |`);
    }
    console.log(`| slowest timed call, wanwu / await run / native run (max over rounds) | ${models.map((m) => ['go latency ' + m + ' session', 'ort latency ' + m + ' api', 'ort latency ' + m + ' binding'].map((key) => (Math.max(...(percall[key]?.max_ns ?? [NaN])) / 1e6).toFixed(1)).join(' / ') + ' ms').join(' | ')} |`);
    const k = (v) => `${(v / 1e3).toFixed(1)}k`;
    console.log(`\n| inferences/s per core (one thread, tight loop ~1 s): per s of wall time / per s of process CPU | ${models.join(' | ')} |`);
    console.log(`|---|${models.map(() => '---|').join('')}`);
    for (const [label, side, layer] of rows) {
      console.log(`| ${label} | ${models.map((m) => `${k(pc(`${side} rate ${m} ${layer}`, 'per_s'))} / ${k(pc(`${side} rate ${m} ${layer}`, 'per_cpu_s'))}`).join(' | ')} |`);
    }
    console.log(`| **ratio** (wanwu / await run), wall / CPU | ${models.map((m) => `**${x(pc(`go rate ${m} session`, 'per_s'), pc(`ort rate ${m} api`, 'per_s'))}**${range(() => rounds(`go rate ${m} session`, `ort rate ${m} api`, 'per_s'))} / ${x(pc(`go rate ${m} session`, 'per_cpu_s'), pc(`ort rate ${m} api`, 'per_cpu_s'))}`).join(' | ')} |`);
    console.log(`| ratio (wanwu / native run), wall / CPU | ${models.map((m) => `${x(pc(`go rate ${m} session`, 'per_s'), pc(`ort rate ${m} binding`, 'per_s'))} / ${x(pc(`go rate ${m} session`, 'per_cpu_s'), pc(`ort rate ${m} binding`, 'per_cpu_s'))}`).join(' | ')} |`);
  }
  const sum = (xs) => (xs ?? []).reduce((a, b) => a + b, 0);
  for (const m of models) {
    const b = go[`ModelInfer/${m}/session`];
    if (b?.['max-ns']) {
      console.log(`\n${m}: wanwu's slowest Session.Infer call ${(Math.max(...b['max-ns']) / 1e6).toFixed(2)} ms; ${sum(b['late-calls'])} of ${sum(b.calls)} calls over the model's 10 ms budget`);
    }
  }
  console.log('\n| model | bytes | wanwu Load (incl. trial run) | onnxruntime create | load ratio | wanwu heap / RSS per loaded model | onnxruntime RSS per session |');
  console.log('|---|---|---|---|---|---|---|');
  for (const m of models) {
    const gl = g(`ModelLoad/${m}`, 'ns/op');
    const oc = o(ort.load, m, 'create_ns');
    console.log(`| ${m} | ${o(ort.load, m, 'size_B')} | ${us(gl)} µs | ${us(oc)} µs | ${x(gl, oc)} | ${kib(g(`ModelLoad/${m}`, 'heap-B/model'))} / ${kib(g(`ModelLoad/${m}`, 'rss-B/model'))} KiB (+ ${kib(g(`ModelLoad/${m}`, 'stack-B/model'))} KiB stack) | ${kib(o(ort.load, m, 'rss_B_per_session'))} KiB |`);
  }
  if (ort.env.length > 0) {
    const ms = median(ort.env.map((e) => Number(e.first_create_ms)));
    const r = median(ort.env.map((e) => Number(e.rss_B)));
    console.log(`\nonnxruntime's first session in a process (its environment made, then the session): ${ms.toFixed(1)} ms, RSS +${kib(r)} KiB (median of ${ort.env.length} processes)`);
  }
  const tp = g('TrainPCA', 'ns/op');
  if (!Number.isNaN(tp)) {
    let line = `\nTrainPCA, 100,000 vectors of 8 features: ${(tp / 1e6).toFixed(1)} ms (${g('TrainPCA', 'ns/vector').toFixed(0)} ns per vector)`;
    const np = other['numpy pca']?.ms;
    if (np) line += `; the same computation in numpy (one BLAS thread): ${median(np).toFixed(1)} ms, ratio ${x(tp / 1e6, median(np))}`;
    console.log(line);
  }
}
