#!/bin/sh
# bench.sh OUT ROUNDS IDLE_USERS [FIRST] — the measurements of BENCHMARKS.md.
#
# Builds the server and the tools, then ROUNDS times: restarts the server,
# measures this machine's limits (cmd/limits) and runs every loadgen scenario
# against the server, writing one JSON file per run into OUT. Everything
# listens on and loads 127.0.0.1 only; the server is stopped at the end.
# The database lives in OUT/webim.db and is reused between rounds and runs
# (users are reused; their tokens are cached in OUT/tokens.json: keep that
# file, or the idle users must all log in again). IDLE_USERS=0 skips the idle
# scenario; rounds are numbered from FIRST (default 1).
set -eu
OUT=${1:-/tmp/bench}
ROUNDS=${2:-3}
IDLE=${3:-19000}
FIRST=${4:-1}
ADDR=127.0.0.1:18000
URL=http://$ADDR
mkdir -p "$OUT"
go build -o "$OUT/webim" .
go build -o "$OUT/loadgen" ./cmd/loadgen
go build -o "$OUT/limits" ./cmd/limits

PID=
start() {
	"$OUT/webim" -addr $ADDR "$@" -db "$OUT/webim.db" -rate-limit-exempt 127.0.0.0/8 >>"$OUT/server.log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		curl -sf $URL/api/health >/dev/null && return 0
		sleep 0.1
	done
	echo "server did not start" >&2
	exit 1
}
stop() {
	[ -n "$PID" ] || return 0
	kill "$PID" && while kill -0 "$PID" 2>/dev/null; do sleep 0.1; done
	PID=
}
trap stop EXIT
trap 'stop; exit 1' INT TERM

lg() { # lg NAME ARGS...: one loadgen run, JSON into OUT/NAME.json
	name=$1
	shift
	echo "$name: $(cat /proc/loadavg)" >>"$OUT/loadavg.txt"
	"$OUT/loadgen" -url $URL -pid "$PID" -token-cache "$OUT/tokens.json" -json "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" ||
		echo "FAILED: $name (see $OUT/$name.log)" >&2
}

for r in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
	echo "round $r: limits" >&2
	echo "limits-$r: $(cat /proc/loadavg)" >>"$OUT/loadavg.txt"
	(cd "$OUT" && "$OUT/limits" -dir "$OUT" -duration 3s -conc 200 -held 5000 -json >"$OUT/limits-$r.json" 2>"$OUT/limits-$r.log")
	start
	echo "round $r: throughput" >&2
	lg "throughput-$r" -scenario throughput -pairs 100 -duration 10s
	for rate in 1000 2000 5000; do
		echo "round $r: paced $rate" >&2
		lg "paced$rate-$r" -scenario paced -pairs 100 -rate $rate -duration 10s
	done
	echo "round $r: backlog" >&2
	lg "backlog-$r" -scenario backlog -backlog 10000 -senders 4
	stop
	if [ "$IDLE" -gt 0 ]; then
		start
		echo "round $r: idle $IDLE" >&2
		lg "idle-$r" -scenario idle -users "$IDLE" -duration 10s -setup-conc 8 -login-first
		stop
	fi
done

# A CPU profile of the server under the throughput scenario (-pprof).
echo "profile: throughput with -pprof" >&2
start -pprof 127.0.0.1:16979
lg profile-throughput -scenario throughput -pairs 100 -duration 14s &
LG=$!
sleep 2
curl -sf -o "$OUT/cpu.pprof" "http://127.0.0.1:16979/debug/pprof/profile?seconds=10"
wait $LG
stop
go tool pprof -top -nodecount=40 "$OUT/webim" "$OUT/cpu.pprof" >"$OUT/pprof-top.txt" 2>/dev/null
go tool pprof -top -cum -nodecount=80 "$OUT/webim" "$OUT/cpu.pprof" >"$OUT/pprof-cum.txt" 2>/dev/null
echo "done: $OUT" >&2
