#!/usr/bin/env bash
# Peak RSS of a hub during one bulk CSV import (issue 14 point 8).
#
#   bench/import_rss.sh [ROWS] [WANWU_BINARY]
#
# Starts a hub on a temporary data directory (loopback, ephemeral ports),
# imports ROWS devices (default 3000) with hub-generated Ed25519 keys through
# 'wanwu ctl object import --out', and prints the hub's RSS before, its peak
# (VmHWM) and after, with the import's time. Give an older binary to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-3000}
bin=${2:-}
d=$(mktemp -d -t wanwu-import-rss.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null || true; wait "${pid:-}" 2>/dev/null || true; rm -rf "$d"' EXIT
if [ -z "$bin" ]; then
  bin=$d/wanwu
  go build -o "$bin" ./cmd/wanwu
fi
python3 - "$rows" >"$d/fleet.csv" <<'PY'
import sys
print("code,kind,key_alg,path,tags")
for i in range(int(sys.argv[1])):
    print(f"acme:r-{i:06d},device,ed25519,plant-1/line-{i%7},batch=b{i%13}")
PY
cat >"$d/hub.yaml" <<YAML
data_dir: $d/data
http:
  listen: 127.0.0.1:0
mqtt:
  listen: 127.0.0.1:0
  tls_listen: ""
coap:
  dtls_listen: ""
log:
  level: warn
YAML
"$bin" hub --config "$d/hub.yaml" >"$d/hub.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -f "$d/data/hub.url" ] && break; sleep 0.2; done
sleep 1
"$bin" ctl tenant create acme --data-dir "$d/data" >/dev/null
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
before=$(rss VmRSS)
start=$(date +%s.%N)
"$bin" ctl object import "$d/fleet.csv" --out "$d/keys" --data-dir "$d/data" >"$d/out.txt" 2>"$d/err.txt" || true
end=$(date +%s.%N)
sleep 1
echo "$rows rows ($(wc -c <"$d/fleet.csv") bytes of CSV): hub RSS before $((before / 1024)) MiB, peak $(($(rss VmHWM) / 1024)) MiB, after $(($(rss VmRSS) / 1024)) MiB;" \
  "$(tail -1 "$d/out.txt"); $(ls "$d/keys" | wc -l) key directories; $(python3 -c "print(round($end - $start, 1))") s"
