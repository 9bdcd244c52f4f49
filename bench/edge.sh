#!/usr/bin/env bash
# The edge link's benchmarks (issue 18), each a Go test in internal/hubtest
# (edgebench_test.go, edgepeer_test.go) that runs only with
# WANWU_EDGE_BENCH=1 and prints its figures as "edgebench ..." lines:
#
#   recovery  hub + edge in-process, 10 SDK devices over MQTT at 1,000
#             records/s; the link cut, or the hub restarted on its data
#             directory and ports, for 5 s and 30 s, 5 times each: ms from
#             the link's return to the first forwarded record durable at the
#             hub, and to a record sent during the outage queryable there
#   peer      the same with NATS: a hub nats-server sourcing an edge
#             nats-server's stream over a leaf node, default settings
#   drain     50 devices at RATE records/s (messages of 10 records); the
#             link cut for each of DRAIN_OUTAGES, then restored while the
#             devices go on: the backlog, its drain rate, the time to catch up
#   bytes     bytes on the edge→hub link per record (live and as a
#             backlog) beside the same records sent straight to the hub over
#             MQTT 5 + TLS, both counted at a TCP proxy
#   devices   `wanwu edge` as a process of its own with DEVICES (steps) SDK
#             devices each reporting 3 records every 5 s: its RSS and CPU
#
#   bench/edge.sh                                   # all of it, about an hour
#   PARTS="recovery peer" EDGE_REPS=3 bench/edge.sh
#   PARTS=drain DRAIN_OUTAGES="2m" bench/edge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"recovery peer drain bytes devices"}
DRAIN_OUTAGES=${DRAIN_OUTAGES:-"2m 10m"}
RATE=${RATE:-5000}
DEVICES=${DEVICES:-"1000 5000"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/wanwu" ./cmd/wanwu
go test -c -o "$tmp/hubtest.test" ./internal/hubtest
ulimit -n 20000
export WANWU_EDGE_BENCH=1 WANWU_BIN="$tmp/wanwu"

run() { # test name, then VAR=value settings for it
	local name=$1
	shift
	echo "# $name $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	if ! (cd internal/hubtest && env "$@" "$tmp/hubtest.test" -test.run "^$name\$" -test.timeout 3h) >"$tmp/out" 2>&1; then
		cat "$tmp/out" >&2
		exit 1
	fi
	grep '^edgebench ' "$tmp/out"
}

for part in $PARTS; do
	case $part in
	recovery) run TestEdgeBenchRecovery ;;
	peer) run TestEdgeBenchPeerNATS ;;
	drain) for o in $DRAIN_OUTAGES; do run TestEdgeBenchDrain EDGE_OUTAGE="$o" EDGE_RATE="$RATE"; done ;;
	bytes) run TestEdgeBenchLinkBytes ;;
	devices) run TestEdgeBenchDevices EDGE_DEVICE_STEPS="$DEVICES" ;;
	*) echo "unknown part $part (recovery peer drain bytes devices)" >&2; exit 2 ;;
	esac
done
