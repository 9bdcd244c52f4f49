#!/usr/bin/env bash
# The closed-loop benchmarks (issue 19), printed as "loopbench ..." lines
# and Go benchmark lines:
#
#   latency   device publish → decision → command received by the device,
#             measured at the device (10 probe devices, one clock), while
#             200 other devices send 10,000 messages/s of QoS 1 telemetry to
#             the same node (internal/loadgen). Side by side, in one run:
#             the peer, mosquitto plus a rule client (paho.golang, a process
#             of its own: subscribe, decide, publish the command: two broker
#             hops), then wanwu, `wanwu edge` as a process of its own running
#             two loops defined at a hub (in the test process). A Go test in
#             internal/hubtest (loopbench_test.go) that runs only with
#             WANWU_LOOP_BENCH=1; settings LOOP_* (see the test).
#   features  BenchmarkEngineIngest (internal/loop): samples taken into
#             feature windows and decisions evaluated per second of one core
#             (-cpu 1) with 10,000 objects, five features each.
#
#   bench/loops.sh                         # both, about 3 minutes
#   PARTS=latency LOOP_PROBE_EVERY=1s bench/loops.sh
#   PARTS=features FEATURE_OPS=100000x bench/loops.sh
#   EDGE_ARGS="--bus.sync 2s" LOOP_SYSTEMS=wanwu PARTS=latency bench/loops.sh
#   WANWU_BIN=/path/to/older/wanwu LOOP_SYSTEMS=wanwu PARTS=latency bench/loops.sh
#                                          # another build's edge, same harness
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"latency features"}
FEATURE_OPS=${FEATURE_OPS:-200000x} # 20 rounds of 10,000 objects: 100 s of their time
FEATURE_COUNT=${FEATURE_COUNT:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for part in $PARTS; do
	case $part in
	latency)
		if ! command -v "${LOOP_MOSQUITTO:-mosquitto}" >/dev/null 2>&1; then
			echo "the peer needs mosquitto: apt-get install mosquitto" >&2
			exit 1
		fi
		bin=${WANWU_BIN:-$tmp/wanwu}
		[ -n "${WANWU_BIN:-}" ] || go build -o "$bin" ./cmd/wanwu
		go test -c -o "$tmp/hubtest.test" ./internal/hubtest
		ulimit -n 20000
		echo "# latency (load average $(cut -d' ' -f1-3 /proc/loadavg))"
		if ! (cd internal/hubtest && WANWU_LOOP_BENCH=1 WANWU_BIN="$bin" \
			"$tmp/hubtest.test" -test.run '^TestLoopBenchLatency$' -test.timeout 30m) >"$tmp/out" 2>&1; then
			cat "$tmp/out" >&2
			exit 1
		fi
		grep '^loopbench ' "$tmp/out"
		;;
	features)
		echo "# features (load average $(cut -d' ' -f1-3 /proc/loadavg))"
		go test -run '^$' -bench '^BenchmarkEngineIngest$' -benchtime "$FEATURE_OPS" -count "$FEATURE_COUNT" -cpu 1 ./internal/loop |
			grep -E '^(Benchmark|ok|FAIL)'
		;;
	*) echo "unknown part $part (latency features)" >&2; exit 2 ;;
	esac
done
