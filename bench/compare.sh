#!/usr/bin/env bash
# bench/compare.sh — MQTT figures for wanwu side by side with mosquitto, in one
# run on one machine, from one generator (`wanwu bench`), as DESIGN §7 and
# /PEERS.md ask. Writes its section of bench/RESULTS.md between the markers
# <!-- compare.sh:begin --> and <!-- compare.sh:end -->.
#
# For each target, on a fresh process:
#   1. idle:    IDLE connections held, target RSS growth per connection
#   2. ingest:  CLIENTS devices × N QoS 1 messages of SIZE bytes, as fast as an
#               in-flight window of INFLIGHT allows: acked msg/s, target
#               CPU-seconds per million messages, (device, seq) accounting
#   3. latency: the same devices at RATE msg/s each (below saturation):
#               publish→delivery percentiles
#
# Usage (from anywhere): bench/compare.sh      Environment: see the defaults below.
set -euo pipefail

N=${N:-100}                        # messages per client, ingest figure
CLIENTS=${CLIENTS:-1000}           # publishing devices
IDLE=${IDLE:-10000}                # idle connections
RATE=${RATE:-5}                    # msg/s per device, latency figure
RATE_MSGS=${RATE_MSGS:-50}         # messages per device, latency figure
QOS=${QOS:-1}
SUBQOS=${SUBQOS:-$QOS}             # the counting subscription's QoS
SIZE=${SIZE:-100}
INFLIGHT=${INFLIGHT:-16}
SRC=${SRC:-127.0.1.1-127.0.1.50}   # source addresses: 200 connections each at IDLE=10000
MOSQ_PORT=${MOSQ_PORT:-18830}      # PEERS.md
WANWU_MQTT=${WANWU_MQTT:-127.0.0.1:18831}
WANWU_HTTP=${WANWU_HTTP:-127.0.0.1:18080}
TIMEOUT=${TIMEOUT:-10s}            # a publish not acknowledged this long stalls its client

cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-bench/RESULTS.md}
command_line="$0${*:+ $*}"
env_line="N=$N CLIENTS=$CLIENTS IDLE=$IDLE RATE=$RATE RATE_MSGS=$RATE_MSGS QOS=$QOS SUBQOS=$SUBQOS SIZE=$SIZE INFLIGHT=$INFLIGHT SRC=$SRC"

log() { printf 'compare: %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
	as_root apt-get install -y "$@" >/dev/null || { as_root apt-get update >/dev/null && as_root apt-get install -y "$@" >/dev/null; }
}
if ! command -v mosquitto >/dev/null 2>&1; then
	log "installing the peer: mosquitto mosquitto-clients libcoap3-bin"
	apt_install mosquitto mosquitto-clients libcoap3-bin
fi
command -v jq >/dev/null 2>&1 || apt_install jq
MOSQUITTO=$(command -v mosquitto)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wanwu-compare.XXXXXX")
children=()
cleanup() {
	local pid
	for pid in "${children[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

log "building wanwu"
go build -o "$tmp/wanwu" ./cmd/wanwu
bench=("$tmp/wanwu" bench)

# wait_tcp HOST:PORT SECONDS PID: until something accepts, or PID died.
wait_tcp() {
	local host=${1%:*} port=${1##*:} i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$3" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	return 1
}

stop() { # stop PID: SIGTERM, wait, SIGKILL after 30 s
	local i
	kill "$1" 2>/dev/null || return 0
	for ((i = 0; i < 300; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# run_loads NAME PID BROKER [extra bench flags...]: the three figures into $tmp/NAME-*.json.
run_loads() {
	local name=$1 pid=$2 broker=$3
	shift 3
	local rc=0
	set -- --timeout "$TIMEOUT" "$@"
	log "$name: idle, $IDLE connections"
	"${bench[@]}" idle --broker "$broker" --clients "$IDLE" --source-addrs "$SRC" --target-pid "$pid" \
		--out "$tmp/$name-idle.json" "$@" >"$tmp/$name-idle.txt" 2>"$tmp/$name-idle.err" || rc=$?
	[ -s "$tmp/$name-idle.json" ] || { log "$name: idle failed: $(tail -n 3 "$tmp/$name-idle.err")"; return 1; }
	cat "$tmp/$name-idle.txt" >&2
	log "$name: ingest, $CLIENTS clients × $N messages"
	rc=0
	"${bench[@]}" mqtt --broker "$broker" --clients "$CLIENTS" --messages "$N" --qos "$QOS" --sub-qos "$SUBQOS" \
		--size "$SIZE" --inflight "$INFLIGHT" --source-addrs "$SRC" --target-pid "$pid" --out "$tmp/$name-ingest.json" "$@" \
		>"$tmp/$name-ingest.txt" 2>"$tmp/$name-ingest.err" || rc=$?
	[ -s "$tmp/$name-ingest.json" ] || { log "$name: ingest failed: $(tail -n 3 "$tmp/$name-ingest.err")"; return 1; }
	cat "$tmp/$name-ingest.txt" >&2
	[ "$rc" -eq 0 ] || log "$name: ingest exited $rc: $(tail -n 1 "$tmp/$name-ingest.err")"
	log "$name: latency, $CLIENTS clients × $RATE msg/s"
	rc=0
	"${bench[@]}" mqtt --broker "$broker" --clients "$CLIENTS" --messages "$RATE_MSGS" --rate "$RATE" --qos "$QOS" \
		--sub-qos "$SUBQOS" --size "$SIZE" --inflight "$INFLIGHT" --source-addrs "$SRC" --target-pid "$pid" \
		--out "$tmp/$name-latency.json" "$@" >"$tmp/$name-latency.txt" 2>"$tmp/$name-latency.err" || rc=$?
	[ -s "$tmp/$name-latency.json" ] || { log "$name: latency failed: $(tail -n 3 "$tmp/$name-latency.err")"; return 1; }
	cat "$tmp/$name-latency.txt" >&2
	[ "$rc" -eq 0 ] || log "$name: latency exited $rc: $(tail -n 1 "$tmp/$name-latency.err")"
	return 0
}

# ---- (1) mosquitto, configured exactly as PEERS.md says ----
cat >"$tmp/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
max_connections -1
# 0 = unlimited; the default (1000) dropped ~2% of a 100k QoS1 burst to a slow subscriber
max_queued_messages 0
max_inflight_messages 0
# say so in results: mosquitto does not persist per message
persistence false
EOF
mosq_status=ok
log "starting mosquitto on 127.0.0.1:$MOSQ_PORT"
"$MOSQUITTO" -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
mosq_pid=$!
children+=("$mosq_pid")
if ! wait_tcp "127.0.0.1:$MOSQ_PORT" 10 "$mosq_pid"; then
	mosq_status="mosquitto did not start: $(tail -n 3 "$tmp/mosquitto.log" | tr '\n' ' ')"
elif ! run_loads mosquitto "$mosq_pid" "tcp://127.0.0.1:$MOSQ_PORT"; then
	mosq_status="the mosquitto runs failed (see the log above)"
fi
stop "$mosq_pid"
mosquitto_version=$("$MOSQUITTO" -h 2>/dev/null | head -n 1 | sed 's/^mosquitto version //') || true

# ---- (2) wanwu hub with its MQTT listener ----
wanwu_status=ok
log "starting wanwu hub (MQTT $WANWU_MQTT, HTTP $WANWU_HTTP)"
"$tmp/wanwu" hub --data-dir "$tmp/hub" --http.listen "$WANWU_HTTP" --mqtt.listen "$WANWU_MQTT" \
	>"$tmp/hub.log" 2>&1 &
hub_pid=$!
children+=("$hub_pid")
if ! wait_tcp "$WANWU_HTTP" 60 "$hub_pid"; then
	wanwu_status="the hub did not start: $(grep -v '^$' "$tmp/hub.log" | tail -n 2 | tr '\n' ' ')"
elif ! wait_tcp "$WANWU_MQTT" 20 "$hub_pid"; then
	wanwu_status="the hub started but nothing accepts MQTT on $WANWU_MQTT"
elif ! run_loads wanwu "$hub_pid" "tcp://$WANWU_MQTT" --provision --hub "http://$WANWU_HTTP" \
	--data-dir "$tmp/hub" --state "$tmp/bench-state.json"; then
	wanwu_status="the wanwu runs failed: $(cat "$tmp"/wanwu-*.err 2>/dev/null | grep -v '^bench: ' | tail -n 2 | tr '\n' ' ')"
elif jq -e '.connected == .clients and .acked == .sent and .lost == 0' "$tmp/wanwu-ingest.json" >/dev/null 2>&1; then
	# wanwu only (mosquitto has no store): publish→queryable at half the
	# sustained rate just measured, polling the query API for sampled messages.
	half=$(jq -r --argjson c "$CLIENTS" '.throughput_msgs_per_s / 2 / $c' "$tmp/wanwu-ingest.json")
	log "wanwu: queryable, $CLIENTS clients × $(printf '%.2f' "$half") msg/s (half the sustained rate)"
	"${bench[@]}" mqtt --broker "tcp://$WANWU_MQTT" --clients "$CLIENTS" --messages "$RATE_MSGS" --rate "$half" --qos "$QOS" \
		--sub-qos "$SUBQOS" --size "$SIZE" --inflight "$INFLIGHT" --source-addrs "$SRC" --target-pid "$hub_pid" \
		--queryable-every 50 --timeout "$TIMEOUT" --provision --hub "http://$WANWU_HTTP" --data-dir "$tmp/hub" \
		--state "$tmp/bench-state.json" --out "$tmp/wanwu-queryable.json" >"$tmp/wanwu-queryable.txt" 2>"$tmp/wanwu-queryable.err" ||
		log "wanwu: queryable run failed: $(tail -n 1 "$tmp/wanwu-queryable.err")"
	cat "$tmp/wanwu-queryable.txt" >&2
fi
stop "$hub_pid"
[ "$wanwu_status" = ok ] || log "wanwu half: $wanwu_status"
[ "$mosq_status" = ok ] || log "mosquitto half: $mosq_status"

# ---- (3) the results section ----
# complete NAME FIGURE: the run connected every client, had every message
# acknowledged and delivered, and saw no errors. An incomplete run's rates and
# latencies describe a failure, not the broker: the table leaves them out.
complete() {
	local f="$tmp/$1-$2.json"
	[ -s "$f" ] && jq -e '.connected == .clients and (.errors // {} | length) == 0
		and (.mode == "idle" or (.acked == .sent and .delivered == .acked and .lost == 0))' "$f" >/dev/null
}
# val NAME FIGURE JQ: a figure's value, or empty when that run has none.
val() {
	local f="$tmp/$1-$2.json"
	complete "$1" "$2" || return 0
	jq -r "$3 // empty" "$f"
}
# acctval NAME FIGURE: acked / delivered / lost / duplicates, complete or not.
acctval() {
	local f="$tmp/$1-$2.json"
	[ -s "$f" ] || return 0
	jq -r '"\(.acked) of \(.sent) / \(.delivered) / \(.lost) / \(.duplicates)"' "$f"
}
incomplete() { # NAME: a sentence on the runs that did not complete
	local n=$1 fig out=
	for fig in idle ingest latency; do
		[ -s "$tmp/$n-$fig.json" ] || continue
		complete "$n" "$fig" && continue
		out+=$(jq -r --arg fig "$fig" '"\($fig): \(.connected)/\(.clients) connected, \(.acked) of \(.sent) acknowledged, \(.delivered) delivered, \(.lost) lost, errors \(.errors // {} | to_entries | map("\(.key) \(.value)") | join(", ")); "' "$tmp/$n-$fig.json")
	done
	printf '%s' "${out%; }"
}
ms() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { printf "%.1f", v / 1e6 }'; }
# row LABEL UNIT BETTER WANWU MOSQUITTO: a table row with the ratio wanwu/mosquitto.
row() {
	local w=${4:-—} m=${5:-—} ratio=—
	if [ "$w" != — ] && [ "$m" != — ]; then
		ratio=$(awk -v a="$4" -v b="$5" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.2f×", a / b }')
	fi
	printf '| %s | %s | %s | %s | %s |\n' "$1" "$w${w:+${2:+ $2}}" "$m${m:+${2:+ $2}}" "$ratio" "$3"
}
row3() { # LABEL WANWU MOSQUITTO: no ratio
	printf '| %s | %s | %s | — | |\n' "$1" "${2:-—}" "${3:-—}"
}
fmt() { [ -n "$1" ] && awk -v v="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f", d, v }'; }

model=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
now=$(date -u +%Y-%m-%dT%H:%MZ)
gover=$(go env GOVERSION)
section="$tmp/section.md"
{
	echo '<!-- compare.sh:begin -->'
	echo '## MQTT: wanwu side by side with mosquitto (bench/compare.sh)'
	echo
	echo 'Written by `bench/compare.sh`; do not edit by hand. Command (from the repository root):'
	echo
	echo '```sh'
	echo "$env_line $command_line"
	echo '```'
	echo
	echo "Date: $now. Machine: $(nproc) cores ($model), $mem RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), $gover;"
	echo "mosquitto ${mosquitto_version:-?}. Generator (\`wanwu bench\`, paho.golang MQTT 5 clients) and broker share these cores."
	echo
	if [ "$wanwu_status" != ok ]; then
		echo "**wanwu half pending the MQTT endpoint**: $wanwu_status. The mosquitto figures below"
		echo "are this run's; the wanwu column fills in when \`wanwu hub --mqtt.listen\` accepts devices."
		echo
	fi
	if [ "$mosq_status" != ok ]; then
		echo "**mosquitto half failed**: $mosq_status."
		echo
	fi
	for n in wanwu mosquitto; do
		inc=$(incomplete "$n")
		if [ -n "$inc" ]; then
			echo "**$n runs that did not complete** (their rates and latencies are left out, \"—\"): $inc."
			echo
		fi
	done
	echo '| figure | wanwu | mosquitto | ratio wanwu/mosquitto | better |'
	echo '|---|---|---|---|---|'
	row "ingest: acknowledged msg/s ($CLIENTS clients × $N QoS $QOS, $SIZE B, in-flight $INFLIGHT)" "" higher \
		"$(fmt "$(val wanwu ingest .throughput_msgs_per_s)")" "$(fmt "$(val mosquitto ingest .throughput_msgs_per_s)")"
	row "ingest: broker CPU-seconds per million messages" "" lower \
		"$(fmt "$(val wanwu ingest .target_cpu_s_per_million)" 2)" "$(fmt "$(val mosquitto ingest .target_cpu_s_per_million)" 2)"
	row3 "ingest: acked of sent / delivered / lost / duplicates" "$(acctval wanwu ingest)" "$(acctval mosquitto ingest)"
	row "ingest: publish→ack p50, ms (saturated)" "" lower \
		"$(ms "$(val wanwu ingest .publish_to_ack.p50_ns)")" "$(ms "$(val mosquitto ingest .publish_to_ack.p50_ns)")"
	row "ingest: publish→ack p99, ms (saturated)" "" lower \
		"$(ms "$(val wanwu ingest .publish_to_ack.p99_ns)")" "$(ms "$(val mosquitto ingest .publish_to_ack.p99_ns)")"
	row "ingest: broker peak RSS, MiB" "" lower \
		"$(fmt "$(val wanwu ingest '.target_rss_peak_bytes / 1048576')" 1)" "$(fmt "$(val mosquitto ingest '.target_rss_peak_bytes / 1048576')" 1)"
	for q in p50 p99 p999; do
		row "latency: publish→delivery $q, ms ($CLIENTS clients × $RATE msg/s)" "" lower \
			"$(ms "$(val wanwu latency ".publish_to_deliver.${q}_ns")")" "$(ms "$(val mosquitto latency ".publish_to_deliver.${q}_ns")")"
	done
	row "latency: broker CPU-seconds per million messages" "" lower \
		"$(fmt "$(val wanwu latency .target_cpu_s_per_million)" 2)" "$(fmt "$(val mosquitto latency .target_cpu_s_per_million)" 2)"
	row3 "latency: acked of sent / delivered / lost / duplicates" "$(acctval wanwu latency)" "$(acctval mosquitto latency)"
	if complete wanwu queryable; then
		qrate=$(jq -r '.throughput_msgs_per_s' "$tmp/wanwu-queryable.json")
		for q in p50 p99; do
			row3 "queryable: publish→queryable $q, ms, at half the sustained rate ($(fmt "$qrate") msg/s; wanwu's store, no peer)" \
				"$(ms "$(jq -r ".publish_to_queryable.${q}_ns // empty" "$tmp/wanwu-queryable.json")")" "no store"
		done
	fi
	row "idle: broker RSS per connection, KiB ($IDLE connections)" "" lower \
		"$(fmt "$(val wanwu idle '.rss_per_connection_bytes / 1024')" 2)" "$(fmt "$(val mosquitto idle '.rss_per_connection_bytes / 1024')" 2)"
	echo
	echo "Notes, as PEERS.md requires:"
	echo
	echo "- mosquitto runs with the PEERS.md configuration: \`persistence false\` (it does not persist per"
	echo "  message: its PUBACK means *received*, wanwu's means *durable*, fsync'd per the hub's \`bus.sync\`),"
	echo "  \`max_queued_messages 0\` and \`max_inflight_messages 0\` (no queue limit that drops counted"
	echo "  messages), \`max_connections -1\`, loopback only."
	echo "- Same load for both: QoS $QOS publishes of $SIZE-byte SenML JSON, $CLIENTS clients, in-flight window $INFLIGHT per"
	echo "  client, MQTT 5; one counting subscriber (MQTT 5, QoS $SUBQOS) on \`wanwu/v1/bench/+/telemetry\` counts"
	echo "  every (device, seq) pair: delivered, lost (acknowledged but never delivered), duplicate."
	echo "  wanwu devices authenticate with device tokens (\`--provision\`), mosquitto's anonymously."
	echo "- Client sockets are spread over the source addresses $SRC; each figure starts from"
	echo "  the same broker process, idle first (RSS growth / connections), then ingest, then latency."
	echo "- CPU-seconds per million messages is the broker's utime+stime (/proc) over the publish and"
	echo "  delivery window per million acknowledged messages: the generator shares the 2 cores, so"
	echo "  rates alone understate a broker that uses less CPU. \"saturated\" latencies include queueing"
	echo "  behind the in-flight windows ($CLIENTS × $INFLIGHT messages); the fixed-rate run measures"
	echo "  latency below saturation."
	echo '<!-- compare.sh:end -->'
} >"$section"

if grep -q '<!-- compare.sh:begin -->' "$RESULTS" && grep -q '<!-- compare.sh:end -->' "$RESULTS"; then
	awk -v sect="$section" '
		/<!-- compare.sh:begin -->/ { while ((getline line < sect) > 0) print line; skip = 1; next }
		/<!-- compare.sh:end -->/ { skip = 0; next }
		!skip { print }
	' "$RESULTS" >"$tmp/results.md"
else
	{ cat "$RESULTS"; echo; cat "$section"; } >"$tmp/results.md"
fi
cat "$tmp/results.md" >"$RESULTS"
log "wrote the section of $RESULTS"
cat "$section"
[ "$mosq_status" = ok ] || exit 1
