package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The PostgreSQL engine. Like the SQLite one it funnels every write through
// one writer goroutine that commits whatever is pending in one transaction
// (group commit), so a thousand waiting sends cost one commit, not a thousand.
// Unlike SQLite it cannot assume it is the only writer: other processes (admin
// commands now, other nodes next) write the same tables. So nothing that
// another writer may change is remembered between transactions: a queue's
// last seq and message count are read, under the cursor row's lock, in each
// transaction that changes them; relations are read in the transaction that
// depends on them. Only facts that never change are cached (a username's id).

//go:embed schema_postgres.sql
var pgSchema string

// pgFirstVersion is the schema version schema_postgres.sql had when the
// engine began: SQLite's version then, so a number means the same schema on
// both engines.
const pgFirstVersion = 3

// pgMigrations[i] takes a database from version pgFirstVersion+i to the next.
// A fresh database skips them (schema_postgres.sql is always the latest).
// Each step runs in its own transaction under the migration lock.
var pgMigrations = []string{
	// 4: groups, read markers, the queue's conversation key (as SQLite's 4).
	pgMigrationGroups,
}

func pgSchemaVersion() int { return pgFirstVersion + len(pgMigrations) }

// pgMigrationLock is the pg_advisory_xact_lock key that serialises schema
// changes, so processes starting together on an empty database do not race.
const pgMigrationLock = 0x7765_6269_6d00 // "webim\0"

const (
	pgConnectTimeout = 5 * time.Second
	// pgBatchTimeout bounds one write transaction: a Postgres that stopped
	// answering fails the batch (503) instead of holding every writer.
	pgBatchTimeout = 15 * time.Second
	// pgMaxRetries is how often a batch is run again after a deadlock or a
	// serialization failure, which another writer's transaction caused.
	pgMaxRetries = 5
	// pgQueuedRefresh is how often the queued gauge is read from the
	// database, so other processes' sends and cleans show in /metrics.
	pgQueuedRefresh = 5 * time.Second
)

type pgStore struct {
	pool     *pgxpool.Pool
	where    string // host, port and database, for errors (never the password)
	log      *slog.Logger
	maxQueue int
	shared   bool
	now      func() time.Time

	mu      sync.Mutex
	pending []*pgOp
	closed  bool
	wake    chan struct{} // capacity 1: "pending is not empty"
	stopped chan struct{} // closed when the writer goroutine has exited
	quit    chan struct{} // closed by Close: background loops stop
	bg      sync.WaitGroup

	onCommit func(users []int64)
	isOnline func(user int64) bool

	queued atomic.Int64

	// users maps usernames to users; only the writer touches it. Safe
	// across processes because a name's id never changes while the account
	// exists and ids are never reused; a deleted name is caught because the
	// send's own lookup (in its transaction) is what decides.
	users map[string]User

	// ephemeral holds typing events until a poll takes them; seqFloor is
	// what the writer gave them (postgres_groups.go).
	ephemeral pgEphemeral
	seqFloor  map[int64]seqFloor
}

// openPostgres connects to the database url names, brings its schema up to
// date and starts the writer. shared is for an admin command beside running
// servers: it leaves the orphan sweep and the gauge refresh to them.
func openPostgres(url string, maxQueue int, log *slog.Logger, shared bool) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("invalid PostgreSQL URL %s: %s", redactDBURL(url), scrubPassword(err.Error(), url, ""))
	}
	cc := cfg.ConnConfig
	where := fmt.Sprintf("PostgreSQL at %s, database %q", net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), cc.Database)
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > pgConnectTimeout {
		cc.ConnectTimeout = pgConnectTimeout
	}
	// A commit must be durable before the 201: whatever the server's
	// default, webim's sessions wait for the WAL flush.
	cc.RuntimeParams["synchronous_commit"] = "on"
	cc.RuntimeParams["application_name"] = "webim"
	if shared {
		cfg.MaxConns = 2
	} else {
		// The writer, polls' reads and uploads in flight.
		cfg.MaxConns = 16
	}
	cfg.MinConns = 0
	cfg.HealthCheckPeriod = 10 * time.Second
	password := cc.Password
	fail := func(err error) error {
		return fmt.Errorf("%s: %s", where, scrubPassword(pgErrorText(err), url, password))
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgConnectTimeout+time.Second)
	err = pool.Ping(ctx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fail(err)
	}
	s := &pgStore{
		pool:     pool,
		where:    where,
		log:      log,
		maxQueue: maxQueue,
		shared:   shared,
		now:      time.Now,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		quit:     make(chan struct{}),
		onCommit: func([]int64) {},
		isOnline: func(int64) bool { return false },
		users:    map[string]User{},
		seqFloor: map[int64]seqFloor{},
	}
	if err := s.migrate(context.Background()); err != nil {
		pool.Close()
		return nil, fail(err)
	}
	var queued int64
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(sum(queued), 0) FROM cursors`).Scan(&queued); err != nil {
		pool.Close()
		return nil, fail(err)
	}
	s.queued.Store(queued)
	if !shared {
		if err := s.openSeqState(context.Background()); err != nil {
			pool.Close()
			return nil, fail(err)
		}
	}
	go s.runWriter()
	if !shared {
		s.bg.Add(1)
		go s.housekeeping()
	}
	return s, nil
}

// pgErrorText is err's message without pgx's "failed to connect to `user=…`"
// prefix, which says less than our own.
func pgErrorText(err error) string {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if inner := errors.Unwrap(ce); inner != nil {
			return "cannot connect: " + inner.Error()
		}
	}
	return err.Error()
}

// scrubPassword removes the password from text, wherever it came from (the
// URL, PGPASSWORD, .pgpass): drivers quote connection strings in errors.
func scrubPassword(text, url, password string) string {
	if password != "" {
		text = strings.ReplaceAll(text, password, "xxxxx")
	}
	if p := urlPassword(url); p != "" {
		text = strings.ReplaceAll(text, p, "xxxxx")
	}
	return text
}

// migrate creates a fresh database at the latest schema, or runs the steps
// from its version, each in a transaction that first takes the migration
// lock and reads the version again (another process may have moved it).
func (s *pgStore) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateStep(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (s *pgStore) migrateStep(ctx context.Context) (done bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrationLock)); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version int NOT NULL)`); err != nil {
		return false, err
	}
	version := 0
	err = tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	latest := pgSchemaVersion()
	switch {
	case version > latest:
		return false, fmt.Errorf("the database has schema version %d; this binary knows up to %d: use a newer webim", version, latest)
	case version == latest:
		return true, nil
	case version == 0:
		var tables int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'users'`).Scan(&tables); err != nil {
			return false, err
		}
		if tables > 0 {
			return false, errors.New("the database has webim's tables but no schema_version: refusing to guess its version")
		}
		if _, err := tx.Exec(ctx, pgSchema); err != nil {
			return false, fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, latest); err != nil {
			return false, err
		}
		version = latest
	default:
		if _, err := tx.Exec(ctx, pgMigrations[version-pgFirstVersion]); err != nil {
			return false, fmt.Errorf("migrate to version %d: %w", version+1, err)
		}
		version++
		if _, err := tx.Exec(ctx, `UPDATE schema_version SET version = $1`, version); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, err
	}
	s.log.Info("database migrated", "db", s.where, "version", version)
	return version == latest, nil
}

func (s *pgStore) Wire(onCommit func([]int64), isOnline func(int64) bool) {
	s.onCommit, s.isOnline = onCommit, isOnline
}

func (s *pgStore) Now() time.Time { return s.now() }

func (s *pgStore) SetClock(now func() time.Time) { s.now = now }

// Ping reports whether the database answers.
func (s *pgStore) Ping(ctx context.Context) error {
	return s.interpretError(s.pool.Ping(ctx))
}

// Close commits what is pending, stops the background work and closes the
// pool.
func (s *pgStore) Close() error {
	if !s.shared {
		if err := s.saveSeqState(); err != nil && !errors.Is(err, errShuttingDown) {
			s.log.Warn("could not save the queues' seqs; the next start skips ahead", "err", err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	s.signalWriter()
	<-s.stopped
	s.bg.Wait()
	s.pool.Close()
	return nil
}

// housekeeping refreshes the queued gauge from the database (other
// processes send and clean too) and sweeps orphan uploads.
func (s *pgStore) housekeeping() {
	defer s.bg.Done()
	s.sweepOrphanBlobs()
	refresh := time.NewTicker(pgQueuedRefresh)
	defer refresh.Stop()
	sweep := time.NewTicker(10 * time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-refresh.C:
			s.goDo(func(tx *pgTx) error { tx.refreshQueued = true; return nil })
		case <-sweep.C:
			s.sweepOrphanBlobs()
		}
	}
}

// --- errors ---------------------------------------------------------------

// interpretError maps what pgx returns to what the server answers: the
// database being unreachable, shutting down, out of space or overloaded is
// errStorage (503, the client may retry); webim's own errors pass through;
// anything else (a bug) is left as it is (500).
func (s *pgStore) interpretError(err error) error {
	if err == nil || isClientError(err) {
		return err
	}
	if pgIsStorageFailure(err) {
		return storageError(err)
	}
	return err
}

func pgIsStorageFailure(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),       // insufficient resources: disk full, out of memory, too many connections
			strings.HasPrefix(pe.Code, "57"),       // operator intervention: admin shutdown, crash shutdown, cannot connect now
			strings.HasPrefix(pe.Code, "58"),       // system error: I/O
			pe.Code == "40001", pe.Code == "40P01", // still failing after the retries
			pe.Code == "25006", // read-only transaction (a standby)
			pe.Code == "55P03": // lock not available
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false // the client went away
	}
	// Everything else pgx returns without a server error is the connection
	// failing: refused, reset, timed out, closed pool.
	return true
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// pgRetryable reports whether a failed batch may simply run again: another
// writer's transaction got in its way (deadlock, serialization), or a
// client_msg_id another process stored meanwhile (the retry finds it).
func pgRetryable(err error) bool {
	switch pgCode(err) {
	case "40001", "40P01", "23505":
		return true
	}
	return false
}

// --- the writer -----------------------------------------------------------

// pgOp is one unit of work for the writer. Most are a fn run in the batch's
// transaction; text sends and cleans are data, run together by set-based
// statements (one statement for all of a batch's sends, whatever their
// number). Every fn refuses (client errors) before its first write, so no op
// needs a savepoint: a refusal has nothing to undo in the database, and the
// in-memory effects it registered are dropped.
type pgOp struct {
	fn    func(tx *pgTx) error
	send  *pgSend
	clean *pgClean
	err   error
	done  chan struct{} // nil for fire-and-forget ops
}

func (s *pgStore) do(fn func(tx *pgTx) error) error {
	return s.wait(&pgOp{fn: fn, done: make(chan struct{})})
}

// wait submits op and waits for its fate. The op runs even if the client
// goes away: it may already be committed, and its answer must say so.
func (s *pgStore) wait(op *pgOp) error {
	if !s.submit(op) {
		return errShuttingDown
	}
	<-op.done
	return op.err
}

func (s *pgStore) goDo(fn func(tx *pgTx) error) { s.submit(&pgOp{fn: fn}) }

func (s *pgStore) submit(op *pgOp) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.pending = append(s.pending, op)
	s.mu.Unlock()
	s.signalWriter()
	return true
}

func (s *pgStore) signalWriter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *pgStore) runWriter() {
	defer close(s.stopped)
	var batch []*pgOp
	for {
		s.mu.Lock()
		for len(s.pending) == 0 && !s.closed {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if len(s.pending) == 0 && s.closed {
			s.mu.Unlock()
			return
		}
		n := min(len(s.pending), maxOpsPerTx)
		batch = append(batch[:0], s.pending[:n]...)
		s.pending = append(s.pending[:0:0], s.pending[n:]...)
		s.mu.Unlock()

		s.runBatch(batch)
		clear(batch)
	}
}

// runBatch commits batch in one transaction, running it again if another
// writer's transaction made it fail, and then tells every op its fate.
func (s *pgStore) runBatch(batch []*pgOp) {
	var tx *pgTx
	var err error
	for attempt := 0; ; attempt++ {
		tx, err = s.tryBatch(batch)
		if err == nil || attempt >= pgMaxRetries || !(pgRetryable(err) || (attempt == 0 && !tx.commitSent && pgconn.SafeToRetry(err))) {
			break
		}
		// A little wait lets the other transaction finish.
		time.Sleep(time.Duration(attempt+1) * 2 * time.Millisecond)
	}
	if err != nil {
		s.log.Error("write transaction failed", "ops", len(batch), "err", err)
		for _, op := range batch {
			if op.err == nil || !isClientError(op.err) || errors.Is(op.err, errStorage) {
				op.err = storageError(err)
			}
		}
	} else {
		if tx.refreshQueued {
			s.queued.Store(tx.queuedTotal)
		} else {
			s.queued.Add(tx.queuedDelta)
		}
		for _, f := range tx.after {
			f()
		}
		if len(tx.woken) > 0 {
			s.onCommit(dedupe(tx.woken))
		}
	}
	for _, op := range batch {
		if op.err != nil && op.done == nil && !isClientError(op.err) {
			s.log.Error("background write failed", "err", op.err)
		}
		if op.done != nil {
			close(op.done)
		}
	}
}

// tryBatch runs batch in one transaction on a connection of the pool. On
// error nothing of it is committed (or, if the connection broke during
// COMMIT, its fate is unknown: the client retries with its client_msg_id).
func (s *pgStore) tryBatch(batch []*pgOp) (*pgTx, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pgBatchTimeout)
	defer cancel()
	tx := &pgTx{s: s, ctx: ctx, now: s.now(), cur: map[int64]*pgCursor{}}
	for _, op := range batch {
		op.err = nil
		if op.send != nil {
			op.send.reset()
		}
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return tx, err
	}
	tx.conn = pc.Conn()
	defer func() {
		if tx.begun && !tx.finished {
			// Release destroys a connection left inside a transaction, but
			// a healthy one is worth keeping.
			rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
			if _, err := tx.conn.Exec(rctx, "ROLLBACK"); err != nil {
				tx.conn.Close(rctx)
			}
			rcancel()
		}
		pc.Release()
	}()
	err = tx.run(batch)
	return tx, err
}

// isClientError and storageError are shared with the SQLite engine
// (sqlite.go): webim's sentinels, and errStorage wrapping the cause.

// readErr is interpretError for a read: no rows is the caller's sentinel.
func (s *pgStore) readErr(err error, noRows error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return noRows
	}
	return s.interpretError(err)
}

// pgTx is one batch's transaction as its ops see it. The cursor rows it
// has read are locked (FOR UPDATE) until it ends, so their last seq and
// queued count are held here, changed by the ops, and written back once
// just before COMMIT; queue rows are gathered the same way and inserted by
// one statement. That makes a batch of sends a handful of round trips,
// whatever its size.
type pgTx struct {
	s    *pgStore
	ctx  context.Context
	conn *pgx.Conn
	now  time.Time

	begun, finished, commitSent bool

	cur  map[int64]*pgCursor
	rows pgQueueRows
	msgs pgMessageRows

	sends, cleans []*pgOp

	woken       []int64
	after       []func()
	queuedDelta int64
	// release is set when queue rows holding messages were deleted: the
	// messages (and files) no queue holds any more go before COMMIT.
	release bool
	// refreshQueued asks for sum(queued) over all queues after this
	// batch's changes, which then replaces the gauge.
	refreshQueued bool
	queuedTotal   int64
}

// pgCursor is a locked cursor row: missing when the user does not exist.
type pgCursor struct {
	lastSeq, queued, acked int64
	missing, dirty         bool
}

// pgQueueRows are queue rows to insert, as the columns of one unnest.
type pgQueueRows struct {
	user, seq, message, at []int64
	kind                   []int16
	payload                []string // "" for messages (NULL)
	conv                   []int64  // the queue's conversation key, 0 for notices
	own                    []int16  // 1 on a message's copy in its sender's queue
}

func (r *pgQueueRows) add(user, seq int64, kind int16, message int64, payload string, at int64) {
	r.addIn(user, seq, kind, message, payload, at, 0, 0)
}

// addMessage adds a message row of the conversation conv (see the schema).
func (r *pgQueueRows) addMessage(user, seq, message, at, conv int64, own bool) {
	var o int16
	if own {
		o = 1
	}
	r.addIn(user, seq, kindMessage, message, "", at, conv, o)
}

func (r *pgQueueRows) addIn(user, seq int64, kind int16, message int64, payload string, at, conv int64, own int16) {
	r.conv = append(r.conv, conv)
	r.own = append(r.own, own)
	r.user = append(r.user, user)
	r.seq = append(r.seq, seq)
	r.kind = append(r.kind, kind)
	r.message = append(r.message, message)
	r.payload = append(r.payload, payload)
	r.at = append(r.at, at)
}

func (r *pgQueueRows) len() int { return len(r.user) }

// keep drops the rows for which keep is false.
func (r *pgQueueRows) filter(keep func(i int) bool) {
	var out pgQueueRows
	for i := range r.user {
		if keep(i) {
			out.addIn(r.user[i], r.seq[i], r.kind[i], r.message[i], r.payload[i], r.at[i], r.conv[i], r.own[i])
		}
	}
	*r = out
}

const pgInsertQueue = `INSERT INTO queue (user_id, seq, kind, message_id, payload, at, conv, own)
	SELECT u, s, k, nullif(m, 0), nullif(p, ''), a, c, o
	FROM unnest($1::int8[], $2::int8[], $3::int2[], $4::int8[], $5::text[], $6::int8[], $7::int8[], $8::int2[]) AS v(u, s, k, m, p, a, c, o)`

func (r *pgQueueRows) queue(b *pgx.Batch) {
	b.Queue(pgInsertQueue, r.user, r.seq, r.kind, r.message, r.payload, r.at, r.conv, r.own)
}

// begin starts the transaction if no statement has yet.
func (tx *pgTx) begin() error {
	if tx.begun {
		return nil
	}
	if _, err := tx.conn.Exec(tx.ctx, "BEGIN"); err != nil {
		return err
	}
	tx.begun = true
	return nil
}

// beginIn makes BEGIN the first statement of b, if the transaction has not
// begun, so it costs no round trip of its own. It returns how many results
// of b's are BEGIN's (0 or 1).
func (tx *pgTx) beginIn(b *pgx.Batch) int {
	if tx.begun {
		return 0
	}
	rest := b.QueuedQueries
	b.QueuedQueries = nil
	b.Queue("BEGIN")
	b.QueuedQueries = append(b.QueuedQueries, rest...)
	tx.begun = true
	return 1
}

func (tx *pgTx) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	if err := tx.begin(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.conn.Exec(tx.ctx, sql, args...)
}

func (tx *pgTx) queryRow(sql string, args ...any) pgx.Row {
	if err := tx.begin(); err != nil {
		return errRow{err}
	}
	return tx.conn.QueryRow(tx.ctx, sql, args...)
}

func (tx *pgTx) query(sql string, args ...any) (pgx.Rows, error) {
	if err := tx.begin(); err != nil {
		return nil, err
	}
	return tx.conn.Query(tx.ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (tx *pgTx) wakeUser(id int64) { tx.woken = append(tx.woken, id) }

// onCommit runs f after the batch commits, if this op's changes stand.
func (tx *pgTx) onCommit(f func()) { tx.after = append(tx.after, f) }

// run runs every op of the batch and commits. Ops that are functions run in
// order; then the batch's cleans and sends, together. Every op of a batch
// was submitted while the others were waiting, so running the waiting ones
// in any order is an order they might have arrived in; the fire-and-forget
// ones keep their place among the functions.
func (tx *pgTx) run(batch []*pgOp) error {
	for _, op := range batch {
		switch {
		case op.send != nil:
			tx.sends = append(tx.sends, op)
		case op.clean != nil:
			tx.cleans = append(tx.cleans, op)
		default:
			if err := tx.runOp(op); err != nil {
				return err
			}
		}
	}
	if len(tx.sends)+len(tx.cleans) > 0 {
		if err := tx.runGroup(); err != nil {
			return err
		}
	}
	return tx.commit()
}

// runOp runs one function op. Its client error is its answer, and what it
// registered in memory is dropped (it wrote nothing: every op refuses before
// its first write); any other error fails the batch.
func (tx *pgTx) runOp(op *pgOp) error {
	woken, after, delta, rows := len(tx.woken), len(tx.after), tx.queuedDelta, tx.rows.len()
	err := op.fn(tx)
	if err == nil {
		return nil
	}
	tx.woken, tx.after, tx.queuedDelta = tx.woken[:woken], tx.after[:after], delta
	tx.rows.filter(func(i int) bool { return i < rows })
	if !isClientError(err) {
		return err
	}
	op.err = err
	return nil
}

// cursor locks user's cursor row for the rest of the transaction, or
// returns errNoSuchUser.
func (tx *pgTx) cursor(user int64) (*pgCursor, error) {
	c := tx.cur[user]
	if c == nil {
		c = &pgCursor{}
		err := tx.queryRow(`SELECT last_seq, queued FROM cursors WHERE user_id = $1 FOR UPDATE`, user).Scan(&c.lastSeq, &c.queued)
		if errors.Is(err, pgx.ErrNoRows) {
			c.missing = true
		} else if err != nil {
			return nil, err
		}
		tx.s.applySeqFloor(user, c)
		tx.cur[user] = c
	}
	if c.missing {
		return nil, errNoSuchUser
	}
	return c, nil
}

// lockCursors queues the statement that locks users' cursor rows, in id
// order so that two writers locking overlapping sets wait rather than
// deadlock; scan reads its result.
const pgLockCursors = `SELECT user_id, last_seq, queued FROM cursors WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE`

func (tx *pgTx) scanLocked(rows pgx.Rows, ids []int64) error {
	for _, id := range ids {
		tx.cur[id] = &pgCursor{missing: true}
	}
	for rows.Next() {
		var id int64
		c := &pgCursor{}
		if err := rows.Scan(&id, &c.lastSeq, &c.queued); err != nil {
			rows.Close()
			return err
		}
		tx.s.applySeqFloor(id, c)
		tx.cur[id] = c
	}
	rows.Close()
	return rows.Err()
}

// commit writes what the ops gathered — files, messages, queue rows, the
// cursors — releases what cleans let go, and commits, in one round trip.
func (tx *pgTx) commit() error {
	var dirty []int64
	for id, c := range tx.cur {
		if c.dirty && !c.missing {
			dirty = append(dirty, id)
		}
	}
	if !tx.begun && tx.rows.len() == 0 && len(dirty) == 0 && tx.msgs.len() == 0 && !tx.release && !tx.refreshQueued {
		return nil // nothing was read or written: every op refused, or none wrote
	}
	b := &pgx.Batch{}
	tx.msgs.queue(b)
	if tx.rows.len() > 0 {
		tx.rows.queue(b)
	}
	if len(dirty) > 0 {
		last, queued, acked := make([]int64, len(dirty)), make([]int64, len(dirty)), make([]int64, len(dirty))
		for i, id := range dirty {
			c := tx.cur[id]
			last[i], queued[i], acked[i] = c.lastSeq, c.queued, c.acked
		}
		b.Queue(`UPDATE cursors c SET last_seq = v.l, queued = v.q, acked_seq = greatest(c.acked_seq, v.a)
			FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) AS v(u, l, q, a) WHERE c.user_id = v.u`,
			dirty, last, queued, acked)
	}
	if tx.release {
		b.Queue(pgReleaseMessages)
	}
	if tx.refreshQueued {
		b.Queue(`SELECT coalesce(sum(queued), 0) FROM cursors`).QueryRow(func(row pgx.Row) error {
			return row.Scan(&tx.queuedTotal)
		})
	}
	tx.beginIn(b)
	b.Queue("COMMIT")
	tx.commitSent = true
	if err := tx.conn.SendBatch(tx.ctx, b).Close(); err != nil {
		return err
	}
	tx.finished = true
	return nil
}

// pgReleaseMessages deletes the messages no queue row holds any more, their
// files and the files' bytes (chunks cascade); it yields how many files went.
const pgReleaseMessages = `WITH m AS (DELETE FROM messages WHERE refs <= 0 RETURNING file_id),
	f AS (DELETE FROM files USING m WHERE files.id = m.file_id RETURNING files.storage_name),
	b AS (DELETE FROM blobs USING f WHERE blobs.storage_name = f.storage_name RETURNING 1)
	SELECT count(*) FROM b`
