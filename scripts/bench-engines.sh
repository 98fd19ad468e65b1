#!/bin/sh
# bench-engines.sh OUT ROUNDS — SQLite and PostgreSQL side by side, for
# BENCHMARKS.md's "PostgreSQL" section.
#
# Starts a private PostgreSQL cluster (initdb into OUT/pg, loopback, port
# 15432, fsync and synchronous_commit on, run as the postgres user when
# root), then ROUNDS times for each engine: starts webim on a fresh database,
# runs the loadgen's throughput (100 pairs) and paced 1k/s and 2k/s runs and a
# small idle run, and writes one JSON file per run into OUT plus, for
# PostgreSQL, the CPU seconds its processes used in OUT/NAME.pgcpu. Everything
# listens on and loads 127.0.0.1 only; servers are stopped at the end.
set -eu
OUT=${1:-/tmp/bench-engines}
ROUNDS=${2:-3}
IDLE=${IDLE:-2000}
ADDR=127.0.0.1:18001
URL=http://$ADDR
PGPORT=15432
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$OUT"
go build -o "$OUT/webim" .
go build -o "$OUT/loadgen" ./cmd/loadgen

as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
rm -rf "$OUT/pg" && mkdir -p "$OUT/pg"
[ "$(id -u)" = 0 ] && chown postgres "$OUT/pg"
as_pg "'$PGBIN/initdb' -D '$OUT/pg/data' -U postgres --auth=trust --no-locale -E UTF8 >/dev/null"
as_pg "'$PGBIN/pg_ctl' -D '$OUT/pg/data' -l '$OUT/pg/log' -w -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories='$OUT/pg' -c fsync=on -c synchronous_commit=on -c max_connections=200\" start >/dev/null"
pgstop() { as_pg "'$PGBIN/pg_ctl' -D '$OUT/pg/data' -m fast stop >/dev/null" || true; }

# pgcpu: CPU seconds used so far by the cluster's processes.
pgcpu() {
	pm=$(head -1 "$OUT/pg/data/postmaster.pid")
	for pid in $pm $(pgrep -P "$pm"); do
		awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || true
	done | awk -v hz="$(getconf CLK_TCK)" '{s+=$1} END {printf "%.3f\n", s/hz}'
}

PID=
start() { # start DB
	"$OUT/webim" -addr $ADDR -db "$1" -rate-limit-exempt 127.0.0.0/8 -log-level warn >>"$OUT/server.log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do
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
trap 'stop; pgstop' EXIT
trap 'stop; pgstop; exit 1' INT TERM

lg() { # lg NAME ARGS...
	name=$1
	shift
	before=$(pgcpu)
	echo "$name: $(cat /proc/loadavg)" >>"$OUT/loadavg.txt"
	"$OUT/loadgen" -url $URL -pid "$PID" -json "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" ||
		echo "FAILED: $name (see $OUT/$name.log)" >&2
	echo "$(pgcpu) $before" | awk '{printf "%.3f\n", $1-$2}' >"$OUT/$name.pgcpu"
}

for r in $(seq "$ROUNDS"); do
	for engine in sqlite postgres; do
		if [ $engine = sqlite ]; then
			rm -rf "$OUT/webim.db"*
			db="$OUT/webim.db"
		else
			as_pg "'$PGBIN/dropdb' -h '$OUT/pg' -p $PGPORT --if-exists webim_bench && '$PGBIN/createdb' -h '$OUT/pg' -p $PGPORT webim_bench"
			db="postgres://postgres@127.0.0.1:$PGPORT/webim_bench?sslmode=disable"
		fi
		start "$db"
		echo "round $r $engine: throughput" >&2
		lg "$engine-throughput-$r" -scenario throughput -pairs 100 -duration 10s
		for rate in 1000 2000; do
			echo "round $r $engine: paced $rate" >&2
			lg "$engine-paced$rate-$r" -scenario paced -pairs 100 -rate $rate -duration 10s
		done
		if [ "$IDLE" -gt 0 ]; then
			echo "round $r $engine: idle $IDLE" >&2
			lg "$engine-idle-$r" -scenario idle -users "$IDLE" -duration 10s -setup-conc 8 -login-first
		fi
		stop
	done
done
echo "done: $OUT" >&2
