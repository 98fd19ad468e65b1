#!/bin/sh
# pg-where.sh OUT [ROUNDS] — where PostgreSQL's time goes per delivered
# message, for BENCHMARKS.md's "PostgreSQL: where the time goes".
#
# A private cluster (loopback, fsync and synchronous_commit on) with
# pg_stat_statements; ROUNDS times: a fresh database and webim, a short
# setup run (users, friendships, tokens), then the throughput run (100
# pairs, 10 s) and a paced 1k/s run, each with the statement statistics
# reset before it and dumped after it: the top statements by total time with
# calls and time per delivered message, commits, WAL bytes and fsyncs per
# message, autovacuum runs, the cluster's CPU. Ports 15471 and 18071, so it
# can run beside bench-engines.sh.
set -eu
OUT=${1:-/tmp/pg-where}
ROUNDS=${2:-2}
ADDR=127.0.0.1:18071
URL=http://$ADDR
PGPORT=15471
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$OUT"
# WEBIM: a prebuilt server to measure instead of this tree's (a baseline).
if [ -n "${WEBIM:-}" ]; then cp "$WEBIM" "$OUT/webim"; else go build -o "$OUT/webim" .; fi
go build -o "$OUT/loadgen" ./cmd/loadgen

as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
rm -rf "$OUT/pg" && mkdir -p "$OUT/pg"
[ "$(id -u)" = 0 ] && chown postgres "$OUT/pg"
as_pg "'$PGBIN/initdb' -D '$OUT/pg/data' -U postgres --auth=trust --no-locale -E UTF8 >/dev/null"
as_pg "'$PGBIN/pg_ctl' -D '$OUT/pg/data' -l '$OUT/pg/log' -w -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories='$OUT/pg' -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_preload_libraries=pg_stat_statements${AUTOEXPLAIN:+,auto_explain -c auto_explain.log_min_duration=$AUTOEXPLAIN -c auto_explain.log_analyze=on -c auto_explain.log_buffers=on} -c pg_stat_statements.track=all -c log_autovacuum_min_duration=0\" start >/dev/null"
pgstop() { as_pg "'$PGBIN/pg_ctl' -D '$OUT/pg/data' -m fast stop >/dev/null" || true; }
pgcpu() {
	pm=$(head -1 "$OUT/pg/data/postmaster.pid")
	for pid in $pm $(pgrep -P "$pm"); do
		awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || true
	done | awk -v hz="$(getconf CLK_TCK)" '{s+=$1} END {printf "%.3f\n", s/hz}'
}
PID=
stop() {
	[ -n "$PID" ] || return 0
	kill "$PID" && while kill -0 "$PID" 2>/dev/null; do sleep 0.1; done
	PID=
}
trap 'stop; pgstop' EXIT
trap 'stop; pgstop; exit 1' INT TERM
field() { grep -o "\"$2\": *[0-9.]*" "$1" | head -1 | grep -o '[0-9.]*$'; }

# sql ARGS: psql on webim_where, the SQL on stdin.
sql() { as_pg "'$PGBIN/psql' -h '$OUT/pg' -p $PGPORT -d webim_where -X -q -v ON_ERROR_STOP=1 -P pager=off $*"; }

run() { # run NAME LOADGEN-ARGS...
	name=$1
	shift
	sql -At >/dev/null <<-SQL
		SELECT pg_stat_statements_reset(); SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('wal');
	SQL
	lsn0=$(echo "SELECT pg_current_wal_lsn()" | sql -At)
	cpu0=$(pgcpu)
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	"$OUT/loadgen" -url $URL -pid "$PID" -json -token-cache "$OUT/tokens.json" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" ||
		echo "FAILED: $name (see $OUT/$name.log)" >&2
	cpu1=$(pgcpu)
	d=$(field "$OUT/$name.json" delivered)
	sleep 0.6 # the stats' flush
	{
		echo "== $name: loadavg $load"
		echo "delivered $d, $(field "$OUT/$name.json" delivered_per_sec) msgs/s; webim $(field "$OUT/$name.json" server_cpu_us_per_delivered) µs/msg; postgres $(echo "$cpu0 $cpu1 $d" | awk '{printf "%.0f", ($2-$1)/$3*1e6}') µs/msg"
		grep -A8 '"latency"' "$OUT/$name.json" | tr -d '\n ' | head -c 300
		echo
		sql <<-SQL
			SELECT round(xact_commit::numeric/$d, 3) AS commits_per_msg, round(xact_rollback::numeric/$d, 3) AS rollbacks_per_msg,
				round(tup_inserted::numeric/$d, 2) AS ins_per_msg, round(tup_updated::numeric/$d, 2) AS upd_per_msg,
				round(tup_deleted::numeric/$d, 2) AS del_per_msg, round(blks_hit::numeric/$d, 1) AS blks_hit_per_msg
				FROM pg_stat_database WHERE datname = 'webim_where';
			SELECT round((pg_current_wal_lsn() - '$lsn0'::pg_lsn)/$d) AS wal_bytes_per_msg, wal_records, wal_fpi,
				round(wal_sync::numeric/$d, 3) AS fsyncs_per_msg, wal_sync FROM pg_stat_wal;
			SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_dead_tup, autovacuum_count, autoanalyze_count
				FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname;
			SELECT round(total_exec_time::numeric, 1) AS total_ms, round((total_exec_time*1000/$d)::numeric, 1) AS us_per_msg,
				round(calls::numeric/$d, 4) AS calls_per_msg, round(mean_exec_time::numeric*1000, 1) AS mean_us,
				round(rows::numeric/greatest(calls,1), 1) AS rows_per_call, shared_blks_hit/greatest(calls,1) AS blks_per_call,
				left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
				FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'webim_where')
				ORDER BY total_exec_time DESC LIMIT 22;
		SQL
	} >"$OUT/$name.txt" 2>&1
	cat "$OUT/$name.txt"
}

for r in $(seq "$ROUNDS"); do
	as_pg "'$PGBIN/dropdb' -h '$OUT/pg' -p $PGPORT --if-exists webim_where && '$PGBIN/createdb' -h '$OUT/pg' -p $PGPORT webim_where"
	echo "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" | sql >/dev/null
	rm -f "$OUT/tokens.json"
	"$OUT/webim" -addr $ADDR -db "postgres://postgres@127.0.0.1:$PGPORT/webim_where?sslmode=disable" -rate-limit-exempt 127.0.0.0/8 -log-level warn ${PPROF:+-pprof $PPROF} >>"$OUT/server.log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do curl -sf $URL/api/health >/dev/null && break; sleep 0.1; done
	"$OUT/loadgen" -url $URL -scenario paced -pairs 100 -rate 100 -duration 1s -token-cache "$OUT/tokens.json" >/dev/null 2>&1
	run "throughput-$r" -scenario throughput -pairs 100 -duration 10s
	run "paced1000-$r" -scenario paced -pairs 100 -rate 1000 -duration 10s
	stop
done
echo "done: $OUT" >&2
