package main

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed schema.sql
var schemaV1 string

// migrations[i] takes a database from user_version i+1 to i+2. schema.sql is
// version 1 and is never edited once released; changes are appended here.
var migrations = []string{
	// 2: what admin commands did that a running server must act on (admin.go).
	`CREATE TABLE admin_events (
		id           INTEGER PRIMARY KEY,
		user_id      INTEGER NOT NULL, -- no foreign key: the user may be gone
		queued_delta INTEGER NOT NULL, -- change in uncleaned messages over all queues
		at           INTEGER NOT NULL
	);`,
	// 3: message and file ids are never reused. Without AUTOINCREMENT a new
	// row takes max(id)+1, so once both users cleaned the newest message the
	// next one got its id again, and clients that know messages by id (the
	// page does) took the new one for the old. Rebuilt child first, so no
	// foreign key is ever left dangling.
	`CREATE TABLE files_v3 (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		storage_name TEXT    NOT NULL UNIQUE,
		name         TEXT    NOT NULL,
		size         INTEGER NOT NULL,
		content_type TEXT    NOT NULL,
		created_at   INTEGER NOT NULL
	);
	INSERT INTO files_v3 (id, storage_name, name, size, content_type, created_at)
		SELECT id, storage_name, name, size, content_type, created_at FROM files;
	CREATE TABLE messages_v3 (
		id            INTEGER PRIMARY KEY AUTOINCREMENT,
		sender_id     INTEGER NOT NULL,
		recipient_id  INTEGER NOT NULL,
		from_name     TEXT    NOT NULL,
		to_name       TEXT    NOT NULL,
		body          TEXT    NOT NULL,
		sent_at       INTEGER NOT NULL,
		client_msg_id TEXT,
		file_id       INTEGER REFERENCES files_v3(id),
		refs          INTEGER NOT NULL
	);
	INSERT INTO messages_v3 (id, sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs)
		SELECT id, sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs FROM messages;
	DROP TABLE messages;
	DROP TABLE files;
	ALTER TABLE files_v3 RENAME TO files;
	ALTER TABLE messages_v3 RENAME TO messages;
	CREATE UNIQUE INDEX messages_client_msg_id ON messages(sender_id, client_msg_id)
		WHERE client_msg_id IS NOT NULL;`,
	// 4: Web Push (push.go). One VAPID key pair for the whole database, so
	// every node signs with it; subscriptions go with their user. An
	// endpoint belongs to one user at a time: a browser that signs in as
	// someone else hands its endpoint over.
	`CREATE TABLE push_vapid (
		id          INTEGER PRIMARY KEY CHECK (id = 1),
		public_key  TEXT    NOT NULL, -- base64url, uncompressed P-256 point
		private_key TEXT    NOT NULL, -- base64url, the scalar
		created_at  INTEGER NOT NULL
	);
	CREATE TABLE push_subscriptions (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		endpoint   TEXT    NOT NULL UNIQUE,
		p256dh     TEXT    NOT NULL,
		auth       TEXT    NOT NULL,
		host       TEXT    NOT NULL, -- the host the browser knew us by: the default VAPID subject
		created_at INTEGER NOT NULL
	);
	CREATE INDEX push_subscriptions_user ON push_subscriptions(user_id, id);`,
	// 5: groups, read markers and the queue's conversation key (API.md,
	// "Groups, read state and typing"; sqlite_groups.go).
	migrationGroups,
}

// schemaVersion is the user_version this binary writes and understands.
func schemaVersion() int { return 1 + len(migrations) }

// sqliteStore is the one SQLite file: accounts, relations, sessions and every user's
// queue. All writes go through one connection owned by the writer goroutine,
// which commits many pending operations in one transaction (group commit: one
// fsync for all of them); reads use a separate pool that never blocks it.
type sqliteStore struct {
	path     string
	shared   bool // opened by an admin command (openShared)
	filesDir string
	write    *sql.DB // exactly one connection, used only by the writer goroutine
	read     *sql.DB
	log      *slog.Logger
	maxQueue int

	// now is the clock; tests may replace it before use.
	now func() time.Time

	mu      sync.Mutex
	pending []*writeOp
	closed  bool
	wake    chan struct{} // capacity 1: "pending is not empty"
	stopped chan struct{} // closed when the writer goroutine has exited

	// onCommit is told which users' queues a commit added events to.
	onCommit func(users []int64)
	// isOnline says whether a user is online, so notices (which are dropped
	// for offline users anyway) are only written for those who can get them.
	// The writer calls it, so it must never wait on the writer.
	isOnline func(user int64) bool
	// writeFault, when set (tests only), fails every write transaction at
	// commit, as a full or read-only disk would.
	writeFault atomic.Pointer[error]

	// queued counts uncleaned messages over all queues, for /metrics.
	queued atomic.Int64
	// tails answers caught-up polls from memory.
	tails *tails
	// seqFloor is the highest seq the writer gave each queue that had an
	// ephemeral event, and seqGap whether the last server crashed before
	// saving them (sqlite_ephemeral.go). Only the writer touches them
	// once it runs.
	seqFloor map[int64]seqFloor
	seqGap   bool
	// ckpt checkpoints the WAL beside the writer (nil for admin commands,
	// which leave checkpoints to the server).
	ckpt *checkpointer
}

const maxOpsPerTx = 1000

func dsn(path string, readOnly bool) string {
	// busy_timeout must come first so the pragmas after it wait for locks too.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	}
	q.Add("_time_format", "sqlite")
	return "file:" + path + "?" + q.Encode()
}

// openSQLite opens (creating if needed) the database at path, migrates it to
// this binary's schema version and starts the writer. shared is for an admin
// command beside a server that may be running: it leaves orphan files and
// the WAL checkpoint to the server.
func openSQLite(path string, maxQueue int, log *slog.Logger, shared bool) (*sqliteStore, error) {
	if path == "" {
		return nil, errors.New("empty database path")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
	}
	write, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)

	s := &sqliteStore{
		path:     path,
		shared:   shared,
		filesDir: path + ".files",
		write:    write,
		log:      log,
		maxQueue: maxQueue,
		now:      time.Now,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		onCommit: func([]int64) {},
		tails:    newTails(),
		isOnline: func(int64) bool { return false },
		seqFloor: map[int64]seqFloor{},
	}
	if err := s.setup(); err != nil {
		write.Close()
		return nil, err
	}
	// An admin command hands out no ephemeral seqs and must not mark the
	// running server's as saved.
	if !shared {
		if err := s.openSeqState(); err != nil {
			write.Close()
			return nil, err
		}
	}
	read, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		write.Close()
		return nil, err
	}
	read.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	read.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))
	s.read = read
	if err := os.MkdirAll(s.filesDir, 0o750); err != nil {
		s.write.Close()
		s.read.Close()
		return nil, err
	}
	var queued int64
	if err := read.QueryRow(`SELECT count(*) FROM queue WHERE kind = ?`, kindMessage).Scan(&queued); err != nil {
		s.write.Close()
		s.read.Close()
		return nil, err
	}
	s.queued.Store(queued)
	if !shared {
		if s.ckpt, err = newCheckpointer(path, s.log.Warn); err != nil {
			s.write.Close()
			s.read.Close()
			return nil, err
		}
	}
	// Only the server sweeps: an upload's file is written before its row
	// commits, so to another process it could look orphaned.
	if !shared {
		if err := s.removeOrphanFiles(); err != nil {
			log.Warn("could not sweep orphan files", "err", err)
		}
	}
	go s.runWriter()
	return s, nil
}

// setup turns on WAL (and checks it took: it cannot on some filesystems) and
// brings the schema up to date, refusing a database from a newer binary.
func (s *sqliteStore) setup() error {
	ctx := context.Background()
	var mode string
	if err := s.write.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("open %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("open %s: journal_mode is %q, want wal", s.path, mode)
	}
	var version int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > schemaVersion() {
		return fmt.Errorf("database %s has schema version %d; this binary knows up to %d: use a newer webim", s.path, version, schemaVersion())
	}
	steps := append([]string{schemaV1}, migrations...)
	for v := version; v < len(steps); v++ {
		if err := s.migrateStep(ctx, steps[v], v+1); err != nil {
			return fmt.Errorf("migrate %s to version %d: %w", s.path, v+1, err)
		}
		s.log.Info("database migrated", "path", s.path, "version", v+1)
	}
	return nil
}

func (s *sqliteStore) migrateStep(ctx context.Context, script string, to int) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, script); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", to)); err != nil {
		return err
	}
	return tx.Commit()
}

// Close stops the writer after it has committed everything pending,
// checkpoints the WAL into the main file and closes the database.
func (s *sqliteStore) Close() error {
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
	s.signalWriter()
	<-s.stopped
	var ckptErr error
	if s.ckpt != nil {
		ckptErr = s.ckpt.close()
	}
	// The server checkpoints; from an admin command TRUNCATE would wait
	// for the server's readers.
	if !s.shared {
		if _, err := s.write.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			s.log.Warn("wal checkpoint failed", "err", err)
		}
	}
	return errors.Join(ckptErr, s.read.Close(), s.write.Close())
}

// Wire keeps only the hooks a single process needs: with one writer there
// is nobody else to hear from.
func (s *sqliteStore) Wire(h storeHooks) {
	h = h.withDefaults()
	s.onCommit, s.isOnline = h.Woken, h.IsOnline
}

// PollWaiting does nothing: every poll of a SQLite database is in this
// process, where Session.beginPoll keeps one per session.
func (s *sqliteStore) PollWaiting(int64, tokenHash) {}

func (s *sqliteStore) Now() time.Time { return s.now() }

func (s *sqliteStore) SetClock(now func() time.Time) { s.now = now }

// Ping reports whether the database answers a read.
func (s *sqliteStore) Ping(ctx context.Context) error {
	var one int
	return s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// --- the writer -----------------------------------------------------------

// writeOp is one unit of work for the writer: fn runs inside the batch's
// transaction, within a savepoint of its own, so a failing op (a client
// error such as queue_full) undoes only itself.
type writeOp struct {
	fn   func(tx *writeTx) error
	err  error
	done chan struct{} // nil for fire-and-forget ops
	// lean ops run without a savepoint: they promise to return client
	// errors only before their first write, so any other error of theirs
	// fails the whole batch. Sends are lean; a savepoint pair per message
	// costs more than the message's own rows.
	lean bool
}

// writeTx is what an op sees: the transaction plus the effects to apply
// once (and only if) the batch commits.
type writeTx struct {
	s     *sqliteStore
	conn  *sql.Conn
	ctx   context.Context
	now   time.Time
	stmts map[string]*sql.Stmt

	cache *writerCache

	woken    []int64  // users whose queues got events
	after    []func() // effects of committed ops
	fileGone []string // storage names to unlink after commit
	// tailChanges update the in-memory tails once the batch commits.
	tailChanges []func(*tails)
	// queuedDelta is the change in uncleaned messages over all queues.
	queuedDelta int64
	// touched are the users whose cached cursors the current op changed.
	touched []int64
}

// writerCache is what the writer remembers between batches, so a send reads
// nothing: users by name, whether two users may message each other, and each
// queue's last seq and message count. Only the writer goroutine touches it.
// It is emptied whenever it might be wrong: after a failed batch, and when
// another process (an admin command) has written to the database.
type writerCache struct {
	users      map[string]User
	mayMessage map[[2]int64]error // nil: friends, no block
	// groups are groups' members by username; nil for no such group.
	groups      map[int64][]cachedMember
	cursors     map[int64]*cursorState
	dataVersion int64
	// lastMessageID is the highest message id handed out, 0 until read:
	// sends name their ids, so their INSERT needs no RETURNING (which
	// SQLite serves through a temporary table per statement).
	lastMessageID int64
}

func newWriterCache() *writerCache {
	c := &writerCache{}
	c.reset()
	return c
}

func (c *writerCache) reset() {
	c.users = map[string]User{}
	c.mayMessage = map[[2]int64]error{}
	c.groups = map[int64][]cachedMember{}
	c.cursors = map[int64]*cursorState{}
	c.lastMessageID = 0
}

func pairKey(a, b int64) [2]int64 {
	if a > b {
		a, b = b, a
	}
	return [2]int64{a, b}
}

// do runs fn in the next group commit and waits until it is durable.
func (s *sqliteStore) do(ctx context.Context, fn func(tx *writeTx) error) error {
	op := &writeOp{fn: fn, done: make(chan struct{})}
	if !s.submit(op) {
		return errShuttingDown
	}
	// The op runs even if the client goes away: it may already be committed,
	// and its answer (201 or an error) must reflect what was stored.
	<-op.done
	return op.err
}

// doLean is do for an op that returns client errors only before its first
// write (see writeOp.lean).
func (s *sqliteStore) doLean(ctx context.Context, fn func(tx *writeTx) error) error {
	op := &writeOp{fn: fn, done: make(chan struct{}), lean: true}
	if !s.submit(op) {
		return errShuttingDown
	}
	<-op.done
	return op.err
}

// goDo queues fn without waiting; errors are logged.
func (s *sqliteStore) goDo(fn func(tx *writeTx) error) {
	s.submit(&writeOp{fn: fn})
}

func (s *sqliteStore) submit(op *writeOp) bool {
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

func (s *sqliteStore) signalWriter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sqliteStore) runWriter() {
	defer close(s.stopped)
	ctx := context.Background()
	conn, err := s.write.Conn(ctx)
	if err != nil {
		s.log.Error("writer could not get its connection", "err", err)
		s.failAllPending(err)
		return
	}
	defer conn.Close()
	if s.ckpt != nil {
		if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
			s.log.Error("writer could not hand checkpoints to the checkpointer", "err", err)
			s.failAllPending(err)
			return
		}
	}
	stmts := map[string]*sql.Stmt{}
	cache := newWriterCache()
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	var batch []*writeOp
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

		s.runBatch(ctx, conn, stmts, cache, batch)
		clear(batch)
	}
}

func (s *sqliteStore) failAllPending(err error) {
	s.mu.Lock()
	ops := s.pending
	s.pending = nil
	s.closed = true
	s.mu.Unlock()
	for _, op := range ops {
		op.err = err
		if op.done != nil {
			close(op.done)
		}
	}
}

// runBatch commits batch in one transaction and then tells every op its fate.
func (s *sqliteStore) runBatch(ctx context.Context, conn *sql.Conn, stmts map[string]*sql.Stmt, cache *writerCache, batch []*writeOp) {
	if s.ckpt != nil {
		if err := s.ckpt.catchUp(ctx, conn); err != nil {
			s.log.Warn("wal checkpoint failed", "err", err)
		}
	}
	tx := &writeTx{s: s, conn: conn, ctx: ctx, now: s.now(), stmts: stmts, cache: cache}
	commitErr := func() error {
		// Prepared once, like every statement of the writer.
		if _, err := tx.exec("BEGIN IMMEDIATE"); err != nil {
			return err
		}
		// data_version changes when another connection has committed:
		// an admin command may have changed what the cache remembers.
		var version int64
		if err := tx.queryRow("PRAGMA data_version").Scan(&version); err != nil {
			return err
		}
		if version != cache.dataVersion {
			cache.reset()
			s.tails.reset()
			cache.dataVersion = version
		}
		for i, op := range batch {
			if err := tx.runOp(op); err != nil {
				// The transaction may be gone (SQLite rolls back by itself on
				// a full disk, for one); nothing after this op can be trusted.
				for _, rest := range batch[i+1:] {
					rest.err = err
				}
				return err
			}
		}
		if fault := s.writeFault.Load(); fault != nil {
			return *fault
		}
		_, err := tx.exec("COMMIT")
		return err
	}()
	if commitErr != nil {
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil && !strings.Contains(err.Error(), "no transaction") {
			s.log.Error("rollback failed", "err", err)
		}
		cache.reset()
		s.tails.reset()
		s.log.Error("write transaction failed", "ops", len(batch), "err", commitErr)
		for _, op := range batch {
			if op.err == nil || !isClientError(op.err) || errors.Is(op.err, errStorage) {
				op.err = storageError(commitErr)
			}
		}
	} else {
		if s.ckpt != nil {
			s.ckpt.committed(len(batch))
		}
		s.queued.Add(tx.queuedDelta)
		s.tails.apply(tx.tailChanges)
		for _, f := range tx.after {
			f()
		}
		if len(tx.woken) > 0 {
			s.onCommit(dedupe(tx.woken))
		}
		for _, name := range tx.fileGone {
			s.removeStoredFile(name)
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

// isStorageFailure reports whether err is SQLite failing to use its files
// (full or read-only disk, I/O error, out of memory, locked) rather than a
// bug: the server's trouble, but one a client may retry after.
func isStorageFailure(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

func isClientError(err error) bool {
	_, ok := asAPIError(err)
	return ok
}

// storageError maps a failed commit to what a client should see: the disk
// being full or read-only is the server's trouble, answered with 503.
func storageError(err error) error {
	return fmt.Errorf("%w: %w", errStorage, err)
}

// runOp runs one op. A client error undoes the op alone (its savepoint, or
// for a lean op nothing was written) and is the op's answer; any other error
// is returned, failing the batch.
func (tx *writeTx) runOp(op *writeOp) error {
	woken, after, gone, delta, tailed := len(tx.woken), len(tx.after), len(tx.fileGone), tx.queuedDelta, len(tx.tailChanges)
	tx.touched = tx.touched[:0]
	undo := func() {
		tx.woken, tx.after, tx.fileGone, tx.queuedDelta = tx.woken[:woken], tx.after[:after], tx.fileGone[:gone], delta
		tx.tailChanges = tx.tailChanges[:tailed]
		for _, u := range tx.touched {
			delete(tx.cache.cursors, u)
		}
	}
	if op.lean {
		err := op.fn(tx)
		if err != nil {
			undo()
			if !isClientError(err) {
				return err
			}
			op.err = err
		}
		return nil
	}
	if _, err := tx.exec("SAVEPOINT op"); err != nil {
		return err
	}
	err := op.fn(tx)
	if err != nil {
		undo()
		if _, rbErr := tx.exec("ROLLBACK TO op"); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		if !isClientError(err) && isStorageFailure(err) {
			err = storageError(err)
		}
		op.err = err
	}
	_, relErr := tx.exec("RELEASE op")
	return relErr
}

// wakeUser marks user's queue as changed by this op.
func (tx *writeTx) wakeUser(id int64) { tx.woken = append(tx.woken, id) }

// tail queues a change to the in-memory tails, made after the commit.
func (tx *writeTx) tail(f func(*tails)) { tx.tailChanges = append(tx.tailChanges, f) }

// onCommit runs f after the batch commits, if this op's changes stand.
func (tx *writeTx) onCommit(f func()) { tx.after = append(tx.after, f) }

func (tx *writeTx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := tx.stmts[query]; ok {
		return st, nil
	}
	st, err := tx.conn.PrepareContext(tx.ctx, query)
	if err != nil {
		return nil, err
	}
	tx.stmts[query] = st
	return st, nil
}

func (tx *writeTx) exec(query string, args ...any) (sql.Result, error) {
	st, err := tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(tx.ctx, args...)
}

func (tx *writeTx) queryRow(query string, args ...any) *sql.Row {
	st, err := tx.stmt(query)
	if err != nil {
		// A Row carrying the error: QueryRow on a closed stmt reports it at Scan.
		return tx.conn.QueryRowContext(tx.ctx, query, args...)
	}
	return st.QueryRowContext(tx.ctx, args...)
}

func (tx *writeTx) query(query string, args ...any) (*sql.Rows, error) {
	st, err := tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(tx.ctx, args...)
}

// isUniqueViolation reports whether err is a UNIQUE constraint failure, which
// lets the database decide races such as two sign-ups for one name.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// NewPresence is this process's own view: with one node it is the service's.
func (s *sqliteStore) NewPresence(grace time.Duration) presenceTracker {
	return newPresence(s, grace)
}

// LoginFailures counts nothing beyond the in-memory limits, which see every
// login of a SQLite database: only one server uses it.
func (s *sqliteStore) LoginFailures(byName, byAddr windowRule) sharedFailures {
	return noSharedFailures{}
}

type noSharedFailures struct{}

func (noSharedFailures) RetryAfter(context.Context, string, string) (time.Duration, error) {
	return 0, nil
}

func (noSharedFailures) Record(context.Context, string, string) error { return nil }
