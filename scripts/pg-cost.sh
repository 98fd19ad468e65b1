#!/bin/sh
# pg-cost.sh OUT [RATE] [SECONDS] — what one message costs PostgreSQL, for
# docs/cluster.md: one webim node on a private cluster (loopback, fsync and
# synchronous_commit on), a paced loadgen run, and the cluster's CPU
# seconds, WAL bytes and commits over the run divided by messages sent.
set -eu
OUT=${1:-/tmp/pg-cost}
RATE=${2:-1000}
SECS=${3:-10}
ADDR=127.0.0.1:18011
PGPORT=15433
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$OUT"
go build -o "$OUT/webim" .
go build -o "$OUT/loadgen" ./cmd/loadgen

as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
rm -rf "$OUT/pg" && mkdir -p "$OUT/pg"
[ "$(id -u)" = 0 ] && chown postgres "$OUT/pg"
as_pg "'$PGBIN/initdb' -D '$OUT/pg/data' -U postgres --auth=trust --no-locale -E UTF8 >/dev/null"
as_pg "'$PGBIN/pg_ctl' -D '$OUT/pg/data' -l '$OUT/pg/log' -w -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories='$OUT/pg' -c fsync=on -c synchronous_commit=on\" start >/dev/null"
PID=
cleanup() {
	[ -z "$PID" ] || { kill "$PID"; wait "$PID" 2>/dev/null || true; }
	as_pg "'$PGBIN/pg_ctl' -D '$OUT/pg/data' -m fast stop >/dev/null" || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM
as_pg "'$PGBIN/createdb' -h '$OUT/pg' -p $PGPORT webim_cost"
DB="postgres://postgres@127.0.0.1:$PGPORT/webim_cost?sslmode=disable"
psql() { as_pg "'$PGBIN/psql' -h '$OUT/pg' -p $PGPORT -d webim_cost -Atc \"$1\""; }
pgcpu() {
	pm=$(head -1 "$OUT/pg/data/postmaster.pid")
	for pid in $pm $(pgrep -P "$pm"); do
		awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || true
	done | awk -v hz="$(getconf CLK_TCK)" '{s+=$1} END {printf "%.3f\n", s/hz}'
}
"$OUT/webim" -addr $ADDR -db "$DB" -rate-limit-exempt 127.0.0.0/8 -log-level warn >>"$OUT/server.log" 2>&1 &
PID=$!
for _ in $(seq 200); do curl -sf http://$ADDR/api/health >/dev/null && break; sleep 0.1; done
# Users and friendships first (a short run), so the measured one is sends only.
"$OUT/loadgen" -url http://$ADDR -scenario paced -pairs 100 -rate 100 -duration 1s -token-cache "$OUT/tokens.json" >/dev/null 2>&1
lsn0=$(psql "SELECT pg_current_wal_lsn()")
tx0=$(psql "SELECT xact_commit FROM pg_stat_database WHERE datname = 'webim_cost'")
sync0=$(psql "SELECT wal_sync FROM pg_stat_wal")
cpu0=$(pgcpu)
"$OUT/loadgen" -url http://$ADDR -pid "$PID" -json -scenario paced -pairs 100 -rate "$RATE" -duration "${SECS}s" \
	-token-cache "$OUT/tokens.json" >"$OUT/run.json" 2>"$OUT/run.log"
cpu1=$(pgcpu)
tx1=$(psql "SELECT xact_commit FROM pg_stat_database WHERE datname = 'webim_cost'")
sync1=$(psql "SELECT wal_sync FROM pg_stat_wal")
wal=$(psql "SELECT pg_current_wal_lsn() - '$lsn0'::pg_lsn")
field() { grep -o "\"$1\": *[0-9.]*" "$OUT/run.json" | head -1 | grep -o '[0-9.]*$'; }
sent=$(field sent)
echo "webim CPU: $(field server_cpu_us_per_delivered) µs/delivered; p50/p99 in $OUT/run.json"
echo "rate $RATE/s for ${SECS}s: sent $sent; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$sent $cpu0 $cpu1 $tx0 $tx1 $wal $sync0 $sync1 $SECS" | awk '{
	printf "postgres CPU: %.1f µs/message (%.3f s)\n", ($3-$2)/$1*1e6, $3-$2
	# xact_commit counts read-only statements too (session checks, polls).
	printf "transactions, reads included: %.3f per message (%d)\n", ($5-$4)/$1, $5-$4
	printf "WAL fsyncs: %.3f per message, %.0f/s (%d)\n", ($8-$7)/$1, ($8-$7)/$9, $8-$7
	printf "WAL: %.0f bytes/message (%d)\n", $6/$1, $6
}'
