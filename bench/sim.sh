#!/usr/bin/env bash
# The simulator's own cost (issue 17): CPU-seconds and resident memory per
# simulated device, at 1,000 and 10,000 devices, so that other benchmarks
# that use `wanwu sim` as their load can subtract it. One hub runs in its own
# process; each run starts `wanwu sim` against it and reads the sim's
# /proc figures: the CPU it spent starting its devices (provisioning, TLS and
# DTLS handshakes through the emulated links), then the CPU of a steady
# window, and its resident memory at the end. The hub's CPU in the same
# window is printed beside it.
#
#   bench/sim.sh                       # city at 1000 and 10000, factory at 1000 and 10000
#   RUNS="city:1000" WINDOW=60 bench/sim.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-"city:1000 city:10000 factory:1000 factory:10000"}
WINDOW=${WINDOW:-120} # seconds of steady state measured
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/wanwu" ./cmd/wanwu
ulimit -n 20000

cpu() { # utime+stime of a process, in seconds
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}
mem() { # resident and peak resident memory, KiB
	awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {print r, h}' "/proc/$1/status"
}

printf '%-8s %7s %8s %9s %11s %14s %12s %12s %14s\n' scenario devices online "msg/s" "start_cpu_s" "cpu_ms/dev/min" "rss_KiB/dev" "hwm_KiB/dev" "hub_cpu_ms/min"
for run in $RUNS; do
	scenario=${run%%:*} n=${run##*:}
	dir="$tmp/hub-$scenario-$n"
	"$tmp/wanwu" hub --data-dir "$dir" --http.listen 127.0.0.1:18080 --mqtt.listen "" \
		--mqtt.tls-listen 127.0.0.1:18883 --coap.dtls-listen 127.0.0.1:15684 --log.level warn >"$tmp/hub.log" 2>&1 &
	hub=$!
	for _ in $(seq 100); do [ -s "$dir/admin.token" ] && curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.2; done
	start=$(date +%s.%N)
	"$tmp/wanwu" sim --scenario "$scenario" --devices "$n" --data-dir "$dir" --hub http://127.0.0.1:18080 \
		--mqtt mqtts://127.0.0.1:18883 --coap coaps://127.0.0.1:15684 --state "$tmp/state.json" \
		--duration 100000s --summary "$tmp/sum.json" >"$tmp/sim.out" 2>&1 &
	sim=$!
	# The ramp is 5 ms a device (at most 2 minutes); the steady window starts
	# 20 s after it.
	ramp=$(awk -v n="$n" 'BEGIN { r = n * 0.005; if (r < 2) r = 2; if (r > 120) r = 120; print r }')
	until grep -q "devices of scenario" "$tmp/sim.out" 2>/dev/null; do sleep 0.5; kill -0 $sim; done
	sleep "$(awk -v r="$ramp" 'BEGIN { print r + 20 }')"
	c0=$(cpu $sim) h0=$(cpu $hub) t0=$(date +%s.%N)
	startcpu=$c0
	sleep "$WINDOW"
	c1=$(cpu $sim) h1=$(cpu $hub) t1=$(date +%s.%N)
	read -r rss hwm <<<"$(mem $sim)"
	kill -INT $sim
	wait $sim || true
	kill -INT $hub
	wait $hub || true
	python3 - "$tmp/sum.json" "$scenario" "$n" "$startcpu" "$c0" "$c1" "$t0" "$t1" "$rss" "$hwm" "$h0" "$h1" <<'PY'
import json, sys
f, sc, n, startcpu, c0, c1, t0, t1, rss, hwm, h0, h1 = sys.argv[1:]
n = int(n); s = json.load(open(f))["sim"]
mins = (float(t1) - float(t0)) / 60
rate = s["messages"] / max(s["uptime_s"], 1)
print("%-8s %7d %8d %9.1f %11.1f %14.3f %12.1f %12.1f %14.1f" % (sc, n, s["online"], rate, float(startcpu),
      (float(c1) - float(c0)) * 1000 / n / mins, int(rss) / n, int(hwm) / n, (float(h1) - float(h0)) * 1000 / mins))
PY
done
