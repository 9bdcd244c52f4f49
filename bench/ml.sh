#!/usr/bin/env bash
# Models (issue 21): wanwu's pure-Go ONNX runtime (internal/ml, gonnx) side
# by side with onnxruntime-node on one thread, in one run, on the same model
# files and rows (bench/RESULTS.md, "Models (issue 21)"):
#
#   inference  ns per call of pca8 (the PCA model of internal/ml's reference
#              test, 8 features, doubles) and ae32 (an MLP autoencoder
#              32-16-8-16-32, floats, Gemm+Relu): wanwu's Session.Infer and
#              gonnx's Model.Run alone (BenchmarkModelInfer, -cpu 1) beside
#              onnxruntime's `await session.run()` and its native run
#              (bench/ml.mjs; intraOpNumThreads=1, interOpNumThreads=1,
#              executionMode sequential).
#   per call   p50 and p99 of single calls, each timed (TestInferLatency
#              with -ml.latency 1s: time.Now around Session.Infer; bench/ml.mjs:
#              process.hrtime.bigint around `await session.run()` and the
#              native run), about 1 s of calls per model and layer.
#   per core   inferences per second on one thread (GOMAXPROCS=1; the
#              peer's one thread): calls in a tight loop for about 1 s,
#              per second of wall time and per second of process CPU time.
#   load       Runtime.Load (parse, checks, gonnx model, trial inference)
#              and the heap, stack and RSS a loaded model holds
#              (BenchmarkModelLoad) beside InferenceSession.create and the
#              RSS a session holds.
#   training   TrainPCA on 100,000 vectors of 8 features (BenchmarkTrainPCA,
#              -cpu 1); beside it, when python3 has numpy, the same
#              computation in numpy on one BLAS thread.
#
# ROUNDS rounds (default 5) alternate the Go half and the Node half, so that
# both see the same machine load; the summary gives the medians and the
# ratios wanwu/onnxruntime. About 3 minutes (ROUNDS=3: 2).
#
#   bench/ml.sh
#   ROUNDS=3 bench/ml.sh
#   ORT_DIR=/tmp/ortnode bench/ml.sh   # where onnxruntime-node is (installed there if missing)
#   MAX_LOAD=1.0 bench/ml.sh           # each round first waits (up to 2 minutes) for the
#                                      # 1-minute load average to fall under 1.0
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
ORT_DIR=${ORT_DIR:-/tmp/ortnode}
MODELS="internal/ml/testdata/pca8 internal/ml/testdata/ae32"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! [ -d "$ORT_DIR/node_modules/onnxruntime-node" ]; then
	# --ignore-scripts: the CPU build is in the package; the install script
	# only fetches the CUDA provider.
	echo "# installing onnxruntime-node into $ORT_DIR" >&2
	mkdir -p "$ORT_DIR"
	(cd "$ORT_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
		npm install --ignore-scripts --no-audit --no-fund onnxruntime-node >&2)
fi

go test -c -o "$tmp/ml.test" ./internal/ml
out=$tmp/out
# gobench PATTERN BENCHTIME runs Go benchmarks on one core (GOMAXPROCS=1,
# as the peer runs on one thread) and adds their lines to $out.
gobench() {
	if ! (cd internal/ml && "$tmp/ml.test" -test.run '^$' -test.bench "$1" -test.benchtime "$2" -test.cpu 1) >"$tmp/go" 2>&1; then
		cat "$tmp/go" >&2
		exit 1
	fi
	grep '^Benchmark' "$tmp/go" | tee -a "$out"
}
# golatency runs TestInferLatency on one core: Session.Infer timed call by
# call (p50, p99) and in a tight loop (calls/s), 1 s each per model.
golatency() {
	if ! (cd internal/ml && "$tmp/ml.test" -test.run '^TestInferLatency$' -test.v -test.cpu 1 -ml.latency 1s) >"$tmp/go" 2>&1; then
		cat "$tmp/go" >&2
		exit 1
	fi
	grep -o 'mlbench go .*' "$tmp/go" | tee -a "$out"
}
echo "# $(date -u +%FT%TZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(go version | cut -d' ' -f3), node $(node --version), load average $(cut -d' ' -f1-3 /proc/loadavg)"
wait_load() {
	[ -n "${MAX_LOAD:-}" ] || return 0
	for _ in $(seq 24); do
		awk -v max="$MAX_LOAD" '{ exit !($1 < max) }' /proc/loadavg && return 0
		sleep 5
	done
}
for r in $(seq "$ROUNDS"); do
	wait_load
	echo "# round $r (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	gobench '^Benchmark(ModelInfer|ModelLoad)$' 1s
	golatency
	node --expose-gc bench/ml.mjs run "$ORT_DIR" --rounds 1 $MODELS | tee -a "$out"
done

echo "# training (load average $(cut -d' ' -f1-3 /proc/loadavg))"
gobench '^BenchmarkTrainPCA$' 5x
# A python3 with numpy: $PYTHON, else the first of python3 and Debian's
# /usr/bin/python3 (python3-numpy) that has it.
py=${PYTHON:-}
if [ -z "$py" ]; then
	for p in python3 /usr/bin/python3; do
		if "$p" -c 'import numpy' 2>/dev/null; then
			py=$p
			break
		fi
	done
fi
if [ -n "$py" ]; then
	# TrainPCA's computation in numpy: mean and sample std, the correlation
	# matrix, its eigenvectors, the components reaching 95 % of the
	# variance, every vector's reconstruction error, the 0.99 quantile.
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$py" - <<'EOF' | tee -a "$out"
import time
import numpy as np

rng = np.random.default_rng(9)
m, n, d = 100_000, 8, 3
x = rng.normal(size=(m, d)) @ rng.normal(size=(d, n)) + 0.1 * rng.normal(size=(m, n)) + rng.uniform(-5, 5, n)


def train(x):
    mean = x.mean(axis=0)
    c = x - mean
    cov = c.T @ c / (len(x) - 1)
    std = np.sqrt(np.diag(cov))
    vals, vecs = np.linalg.eigh(cov / np.outer(std, std))
    vals, vecs = vals[::-1], vecs[:, ::-1]
    k = int(np.searchsorted(np.cumsum(vals) / vals.sum(), 0.95) + 1)
    p = vecs[:, :k]
    z = c / std
    r = z - (z @ p) @ p.T
    s = np.sort((r * r).sum(axis=1))
    return k, 1.5 * s[int(np.ceil(0.99 * len(s))) - 1]


train(x)
for _ in range(5):
    t = time.perf_counter()
    train(x)
    print("mlbench numpy pca ms=%.3f vectors=%d numpy=%s" % ((time.perf_counter() - t) * 1e3, m, np.__version__))
EOF
else
	echo "# no python3 with numpy: no numpy figure (apt-get install python3-numpy, or PYTHON=...)"
fi

node bench/ml.mjs summary "$out"
