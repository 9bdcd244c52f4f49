#!/usr/bin/env bash
# Runs the Eclipse paho.mqtt.testing interoperability client tests (MQTT 3.1.1
# and 5, third_party/paho.mqtt.testing) against a fresh hub's anonymous
# development listener, prints one line per test, and fails only when a test
# listed in expected-pass.txt does not pass. Needs go and python3.
#
#   bench/interop/run.sh            # both suites
#   INTEROP_SUITES=5 bench/interop/run.sh
#   INTEROP_VERBOSE=1 ...           # also the suites' own output (tracebacks)
#
# Results are left in $INTEROP_OUT (default: a temporary directory, printed
# at the end): results-*.json, run-*.log (the suites' output), hub-*.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=bench/interop
export PYTHONDONTWRITEBYTECODE=1 # keep the vendored tree clean

if ! command -v python3 >/dev/null; then
  echo "interop: python3 not found; skipping the paho interoperability suites"
  exit 0
fi

out=${INTEROP_OUT:-$(mktemp -d -t wanwu-interop.XXXXXX)}
mkdir -p "$out"
go build -o "$out/wanwu" ./cmd/wanwu

# One hub per process: the suites use fixed client ids and clean retained
# messages with "#", so processes sharing a hub would disturb each other.
# MQTT 5 runs in three shards to keep the whole run near a minute.
hubs=()
cleanup() {
  for pid in "${hubs[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${hubs[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$out"/data-*
}
trap cleanup EXIT

# start_hub NAME: starts a hub whose development listener is on $port.
start_hub() {
  local name=$1 data="$out/data-$1"
  mkdir -p "$data"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$out/hub-$name.yaml" <<YAML
data_dir: $data
http:
  listen: 127.0.0.1:0
mqtt:
  listen: 127.0.0.1:0
  tls_listen: ""
  dev_listen: 127.0.0.1:$port
  # The suites use their own topics (TopicA, /TopicA, #, ...).
  dev_acl: ["#"]
coap:
  dtls_listen: ""
log:
  level: warn
YAML
  "$out/wanwu" hub --config "$out/hub-$name.yaml" >"$out/hub-$name.log" 2>&1 &
  hubs+=($!)
  local pid=$!
  for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "interop: hub $name exited:"; cat "$out/hub-$name.log"; return 1
    fi
    sleep 0.1
  done
  echo "interop: hub $name did not open $port"; return 1
}

runs=()
for suite in ${INTEROP_SUITES:-311 5}; do
  shards=1
  [ "$suite" = 5 ] && shards=3
  for ((i = 0; i < shards; i++)); do
    start_hub "$suite-$i"
    timeout 300 python3 "$here/paho_interop.py" --suite "$suite" --shard "$i/$shards" --port "$port" \
      --timeout "${INTEROP_TEST_TIMEOUT:-25}" --json "$out/results-$suite-$i.json" >"$out/run-$suite-$i.log" 2>&1 &
    runs+=($!)
  done
done
status=0
for pid in "${runs[@]}"; do wait "$pid" || status=$?; done
cat "$out"/run-*.log | grep '^RESULT' | sort -k2,2 -k3,3
if [ -n "${INTEROP_VERBOSE:-}" ]; then
  cat "$out"/run-*.log | grep -v '^RESULT'
fi
if [ "$status" != 0 ]; then
  echo "interop: a suite did not finish (exit $status):"
  cat "$out"/run-*.log | grep -v '^RESULT' | tail -40
  exit 1
fi

python3 - "$here/expected-pass.txt" "$out"/results-*.json <<'PY'
import json, sys
expected = [l.split("#")[0].strip() for l in open(sys.argv[1])]
expected = {l for l in expected if l}
results = {}
for f in sys.argv[2:]:
    results.update(json.load(open(f)))
for suite in sorted({k.split("/")[0] for k in results}):
    keys = [k for k in results if k.startswith(suite + "/")]
    ok = sum(results[k] == "pass" for k in keys)
    print(f"interop: MQTT {'3.1.1' if suite == '311' else '5'}: {ok}/{len(keys)} passed")
bad = sorted(k for k in expected if results.get(k) != "pass")
new = sorted(k for k in results if results[k] == "pass" and k not in expected)
for k in new:
    print(f"interop: {k} passes but is not in expected-pass.txt: add it")
if bad:
    for k in bad:
        print(f"interop: REGRESSION: {k} is expected to pass but got {results.get(k, 'no result')}")
    sys.exit(1)
PY
echo "interop: results in $out"
