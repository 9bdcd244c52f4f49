#!/usr/bin/env bash
# The console's benchmark (issue 20), beside the web UI of Prometheus, the
# console a Prometheus user already has, in one run on one machine:
#
#   page weight   bytes a first visit transfers (cache cleared) and requests,
#                 for the fleet and the device page of `wanwu demo` (its 200
#                 devices running) and for Prometheus's graph page showing
#                 one expression; the median of 5 loads each
#   first paint   first contentful paint of the same loads, from the
#                 browser's Performance API (headless Chromium, chromedp)
#   live charts   server CPU per open live chart: the process's CPU over a
#                 window with none open, then with N open (wanwu: N server-
#                 sent event streams of the device page; Prometheus: N
#                 clients asking query_range for the last 15 minutes every
#                 second, as a dashboard's live panel does)
#
# It is TestConsoleBench in internal/cli, run only with WANWU_CONSOLE_BENCH=1.
# Needs Debian's chromium and prometheus (apt-get install chromium prometheus).
#
#   bench/console.sh
#   WANWU_CONSOLE_BENCH_STREAMS=100 WANWU_CONSOLE_BENCH_SECONDS=60 bench/console.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for need in chromium prometheus; do
  command -v "$need" >/dev/null || { echo "bench/console.sh needs $need (apt-get install $need)"; exit 1; }
done
WANWU_CONSOLE_BENCH=1 WANWU_BROWSER_TESTS=require go test -count=1 -timeout 30m -run '^TestConsoleBench$' -v ./internal/cli 2>&1 |
  grep -E '^\s+consolebench_test.go|^(--- |ok|FAIL|PASS)' | sed -E 's/^\s+consolebench_test.go:[0-9]+: //'
