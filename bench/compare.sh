#!/usr/bin/env bash
# bench/compare.sh — MQTT figures for wanwu side by side with mosquitto, in one
# run on one machine, from one generator (`wanwu bench`), reported as ratios
# (bench/RESULTS.md says why). Writes its section of bench/RESULTS.md between the markers
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
# CoAP (bench/compare.sh coap, or all): wanwu's plain-UDP CoAP listener and
# libcoap's coap-server, fresh processes, the same `wanwu bench coap` load
# (CON, then NON, with COAP_CLIENTS and then with COAP_MANY devices); then
# `wanwu bench roundtrip` (twin and command round
# trips, wanwu only). Written between <!-- compare.sh:coap:begin/end --> and
# <!-- compare.sh:roundtrip:begin/end -->.
#
# Usage (from anywhere): bench/compare.sh [all|mqtt|coap]
# Environment: see the defaults below.
set -euo pipefail

PART=${1:-all}
case "$PART" in all | mqtt | coap) ;; *) echo "usage: $0 [all|mqtt|coap]" >&2; exit 2 ;; esac
COAP_CLIENTS=${COAP_CLIENTS:-100}       # CoAP devices, one UDP socket each
COAP_REQS=${COAP_REQS:-200}             # requests per device
COAP_INFLIGHT=${COAP_INFLIGHT:-1}       # outstanding requests per device (RFC 7252 NSTART = 1)
COAP_SIZE=${COAP_SIZE:-100}             # SenML CBOR payload bytes
COAP_MANY=${COAP_MANY:-1000}            # devices of the second CON/NON figure (0: not run)
COAP_MANY_REQS=${COAP_MANY_REQS:-300}   # requests per device there
COAP_RMEM=${COAP_RMEM:-4194304}         # net.core.rmem_default for the CoAP runs (see below)
COAP_PEER_PORT=${COAP_PEER_PORT:-15683}
WANWU_COAP=${WANWU_COAP:-127.0.0.1:15693}
WANWU_COAPS=${WANWU_COAPS:-127.0.0.1:15694}
RT_DEVICES=${RT_DEVICES:-50}            # round-trip devices (MQTT 5)
RT_ROUNDS=${RT_ROUNDS:-20}              # twin rounds and command rounds per device
RT_INTERVAL=${RT_INTERVAL:-100ms}       # pause between one device's rounds

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
MOSQ_PORT=${MOSQ_PORT:-18830}      # the peer's port
WANWU_MQTT=${WANWU_MQTT:-127.0.0.1:18831}
WANWU_HTTP=${WANWU_HTTP:-127.0.0.1:18080}
TIMEOUT=${TIMEOUT:-10s}            # a publish not acknowledged this long stalls its client
ROUNDS=${ROUNDS:-3}                # extra alternating rounds of the durable-ingest pair (0: none)

cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-bench/RESULTS.md}
command_line="$0${*:+ $*}"
env_line="N=$N ROUNDS=$ROUNDS CLIENTS=$CLIENTS IDLE=$IDLE RATE=$RATE RATE_MSGS=$RATE_MSGS QOS=$QOS SUBQOS=$SUBQOS SIZE=$SIZE INFLIGHT=$INFLIGHT SRC=$SRC"

log() { printf 'compare: %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
	as_root apt-get install -y "$@" >/dev/null || { as_root apt-get update >/dev/null && as_root apt-get install -y "$@" >/dev/null; }
}
if ! command -v mosquitto >/dev/null 2>&1 || ! command -v coap-server-notls >/dev/null 2>&1; then
	log "installing the peers: mosquitto mosquitto-clients libcoap3-bin"
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

# settle PID: wait until the target is idle (under 5% of a core over half a
# second, at most 30 s), so that each figure starts from a quiet server: the
# last figure's disconnects, and for wanwu its store catching up with the bus,
# are not measured in the next one. Same for every server.
settle() {
	local i a b
	for ((i = 0; i < 60; i++)); do
		a=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null) || return 0
		sleep 0.5
		b=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null) || return 0
		[ $((b - a)) -le $(($(getconf CLK_TCK) / 40)) ] && return 0
	done
	log "PID $1 still busy after 30 s; measuring anyway"
}

# run_loads NAME PID BROKER [extra bench flags...]: the three figures into $tmp/NAME-*.json.
run_loads() {
	local name=$1 pid=$2 broker=$3
	shift 3
	local rc=0
	set -- --timeout "$TIMEOUT" "$@"
	settle "$pid"
	log "$name: idle, $IDLE connections"
	"${bench[@]}" idle --broker "$broker" --clients "$IDLE" --source-addrs "$SRC" --target-pid "$pid" \
		--out "$tmp/$name-idle.json" "$@" >"$tmp/$name-idle.txt" 2>"$tmp/$name-idle.err" || rc=$?
	[ -s "$tmp/$name-idle.json" ] || { log "$name: idle failed: $(tail -n 3 "$tmp/$name-idle.err")"; return 1; }
	cat "$tmp/$name-idle.txt" >&2
	settle "$pid"
	log "$name: ingest, $CLIENTS clients × $N messages"
	rc=0
	"${bench[@]}" mqtt --broker "$broker" --clients "$CLIENTS" --messages "$N" --qos "$QOS" --sub-qos "$SUBQOS" \
		--size "$SIZE" --inflight "$INFLIGHT" --source-addrs "$SRC" --target-pid "$pid" --out "$tmp/$name-ingest.json" "$@" \
		>"$tmp/$name-ingest.txt" 2>"$tmp/$name-ingest.err" || rc=$?
	[ -s "$tmp/$name-ingest.json" ] || { log "$name: ingest failed: $(tail -n 3 "$tmp/$name-ingest.err")"; return 1; }
	cat "$tmp/$name-ingest.txt" >&2
	[ "$rc" -eq 0 ] || log "$name: ingest exited $rc: $(tail -n 1 "$tmp/$name-ingest.err")"
	settle "$pid"
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

# replace_section FILE BEGIN END SECTION_FILE: put SECTION_FILE (which holds
# its own markers) between the markers, or append it when they are missing.
replace_section() {
	local file=$1 begin=$2 end=$3 sect=$4
	if grep -qF "$begin" "$file" && grep -qF "$end" "$file"; then
		awk -v sect="$sect" -v b="$begin" -v e="$end" '
			index($0, b) { while ((getline line < sect) > 0) print line; skip = 1; next }
			index($0, e) { skip = 0; next }
			!skip { print }
		' "$file" >"$tmp/results.md"
	else
		{ cat "$file"; echo; cat "$sect"; } >"$tmp/results.md"
	fi
	cat "$tmp/results.md" >"$file"
}

if [ "$PART" != coap ]; then
# ---- (1) mosquitto: no persistence, no queue or in-flight limits (the notes below say why) ----
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
	# Durable ingest as issue 4 defines it: the hub persists (JetStream and
	# the TSDB) and nothing subscribes; every (device, seq) is read back from
	# the store afterwards. mosquitto's ingest figure relays to one subscriber.
	settle "$hub_pid"
	log "wanwu: ingest counted in the store, $CLIENTS clients × $N messages, no subscriber"
	"${bench[@]}" mqtt --broker "tcp://$WANWU_MQTT" --clients "$CLIENTS" --messages "$N" --qos "$QOS" --size "$SIZE" \
		--inflight "$INFLIGHT" --source-addrs "$SRC" --target-pid "$hub_pid" --count-stored --timeout "$TIMEOUT" \
		--provision --hub "http://$WANWU_HTTP" --data-dir "$tmp/hub" --state "$tmp/bench-state.json" \
		--out "$tmp/wanwu-stored.json" >"$tmp/wanwu-stored.txt" 2>"$tmp/wanwu-stored.err" ||
		log "wanwu: stored ingest run failed: $(tail -n 1 "$tmp/wanwu-stored.err")"
	cat "$tmp/wanwu-stored.txt" >&2
	# wanwu only (mosquitto has no store): publish→queryable at half the
	# sustained rate just measured, polling the store (its Prometheus API) for sampled messages.
	half=$(jq -r --argjson c "$CLIENTS" '.throughput_msgs_per_s / 2 / $c' "$tmp/wanwu-ingest.json")
	settle "$hub_pid"
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

# ---- (2b) the epoll front-end prototype (bench/reactor): idle connections only ----
REACTOR_ADDR=${REACTOR_ADDR:-127.0.0.1:18832}
log "starting the epoll prototype (bench/reactor) on $REACTOR_ADDR"
go build -o "$tmp/reactor" ./bench/reactor
"$tmp/reactor" --listen "$REACTOR_ADDR" >"$tmp/reactor.log" 2>&1 &
reactor_pid=$!
children+=("$reactor_pid")
if wait_tcp "$REACTOR_ADDR" 10 "$reactor_pid"; then
	"${bench[@]}" idle --broker "tcp://$REACTOR_ADDR" --clients "$IDLE" --source-addrs "$SRC" --target-pid "$reactor_pid" \
		--timeout "$TIMEOUT" --out "$tmp/reactor-idle.json" >"$tmp/reactor-idle.txt" 2>"$tmp/reactor-idle.err" ||
		log "prototype idle run failed: $(tail -n 1 "$tmp/reactor-idle.err")"
	cat "$tmp/reactor-idle.txt" >&2
else
	log "the prototype did not start: $(tail -n 2 "$tmp/reactor.log" | tr '\n' ' ')"
fi
stop "$reactor_pid"
[ "$mosq_status" = ok ] || log "mosquitto half: $mosq_status"

# ---- (2c) the durable-ingest pair again, in alternating rounds ----
# One pair of runs moves by ±20% with the machine; ROUNDS more pairs, each
# from fresh processes, mosquitto then wanwu, give the ratio's spread and
# median. The hub reopens its data directory: the devices stay registered.
# Each round also runs the hub with one P (GOMAXPROCS=1): the one core
# mosquitto, a single-threaded broker, uses (see the CoAP notes).
round_ratios=()
round_ratios_1p=()
# wanwu_round ROUND NAME [ENV...]: a fresh hub (with ENV) and its durable-ingest run.
wanwu_round() {
	local r=$1 name=$2 pid
	shift 2
	env "$@" "$tmp/wanwu" hub --data-dir "$tmp/hub" --http.listen "$WANWU_HTTP" --mqtt.listen "$WANWU_MQTT" >>"$tmp/hub.log" 2>&1 &
	pid=$!
	children+=("$pid")
	if wait_tcp "$WANWU_HTTP" 60 "$pid" && wait_tcp "$WANWU_MQTT" 20 "$pid"; then
		settle "$pid"
		"${bench[@]}" mqtt --broker "tcp://$WANWU_MQTT" --clients "$CLIENTS" --messages "$N" --qos "$QOS" --size "$SIZE" \
			--inflight "$INFLIGHT" --source-addrs "$SRC" --target-pid "$pid" --count-stored --timeout "$TIMEOUT" \
			--provision --hub "http://$WANWU_HTTP" --data-dir "$tmp/hub" --state "$tmp/bench-state.json" \
			--out "$tmp/round$r-$name.json" >/dev/null 2>"$tmp/round$r-$name.err" || true
	fi
	stop "$pid"
}
# round_ratio ROUND NAME: NAME's rate over mosquitto's in that round, empty
# unless both runs were complete.
round_ratio() {
	jq -rn --slurpfile w "$tmp/round$1-$2.json" --slurpfile m "$tmp/round$1-mosquitto.json" '
		def ok: .connected == .clients and .acked == .sent and .delivered == .acked and .lost == 0 and ((.errors // {}) | length) == 0;
		if ($w[0] | ok) and ($m[0] | ok) then $w[0].throughput_msgs_per_s / $m[0].throughput_msgs_per_s else empty end' 2>/dev/null || true
}
if [ "$mosq_status" = ok ] && [ "$wanwu_status" = ok ]; then
	for ((r = 1; r <= ROUNDS; r++)); do
		log "round $r of $ROUNDS: mosquitto, then wanwu, then wanwu with GOMAXPROCS=1 (durable ingest)"
		"$MOSQUITTO" -c "$tmp/mosquitto.conf" >>"$tmp/mosquitto.log" 2>&1 &
		mosq_pid=$!
		children+=("$mosq_pid")
		if wait_tcp "127.0.0.1:$MOSQ_PORT" 10 "$mosq_pid"; then
			settle "$mosq_pid"
			"${bench[@]}" mqtt --broker "tcp://127.0.0.1:$MOSQ_PORT" --clients "$CLIENTS" --messages "$N" --qos "$QOS" \
				--sub-qos "$SUBQOS" --size "$SIZE" --inflight "$INFLIGHT" --source-addrs "$SRC" --target-pid "$mosq_pid" \
				--timeout "$TIMEOUT" --out "$tmp/round$r-mosquitto.json" >/dev/null 2>"$tmp/round$r-mosquitto.err" || true
		fi
		stop "$mosq_pid"
		wanwu_round "$r" wanwu
		wanwu_round "$r" wanwu1p GOMAXPROCS=1
		ratio=$(round_ratio "$r" wanwu)
		ratio1p=$(round_ratio "$r" wanwu1p)
		[ -z "$ratio1p" ] || round_ratios_1p+=("$ratio1p")
		if [ -n "$ratio" ]; then
			round_ratios+=("$ratio")
			log "round $r: $(printf '%.2f' "$ratio")× (one P: ${ratio1p:+$(printf '%.2f' "$ratio1p")×})"
		else
			log "round $r did not complete: $(tail -n 1 "$tmp/round$r-wanwu.err" "$tmp/round$r-mosquitto.err" 2>/dev/null | tr '\n' ' ')"
		fi
	done
fi

# ---- (3) the results section ----
# rounds_row LABEL RATIO...: the ratios of the rounds and their median.
rounds_row() {
	local label=$1
	shift
	[ "$#" -gt 0 ] || return 0
	printf '| %s | %s | | median **%s×** | higher |\n' "$label" \
		"$(printf '%s\n' "$@" | awk '{ printf "%s%.2f×", (NR > 1 ? ", " : ""), $1 }')" \
		"$(printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')"
}
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
	for fig in idle ingest stored latency; do
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
	row "durable ingest (issue 4): acknowledged msg/s ($CLIENTS clients × $N QoS $QOS, $SIZE B, in-flight $INFLIGHT); wanwu persists, counted in its store; mosquitto relays to one subscriber" "" higher \
		"$(fmt "$(val wanwu stored .throughput_msgs_per_s)")" "$(fmt "$(val mosquitto ingest .throughput_msgs_per_s)")"
	row "durable ingest (issue 4): broker CPU-seconds per million messages" "" lower \
		"$(fmt "$(val wanwu stored .target_cpu_s_per_million)" 2)" "$(fmt "$(val mosquitto ingest .target_cpu_s_per_million)" 2)"
	row3 "durable ingest (issue 4): acked of sent / stored or delivered / lost / duplicates" "$(acctval wanwu stored)" "$(acctval mosquitto ingest)"
	rounds_row "durable ingest (issue 4): ${#round_ratios[@]} more alternating rounds, fresh processes: ratio each" "${round_ratios[@]}"
	rounds_row "durable ingest, the same rounds, wanwu with one P (GOMAXPROCS=1): ratio each" "${round_ratios_1p[@]}"
	row "ingest, both relaying to one subscriber (wanwu also persists): acknowledged msg/s" "" higher \
		"$(fmt "$(val wanwu ingest .throughput_msgs_per_s)")" "$(fmt "$(val mosquitto ingest .throughput_msgs_per_s)")"
	row "ingest, both relaying: broker CPU-seconds per million messages" "" lower \
		"$(fmt "$(val wanwu ingest .target_cpu_s_per_million)" 2)" "$(fmt "$(val mosquitto ingest .target_cpu_s_per_million)" 2)"
	row3 "ingest, both relaying: acked of sent / delivered / lost / duplicates" "$(acctval wanwu ingest)" "$(acctval mosquitto ingest)"
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
	for q in p50 p99; do
		row "latency: publish→ack $q, ms ($CLIENTS clients × $RATE msg/s)" "" lower \
			"$(ms "$(val wanwu latency ".publish_to_ack.${q}_ns")")" "$(ms "$(val mosquitto latency ".publish_to_ack.${q}_ns")")"
	done
	row "latency: broker CPU-seconds per million messages" "" lower \
		"$(fmt "$(val wanwu latency .target_cpu_s_per_million)" 2)" "$(fmt "$(val mosquitto latency .target_cpu_s_per_million)" 2)"
	row3 "latency: generator's own scheduling delay p99, ms (part of every latency above)" \
		"$(ms "$(val wanwu latency .generator_sched_p99_ns)")" "$(ms "$(val mosquitto latency .generator_sched_p99_ns)")"
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
	row "idle: the epoll prototype (bench/reactor), RSS per connection, KiB ($IDLE connections)" "" lower \
		"$(fmt "$(val reactor idle '.rss_per_connection_bytes / 1024')" 2)" "$(fmt "$(val mosquitto idle '.rss_per_connection_bytes / 1024')" 2)"
	echo
	echo "Notes on the peer (bench/compare.sh writes them with every run):"
	echo
	echo "- mosquitto runs with the configuration compare.sh writes for it: \`persistence false\` (it does not persist per"
	echo "  message: its PUBACK means *received*, wanwu's means *durable*, fsync'd per the hub's \`bus.sync\`),"
	echo "  \`max_queued_messages 0\` and \`max_inflight_messages 0\` (no queue limit that drops counted"
	echo "  messages), \`max_connections -1\`, loopback only."
	echo "- Same load for both: QoS $QOS publishes of $SIZE-byte SenML JSON, $CLIENTS clients, in-flight window $INFLIGHT per"
	echo "  client, MQTT 5; one counting subscriber (MQTT 5, QoS $SUBQOS) on \`wanwu/v1/bench/+/telemetry\` counts"
	echo "  every (device, seq) pair: delivered, lost (acknowledged but never delivered), duplicate."
	echo "  wanwu devices authenticate with device tokens (\`--provision\`), mosquitto's anonymously."
	echo "- Durable ingest as issue 4 defines it (\"hub persisting to JetStream and the TSDB, vs mosquitto"
	echo "  relaying the same QoS1 load to one subscriber\"): the same load against wanwu with no subscriber"
	echo "  (\`wanwu bench mqtt --count-stored\`); after the last acknowledgement the generator waits until the"
	echo "  hub's store holds what was acknowledged, takes the hub's CPU, then reads every device's seq"
	echo "  values back through the Prometheus API and counts each (device, seq) pair: stored, lost."
	echo "  mosquitto's figure is its ingest run, relaying to the counting subscriber. The generator's own"
	echo "  subscriber shares the cores in mosquitto's run and not in this one; the \"both relaying\" rows"
	echo "  give wanwu the same subscriber as well, on top of persisting."
	echo "- Then the durable-ingest pair ran $ROUNDS more times, alternating (mosquitto, then wanwu, each"
	echo "  started fresh; the hub on the same data directory), for the spread of the ratio on this machine;"
	echo "  each round also ran the hub with \`GOMAXPROCS=1\`: Go code on one core, as mosquitto"
	echo "  (single-threaded) runs, the other left to the generator (see the CoAP notes)."
	echo "- Client sockets are spread over the source addresses $SRC; each figure starts from"
	echo "  the same broker process, idle first (RSS growth / connections), then ingest, then latency,"
	echo "  each once the broker is idle again (under 5% of a core over half a second): the last figure's"
	echo "  disconnects, and wanwu's store catching up with its bus, are not measured in the next."
	echo "- CPU-seconds per million messages is the broker's utime+stime (/proc) over the publish and"
	echo "  delivery window per million acknowledged messages: the generator shares the 2 cores, so"
	echo "  rates alone understate a broker that uses less CPU. \"saturated\" latencies include queueing"
	echo "  behind the in-flight windows ($CLIENTS × $INFLIGHT messages); the fixed-rate run measures"
	echo "  latency below saturation. In it each device keeps its own clock: device i of $CLIENTS starts i/$CLIENTS"
	echo "  of an interval late, so the broker sees a steady $((CLIENTS * RATE)) msg/s, not bursts of $CLIENTS"
	echo "  (\`wanwu bench mqtt --aligned\` sends the bursts). One goroutine per device keeps its schedule and"
	echo "  sends each message in a goroutine of its own, up to the in-flight window."
	echo "- The epoll prototype (\`go run ./bench/reactor\`) is not the hub: one epoll loop and a 32-byte record per"
	echo "  connection, no goroutine per connection; it accepts any CONNECT, answers PINGREQ and QoS 0/1 PUBLISH"
	echo "  and relays nothing. It measures what an event-driven front end costs per idle connection;"
	echo "  \`wanwu bench idle\` ran against it after the hub, with the same clients and source addresses."
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
[ "$mosq_status" = ok ] || mqtt_failed=1
fi # PART != coap
[ "$PART" = mqtt ] && exit "${mqtt_failed:-0}"

# ---- CoAP: wanwu and libcoap's coap-server, the same generator ----
coap_cmds=()
# coap_run NAME FIGURE PID TARGET [flags...]: one load into $tmp/coap-NAME-FIGURE.json.
# FIGURE: con, non, dtls (COAP_CLIENTS devices), con-many, non-many (COAP_MANY).
coap_run() {
	local name=$1 fig=$2 pid=$3 target=$4 rc=0 clients=$COAP_CLIENTS reqs=$COAP_REQS
	shift 4
	case "$fig" in *-many) clients=$COAP_MANY reqs=$COAP_MANY_REQS ;; esac
	# Each figure sends from its own loopback address: a server keeps the
	# message ids it saw per endpoint (address, port) for up to 247 s
	# (RFC 7252 §4.5, §4.8.2), and a client of the next figure that the kernel
	# gave a port of the last one, with an overlapping run of message ids,
	# would have its requests taken for duplicates.
	local src
	case "$fig" in
	con) src=127.0.2.1 ;; non) src=127.0.3.1 ;; con-many) src=127.0.4.1 ;; non-many) src=127.0.5.1 ;;
	con-1p) src=127.0.2.2 ;; non-1p) src=127.0.3.2 ;; *) src=127.0.6.1 ;;
	esac
	local common=(--clients "$clients" --requests "$reqs" --inflight "$COAP_INFLIGHT" --size "$COAP_SIZE" --source-addrs "$src")
	local flags=(--con)
	case "$fig" in non*) flags=(--non --timeout 2s) ;; esac
	settle "$pid"
	log "coap $name: $fig, $clients devices × $reqs requests"
	coap_cmds+=("wanwu bench coap --target $target ${common[*]} ${flags[*]} $* --target-pid \$PID")
	"${bench[@]}" coap --target "$target" "${common[@]}" "${flags[@]}" "$@" --target-pid "$pid" \
		--out "$tmp/coap-$name-$fig.json" >"$tmp/coap-$name-$fig.txt" 2>"$tmp/coap-$name-$fig.err" || rc=$?
	cat "$tmp/coap-$name-$fig.txt" >&2
	[ "$rc" -eq 0 ] || log "coap $name $fig exited $rc: $(tail -n 1 "$tmp/coap-$name-$fig.err")"
}
coap_figs=(con non)
[ "$COAP_MANY" -gt 0 ] && coap_figs+=(con-many non-many)

# A socket's receive buffer is net.core.rmem_default unless its program asks
# for more. wanwu's listener asks for 4 MiB; coap-server cannot be told to, and
# with the default (208 KiB) 1,000 devices' requests overflow it: datagrams
# dropped, CON retransmissions after 2 s, a third of the rate. So both servers
# run with the same buffer: the default raised for the CoAP runs, restored after.
rmem_saved=
if [ -w /proc/sys/net/core/rmem_default ] && [ "$(cat /proc/sys/net/core/rmem_default)" -lt "$COAP_RMEM" ]; then
	rmem_saved=$(cat /proc/sys/net/core/rmem_default)
	echo "$COAP_RMEM" >/proc/sys/net/core/rmem_default
	trap 'echo "$rmem_saved" >/proc/sys/net/core/rmem_default; cleanup' EXIT
fi
coap_rmem=$(cat /proc/sys/net/core/rmem_default)

# (a) libcoap's example server. -d 10: POST to an unknown path creates a
# dynamic resource (2.01), and later POSTs to it answer 2.04 — the same
# method, path and answer as wanwu's /t; its default resources answer
# POST with 4.05. It keeps only the last payload, in memory.
COAP_SERVER=$(command -v coap-server-notls)
peer_status=ok
log "starting coap-server on 127.0.0.1:$COAP_PEER_PORT"
"$COAP_SERVER" -A 127.0.0.1 -p "$COAP_PEER_PORT" -d 10 >"$tmp/coap-server.log" 2>&1 &
peer_pid=$!
children+=("$peer_pid")
sleep 0.5
if kill -0 "$peer_pid" 2>/dev/null; then
	for fig in "${coap_figs[@]}"; do
		coap_run peer "$fig" "$peer_pid" "127.0.0.1:$COAP_PEER_PORT" --peer-token
	done
else
	peer_status="coap-server did not start: $(tail -n 2 "$tmp/coap-server.log" | tr '\n' ' ')"
fi
stop "$peer_pid"
libcoap_version=$(dpkg-query -W -f '${Version}' libcoap3-bin 2>/dev/null || echo '?')

# (b) wanwu: its own hub, CoAP on plain UDP (device tokens in ?t=) and DTLS
# (PSK). The request rate limits are raised so that they do not drop the
# generator's load: the limiter still runs on every datagram.
printf '%s\n' 'coap:' '  limits:' '    request_per_device: 1000000' '    request_per_device_burst: 1000000' \
	'    request_per_addr: 10000000' '    request_per_addr_burst: 10000000' >"$tmp/hub-coap.yaml"
coap_wanwu_status=ok
log "starting wanwu hub (CoAP $WANWU_COAP, DTLS $WANWU_COAPS, MQTT $WANWU_MQTT, HTTP $WANWU_HTTP)"
"$tmp/wanwu" hub --config "$tmp/hub-coap.yaml" --data-dir "$tmp/hub-coap" --http.listen "$WANWU_HTTP" \
	--mqtt.listen "$WANWU_MQTT" --coap.listen "$WANWU_COAP" --coap.dtls-listen "$WANWU_COAPS" >"$tmp/hub-coap.log" 2>&1 &
hub_pid=$!
children+=("$hub_pid")
prov=(--provision --hub "http://$WANWU_HTTP" --data-dir "$tmp/hub-coap" --state "$tmp/bench-coap-state.json")
rt_cmd=
if ! wait_tcp "$WANWU_HTTP" 60 "$hub_pid"; then
	coap_wanwu_status="the hub did not start: $(grep -v '^$' "$tmp/hub-coap.log" | tail -n 2 | tr '\n' ' ')"
else
	for fig in "${coap_figs[@]}"; do
		coap_run wanwu "$fig" "$hub_pid" "$WANWU_COAP" "${prov[@]}"
	done
	coap_run wanwu dtls "$hub_pid" "$WANWU_COAPS" --dtls "${prov[@]}"
	log "roundtrip: $RT_DEVICES devices × $RT_ROUNDS twin + $RT_ROUNDS command rounds"
	rt_cmd="wanwu bench roundtrip --broker tcp://$WANWU_MQTT --hub http://$WANWU_HTTP --devices $RT_DEVICES --twin-rounds $RT_ROUNDS --command-rounds $RT_ROUNDS --interval $RT_INTERVAL"
	"${bench[@]}" roundtrip --broker "tcp://$WANWU_MQTT" --hub "http://$WANWU_HTTP" --data-dir "$tmp/hub-coap" \
		--state "$tmp/bench-rt-state.json" --devices "$RT_DEVICES" --twin-rounds "$RT_ROUNDS" --command-rounds "$RT_ROUNDS" \
		--interval "$RT_INTERVAL" --out "$tmp/rt.json" >"$tmp/rt.txt" 2>"$tmp/rt.err" || log "roundtrip failed: $(tail -n 1 "$tmp/rt.err")"
	cat "$tmp/rt.txt" >&2
fi
stop "$hub_pid"
# (c) the same hub with one P (GOMAXPROCS=1): the one core coap-server, a
# single-threaded server, uses. With two Ps on two cores that the generator
# also needs, the Go scheduler hands goroutines between threads that the
# kernel must then switch in and out against the generator's.
coap_cmds_2p=${#coap_cmds[@]} # the commands before this point ran on the default hub
if [ "$coap_wanwu_status" = ok ]; then
	log "restarting wanwu hub with GOMAXPROCS=1"
	GOMAXPROCS=1 "$tmp/wanwu" hub --config "$tmp/hub-coap.yaml" --data-dir "$tmp/hub-coap" --http.listen "$WANWU_HTTP" \
		--mqtt.listen "$WANWU_MQTT" --coap.listen "$WANWU_COAP" --coap.dtls-listen "$WANWU_COAPS" >>"$tmp/hub-coap.log" 2>&1 &
	hub_pid=$!
	children+=("$hub_pid")
	if wait_tcp "$WANWU_HTTP" 60 "$hub_pid"; then
		coap_run wanwu con-1p "$hub_pid" "$WANWU_COAP" "${prov[@]}"
		coap_run wanwu non-1p "$hub_pid" "$WANWU_COAP" "${prov[@]}"
	fi
	stop "$hub_pid"
fi

# cj NAME FIGURE JQ: a figure of a CoAP run, empty when missing.
cj() { [ -s "$tmp/coap-$1-$2.json" ] && jq -r "$3 // empty" "$tmp/coap-$1-$2.json" || true; }
cacct() { cj "$1" "$2" '"\(.ok) of \(.sent) / \(.retransmissions) / \(.unanswered) / \(.codes // {} | to_entries | map("\(.key) \(.value)") | join(", "))"'; }
cpct() { local v; v=$(cj "$1" "$2" "$3"); [ -n "$v" ] && awk -v v="$v" 'BEGIN { printf "%.1f", v / 1e6 }' || true; }
cfmt() { local v; v=$(cj "$1" "$2" "$3"); [ -n "$v" ] && awk -v v="$v" -v d="${4:-0}" 'BEGIN { printf "%.*f", d, v }' || true; }
crow() { # LABEL BETTER WANWU PEER: a row with the ratio wanwu/peer
	local w=${3:-—} p=${4:-—} ratio=—
	if [ "$w" != — ] && [ "$p" != — ]; then
		ratio=$(awk -v a="$w" -v b="$p" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.2f×", a / b }')
	fi
	printf '| %s | %s | %s | %s | %s |\n' "$1" "$w" "$p" "$ratio" "$2"
}
crow3() { printf '| %s | %s | %s | — | |\n' "$1" "${2:-—}" "${3:-—}"; }
cmodel=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
cmem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
cnow=$(date -u +%Y-%m-%dT%H:%MZ)
cgover=$(go env GOVERSION)
coap_env="COAP_CLIENTS=$COAP_CLIENTS COAP_REQS=$COAP_REQS COAP_MANY=$COAP_MANY COAP_MANY_REQS=$COAP_MANY_REQS COAP_INFLIGHT=$COAP_INFLIGHT COAP_SIZE=$COAP_SIZE RT_DEVICES=$RT_DEVICES RT_ROUNDS=$RT_ROUNDS RT_INTERVAL=$RT_INTERVAL"
csection="$tmp/coap-section.md"
{
	echo '<!-- compare.sh:coap:begin -->'
	echo '## CoAP ingest: wanwu side by side with libcoap coap-server (bench/compare.sh)'
	echo
	echo 'Written by `bench/compare.sh`; do not edit by hand. Command (from the repository root):'
	echo
	echo '```sh'
	echo "$coap_env bench/compare.sh coap"
	echo '```'
	echo
	echo "which ran (\`\$PID\`: the target's process; the peer first, then a fresh wanwu hub):"
	echo
	echo '```sh'
	echo "coap-server-notls -A 127.0.0.1 -p $COAP_PEER_PORT -d 10"
	echo "wanwu hub --config hub-coap.yaml --coap.listen $WANWU_COAP --coap.dtls-listen $WANWU_COAPS --mqtt.listen $WANWU_MQTT --http.listen $WANWU_HTTP --data-dir DIR"
	printf '%s\n' "${coap_cmds[@]:0:coap_cmds_2p}" | sed "s#$tmp/##g"
	if [ "${#coap_cmds[@]}" -gt "$coap_cmds_2p" ]; then
		echo "# then the same hub restarted with one P, on the same data directory:"
		echo "GOMAXPROCS=1 wanwu hub --config hub-coap.yaml ... (as above)"
		printf '%s\n' "${coap_cmds[@]:coap_cmds_2p}" | sed "s#$tmp/##g"
	fi
	echo '```'
	echo
	echo "Date: $cnow. Machine: $(nproc) cores ($cmodel), $cmem RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), $cgover;"
	echo "libcoap $libcoap_version. Generator (\`wanwu bench coap\`: go-coap's message codec on one UDP socket per device) and server share these cores."
	echo
	[ "$peer_status" = ok ] || { echo "**coap-server failed**: $peer_status."; echo; }
	[ "$coap_wanwu_status" = ok ] || { echo "**wanwu failed**: $coap_wanwu_status."; echo; }
	echo '| figure | wanwu | coap-server | ratio wanwu/coap-server | better |'
	echo '|---|---|---|---|---|'
	for fig in "${coap_figs[@]}"; do
		T=$(echo "${fig%-many}" | tr a-z A-Z) n=$COAP_CLIENTS r=$COAP_REQS
		case "$fig" in *-many) T="$T, $COAP_MANY devices" n=$COAP_MANY r=$COAP_MANY_REQS ;; esac
		crow "$T: 2.xx responses/s ($n devices × $r POST /t, $COAP_SIZE B SenML CBOR, in-flight $COAP_INFLIGHT)" higher \
			"$(cfmt wanwu $fig .throughput_per_s)" "$(cfmt peer $fig .throughput_per_s)"
		crow "$T: server CPU-seconds per million 2.xx" lower \
			"$(cfmt wanwu $fig .target_cpu_s_per_million 1)" "$(cfmt peer $fig .target_cpu_s_per_million 1)"
		for q in p50 p99 p999; do
			crow "$T: request→2.xx $q, ms" lower "$(cpct wanwu $fig ".latency.${q}_ns")" "$(cpct peer $fig ".latency.${q}_ns")"
		done
		crow "$T: server peak RSS, MiB" lower \
			"$(cfmt wanwu $fig '.target_rss_peak_bytes / 1048576' 1)" "$(cfmt peer $fig '.target_rss_peak_bytes / 1048576' 1)"
		crow3 "$T: 2.xx of sent / retransmissions / unanswered / codes" "$(cacct wanwu $fig)" "$(cacct peer $fig)"
		crow3 "$T: generator CPU-seconds per million 2.xx" "$(cfmt wanwu $fig .generator_cpu_s_per_million 1)" "$(cfmt peer $fig .generator_cpu_s_per_million 1)"
	done
	for fig in con non; do
		T=$(echo "$fig" | tr a-z A-Z)
		crow "$T, wanwu with one P (GOMAXPROCS=1): 2.xx responses/s ($COAP_CLIENTS devices × $COAP_REQS)" higher \
			"$(cfmt wanwu $fig-1p .throughput_per_s)" "$(cfmt peer $fig .throughput_per_s)"
		crow "$T, wanwu with one P: server CPU-seconds per million 2.xx" lower \
			"$(cfmt wanwu $fig-1p .target_cpu_s_per_million 1)" "$(cfmt peer $fig .target_cpu_s_per_million 1)"
		crow "$T, wanwu with one P: request→2.xx p99, ms" lower "$(cpct wanwu $fig-1p .latency.p99_ns)" "$(cpct peer $fig .latency.p99_ns)"
		crow3 "$T, wanwu with one P: 2.xx of sent / retransmissions / unanswered / codes" "$(cacct wanwu $fig-1p)" "(above)"
	done
	crow3 "DTLS (PSK), CON: 2.xx responses/s, same load" "$(cfmt wanwu dtls .throughput_per_s)" "not run"
	crow3 "DTLS (PSK), CON: server CPU-seconds per million 2.xx" "$(cfmt wanwu dtls .target_cpu_s_per_million 1)" "not run"
	crow3 "DTLS (PSK), CON: request→2.xx p50 / p99, ms" "$(cpct wanwu dtls .latency.p50_ns) / $(cpct wanwu dtls .latency.p99_ns)" "not run"
	crow3 "DTLS (PSK), CON: 2.xx of sent / retransmissions / unanswered / codes" "$(cacct wanwu dtls)" "not run"
	echo
	echo "Notes:"
	echo
	echo "- Same datagrams for both ($(cj wanwu con .datagram_bytes) B): POST /t, Content-Format 112 (SenML CBOR, $COAP_SIZE B: the two"
	echo "  records of the MQTT payload plus an ignored \"pad\" label), and a Uri-Query \`t=<device token>\`: wanwu's"
	echo "  plain-UDP listener authenticates every request by it (verifying a token once, then recognising it); coap-server gets a token of the same size and"
	echo "  format signed by a throwaway key (\`--peer-token\`), which it ignores. One UDP socket per device (a"
	echo "  server deduplicates by endpoint and message id: one endpoint carries at most 65,536 requests per"
	echo "  EXCHANGE_LIFETIME)."
	echo "- coap-server runs with \`-d 10\`: its first POST /t creates a dynamic resource (2.01), the rest answer"
	echo "  2.04 (its default resources answer POST with 4.05); it holds the last payload in memory and"
	echo "  persists nothing. wanwu answers 2.04 once the telemetry is durable (decoded, validated,"
	echo "  group-committed to JetStream per \`bus.sync\`, default always)."
	echo "- wanwu's hub ran with its CoAP rate limits raised (\`coap.limits\`: 10^6 requests/s per device, 10^7 per"
	echo "  address) so that the limiter, which still runs on every datagram, does not drop the generator's load:"
	echo "  with the defaults (100/s per device, 1,000/s per source IP) one loopback address caps a run at 1,000/s."
	echo "- CON requests are retransmitted per RFC 7252 (ACK_TIMEOUT 2 s, doubling, MAX_RETRANSMIT 4); NON"
	echo "  requests are sent once and one not answered within 2 s counts as unanswered (datagrams dropped at"
	echo "  a full socket buffer are part of the figure). Latency: first transmission → 2.xx. Rate: 2.xx per"
	echo "  second from the first request to the last answer."
	echo "- Each figure sends from a loopback address of its own (127.0.2.1 CON, 127.0.3.1 NON, 127.0.4.1 and"
	echo "  127.0.5.1 with 1,000 devices, 127.0.6.1 DTLS): a server keeps the message ids it saw per endpoint for"
	echo "  up to 247 s (RFC 7252 §4.5), and a device of the next figure given a port of the last one, with an"
	echo "  overlapping run of ids, had its NON requests ignored as duplicates (67 of 300,000 once). Each"
	echo "  figure starts once the server is idle again (under 5% of a core over half a second)."
	echo "- Both servers had the same socket receive buffer: \`net.core.rmem_default\` was $coap_rmem B during these runs"
	echo "  (wanwu's listener asks for 4 MiB with SO_RCVBUF; coap-server has no option for it). With the 208 KiB"
	echo "  default, coap-server dropped requests of 1,000 devices at its socket and ran at a third of its rate."
	echo "- CPU-seconds per million is the server's utime+stime (/proc) over the run per million 2.xx; the"
	echo "  generator's own figure is beside it (they share the 2 cores)."
	echo "- \"wanwu with one P\": the hub restarted with \`GOMAXPROCS=1\`, so that it runs Go code on one core as"
	echo "  coap-server (single-threaded) does; the generator has the other. With the default (one P per core),"
	echo "  goroutines hand work between two threads, and the kernel switches them in and out against the"
	echo "  generator's threads on the same two cores: more CPU per request at 100 devices, where each batch"
	echo "  of requests waits for the last. The hub honours \`GOMAXPROCS\` like any Go program (README)."
	echo "- DTLS: wanwu only (coap-server would need a per-identity PSK file); a DTLS session is admitted once,"
	echo "  at its first request, so its requests carry no token."
	echo '<!-- compare.sh:coap:end -->'
} >"$csection"
replace_section "$RESULTS" '<!-- compare.sh:coap:begin -->' '<!-- compare.sh:coap:end -->' "$csection"
cat "$csection"

rj() { [ -s "$tmp/rt.json" ] && jq -r "$1 // empty" "$tmp/rt.json" || true; }
rms() { local v; v=$(rj "$1"); [ -n "$v" ] && awk -v v="$v" 'BEGIN { printf "%.1f", v / 1e6 }' || true; }
rsection="$tmp/rt-section.md"
{
	echo '<!-- compare.sh:roundtrip:begin -->'
	echo '## Twin and command round trips (bench/compare.sh, wanwu only)'
	echo
	echo 'Written by `bench/compare.sh coap`; do not edit by hand. It ran, against the hub of the CoAP section'
	echo 'above after its runs:'
	echo
	echo '```sh'
	echo "${rt_cmd:-wanwu bench roundtrip (did not run)}"
	echo '```'
	echo
	echo "Date: $cnow, same machine. $RT_DEVICES devices connected over MQTT 5 (paho.golang, device tokens)"
	echo "subscribe to \`twin/delta\` and \`commands/+\` (QoS 1) and answer at once; each device runs its rounds one"
	echo "after another, $RT_INTERVAL apart, all devices at the same time. Every latency starts when the generator"
	echo "sends the API request (PATCH desired state, POST command)."
	echo
	echo '| figure | p50, ms | p99, ms | p99.9, ms | n |'
	echo '|---|---|---|---|---|'
	for f in 'twin_desired_to_notified:twin: desired set → device notified (delta received)' \
		'twin_desired_to_reported:twin: desired set → device report stored (its PUBACK)' \
		'twin_desired_to_settled:twin: desired set → GET twin shows an empty delta' \
		'command_issued_to_received:command: issued → device received it (awake device)' \
		'command_issued_to_result_acked:command: issued → device result stored (its PUBACK)' \
		'command_issued_to_succeeded:command: issued → API shows succeeded (polled every 5 ms)'; do
		k=${f%%:*}
		printf '| %s | %s | %s | %s | %s |\n' "${f#*:}" "$(rms ".$k.p50_ns")" "$(rms ".$k.p99_ns")" "$(rms ".$k.p999_ns")" "$(rj ".$k.n")"
	done
	echo
	errs=$(rj '.errors // {} | to_entries | map("\(.key) \(.value)") | join(", ")')
	echo "Rounds completed: twin $(rj .twin_ok) of $((RT_DEVICES * RT_ROUNDS)), commands $(rj .command_ok) of $((RT_DEVICES * RT_ROUNDS)); errors: ${errs:-none}."
	echo "Generator CPU: $(rj .generator_cpu_s) s. No peer: mosquitto and coap-server have no twins or commands."
	echo '<!-- compare.sh:roundtrip:end -->'
} >"$rsection"
replace_section "$RESULTS" '<!-- compare.sh:roundtrip:begin -->' '<!-- compare.sh:roundtrip:end -->' "$rsection"
cat "$rsection"
log "wrote the CoAP and round-trip sections of $RESULTS"
[ "$peer_status" = ok ] && [ "$coap_wanwu_status" = ok ] && [ -z "${mqtt_failed:-}" ]
