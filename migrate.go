package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// webim migrate copies a SQLite deployment (the database file and its
// <db>.files/ uploads) into an empty PostgreSQL database, so that a
// one-node install can become several nodes without its users noticing:
// ids, seqs, cursors, sessions and idempotency keys are kept as they are.
//
// The source is read in one SQLite read transaction (one snapshot); the
// target is written in one PostgreSQL transaction that first locks every
// table and checks that all of them are empty. Row counts are compared
// table by table inside that transaction, before COMMIT: a mismatch rolls
// everything back, so a failed migrate leaves the target as empty as it was
// and can simply be run again.
//
// Writes to the source after its snapshot would not be copied, so the
// server must be stopped first (or the copy made from a `webim backup`).
// migrate notices a write during the copy (SQLite's data_version) and
// refuses to commit.

// migrateSchemaVersion and migratePGVersion are the schemas the copy steps
// below were written for: SQLite's user_version and the Postgres
// schema_version (Postgres has versions of its own past 4, for the tables
// only a cluster needs). A schema change on either engine must revisit the
// steps; TestMigrate_KnowsTheSchema fails until it does.
const (
	migrateSchemaVersion = 5
	migratePGVersion     = 6
)

// migrateLockTimeout bounds the wait for the target's tables: a webim node
// already running on the target would hold them, and migrate should say so
// rather than hang.
const migrateLockTimeout = "10s"

func init() {
	commands["migrate"] = &command{
		summary: "copy a SQLite deployment into an empty PostgreSQL database",
		run:     runMigrate,
	}
}

func runMigrate(ctx context.Context, args []string, env cmdEnv) error {
	fs := flag.NewFlagSet("webim migrate", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fromDefault := defaultDB
	if v := env.getenv("WEBIM_DB"); v != "" && !isPostgresURL(v) {
		fromDefault = v
	}
	from := fs.String("from", fromDefault, "SQLite database file to copy; its uploads are read from FILE.files/")
	to := fs.String("to", "", "postgres:// URL of the EMPTY database to copy into (keep a password in PGPASSWORD or ~/.pgpass)")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "Usage: webim migrate -from webim.db -to postgres://USER@HOST:PORT/DATABASE")
		fmt.Fprintln(env.stderr, "Copies every account, session, relation, queue and upload of a SQLite deployment")
		fmt.Fprintln(env.stderr, "into an empty PostgreSQL database, in one transaction, and verifies the counts.")
		fmt.Fprintln(env.stderr, "Stop the server first (or copy from a `webim backup`): later writes are not copied.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return usageError{err}
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return usageError{fmt.Errorf("migrate: unexpected argument %q", fs.Arg(0))}
	}
	if isPostgresURL(*from) {
		return usageError{fmt.Errorf("migrate: -from must be a SQLite file; %s is PostgreSQL (copy between PostgreSQL databases with pg_dump)", redactDBURL(*from))}
	}
	if !isPostgresURL(*to) {
		return usageError{errors.New("migrate: -to must be a postgres:// URL")}
	}
	if err := checkDB(*to); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "copying %s into %s\n", *from, redactDBURL(*to))
	res, err := Migrate(ctx, *from, *to)
	if len(res.Tables) > 0 {
		res.print(env.stdout)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "migrated in %s; start the nodes with -db %s\n", res.Took.Round(time.Millisecond), redactDBURL(*to))
	return nil
}

// MigrateResult is what a migrate copied, table by table.
type MigrateResult struct {
	Tables []MigrateCount
	Bytes  int64 // of uploads
	Took   time.Duration
}

// MigrateCount is one table's rows in the source and in the target.
type MigrateCount struct {
	Table          string
	Source, Target int64
}

func (r MigrateResult) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "table\tsource\ttarget\t")
	for _, c := range r.Tables {
		verdict := "ok"
		if c.Source != c.Target {
			verdict = "MISMATCH"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", c.Table, c.Source, c.Target, verdict)
	}
	tw.Flush()
}

// copyStep copies one table: the source query yields the target's columns
// in order, convert turns a scanned row into the values pgx writes. Each
// table is one step, so a table added to both schemas (read markers,
// groups) is one more entry in migrateSteps.
type copyStep struct {
	table   string
	columns []string
	// query reads the rows to copy from the source; count is counted over
	// the same query, so the check compares like with like.
	query string
	// scan reads one row of query into the target's values.
	scan func(rows *sql.Rows) ([]any, error)
}

func boolOf(i int64) bool { return i != 0 }

// migrateSteps are in foreign-key order: parents before children. blobs and
// blob_chunks, which have no SQLite table, are copied by copyUploads between
// blocks and files.
var migrateSteps = []copyStep{
	{
		table:   "users",
		columns: []string{"id", "username", "display_name", "display_fold", "password_hash", "created_at", "disabled"},
		query:   `SELECT id, username, display_name, display_fold, password_hash, created_at, disabled FROM users`,
		scan: func(r *sql.Rows) ([]any, error) {
			var id, created, disabled int64
			var name, display, fold, hash string
			err := r.Scan(&id, &name, &display, &fold, &hash, &created, &disabled)
			return []any{id, name, display, fold, hash, created, boolOf(disabled)}, err
		},
	},
	{
		table:   "sessions",
		columns: []string{"token_hash", "user_id", "created_at", "last_seen", "replaced"},
		query:   `SELECT token_hash, user_id, created_at, last_seen, replaced FROM sessions`,
		scan: func(r *sql.Rows) ([]any, error) {
			var hash []byte
			var user, created, seen, replaced int64
			err := r.Scan(&hash, &user, &created, &seen, &replaced)
			return []any{hash, user, created, seen, boolOf(replaced)}, err
		},
	},
	{
		table:   "friendships",
		columns: []string{"user_id", "friend_id", "since"},
		query:   `SELECT user_id, friend_id, since FROM friendships`,
		scan:    scanInt64s(3),
	},
	{
		table:   "friend_requests",
		columns: []string{"from_id", "to_id", "created_at"},
		query:   `SELECT from_id, to_id, created_at FROM friend_requests`,
		scan:    scanInt64s(3),
	},
	{
		table:   "blocks",
		columns: []string{"blocker_id", "blocked_id", "created_at"},
		query:   `SELECT blocker_id, blocked_id, created_at FROM blocks`,
		scan:    scanInt64s(3),
	},
	{
		table:   "groups",
		columns: []string{"id", "name", "owner_id", "created_at"},
		query:   `SELECT id, name, owner_id, created_at FROM groups`,
		scan: func(r *sql.Rows) ([]any, error) {
			var id, owner, created int64
			var name string
			err := r.Scan(&id, &name, &owner, &created)
			return []any{id, name, owner, created}, err
		},
	},
	{
		// The ids are the join order (the earliest member inherits a
		// group), so they are copied as they are.
		table:   "group_members",
		columns: []string{"id", "group_id", "user_id", "read_upto"},
		query:   `SELECT id, group_id, user_id, read_upto FROM group_members`,
		scan:    scanInt64s(4),
	},
	{
		table:   "read_markers",
		columns: []string{"user_id", "peer_id", "upto"},
		query:   `SELECT user_id, peer_id, upto FROM read_markers`,
		scan:    scanInt64s(3),
	},
	{
		table:   "files",
		columns: []string{"id", "storage_name", "name", "size", "content_type", "created_at"},
		query:   `SELECT id, storage_name, name, size, content_type, created_at FROM files`,
		scan: func(r *sql.Rows) ([]any, error) {
			var id, size, created int64
			var storage, name, ctype string
			err := r.Scan(&id, &storage, &name, &size, &ctype, &created)
			return []any{id, storage, name, size, ctype, created}, err
		},
	},
	{
		table:   "messages",
		columns: []string{"id", "sender_id", "recipient_id", "from_name", "to_name", "body", "sent_at", "client_msg_id", "file_id", "refs", "group_id"},
		query:   `SELECT id, sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs, group_id FROM messages`,
		scan: func(r *sql.Rows) ([]any, error) {
			var id, sender, recipient, sent, refs int64
			var from, to string
			var body []byte
			var cid sql.NullString
			var file, group sql.NullInt64
			err := r.Scan(&id, &sender, &recipient, &from, &to, &body, &sent, &cid, &file, &refs, &group)
			// bytea on Postgres (a body may hold NUL); an empty body is
			// still a body, not NULL.
			if body == nil {
				body = []byte{}
			}
			var cidBytes []byte
			if cid.Valid {
				cidBytes = []byte(cid.String)
			}
			var fileID any
			if file.Valid {
				fileID = file.Int64
			}
			var groupID any
			if group.Valid {
				groupID = group.Int64
			}
			return []any{id, sender, recipient, from, to, body, sent, cidBytes, fileID, refs, groupID}, err
		},
	},
	{
		// An acked row never survives its transaction on SQLite (clean
		// deletes what it acknowledges), and Postgres has no such column:
		// only live rows are the queue.
		table:   "queue",
		columns: []string{"user_id", "seq", "kind", "message_id", "payload", "at", "conv", "own"},
		query:   `SELECT user_id, seq, kind, message_id, payload, at, conv, own FROM queue WHERE acked = 0`,
		scan: func(r *sql.Rows) ([]any, error) {
			var user, seq, kind, at, conv, own int64
			var msg sql.NullInt64
			var payload sql.NullString
			err := r.Scan(&user, &seq, &kind, &msg, &payload, &at, &conv, &own)
			var m, p any
			if msg.Valid {
				m = msg.Int64
			}
			if payload.Valid {
				p = payload.String
			}
			return []any{user, seq, int16(kind), m, p, at, conv, int16(own)}, err
		},
	},
	{
		// SQLite's last seq is the larger of the cursor's and the queue's
		// highest (sends only add queue rows); Postgres keeps it in the
		// cursor, with the count of uncleaned messages the cap checks. A
		// source that stopped without saving its typing events' seqs
		// (engine_state, sqlite_ephemeral.go) skips ahead here as its own
		// next start would.
		table:   "cursors",
		columns: []string{"user_id", "last_seq", "queued", "acked_seq"},
		query: `SELECT c.user_id,
			max(c.last_seq, coalesce((SELECT max(q.seq) FROM queue q WHERE q.user_id = c.user_id), 0)) +
				coalesce((SELECT 65536 FROM engine_state WHERE key = 'unsaved_seqs' AND value <> 0), 0),
			(SELECT count(*) FROM queue q WHERE q.user_id = c.user_id AND q.kind = 1 AND q.acked = 0),
			c.acked_seq
			FROM cursors c`,
		scan: scanInt64s(4),
	},
	{
		// One key pair for the whole deployment: moved, so that browsers'
		// subscriptions made with it stay valid.
		table:   "push_vapid",
		columns: []string{"id", "public_key", "private_key", "created_at"},
		query:   `SELECT id, public_key, private_key, created_at FROM push_vapid`,
		scan: func(r *sql.Rows) ([]any, error) {
			var id int32
			var created int64
			var pub, priv string
			err := r.Scan(&id, &pub, &priv, &created)
			return []any{id, pub, priv, created}, err
		},
	},
	{
		table:   "push_subscriptions",
		columns: []string{"id", "user_id", "endpoint", "p256dh", "auth", "host", "created_at"},
		query:   `SELECT id, user_id, endpoint, p256dh, auth, host, created_at FROM push_subscriptions`,
		scan: func(r *sql.Rows) ([]any, error) {
			var id, user, created int64
			var endpoint, p256dh, auth, host string
			err := r.Scan(&id, &user, &endpoint, &p256dh, &auth, &host, &created)
			return []any{id, user, endpoint, p256dh, auth, host, created}, err
		},
	},
	// admin_events is not copied: its rows tell running servers what an
	// admin command did, and the stopped server has acted on them already
	// (their effects, such as ended sessions, are in the tables above).
	// Nodes started on the target read only rows newer than at their start.
}

func scanInt64s(n int) func(*sql.Rows) ([]any, error) {
	return func(r *sql.Rows) ([]any, error) {
		vals := make([]int64, n)
		ptrs := make([]any, n)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		err := r.Scan(ptrs...)
		out := make([]any, n)
		for i, v := range vals {
			out[i] = v
		}
		return out, err
	}
}

// migrateTargetTables are every table of webim's Postgres schema that must
// be empty before a copy (schema_version excepted).
var migrateTargetTables = []string{"users", "sessions", "friendships", "friend_requests", "blocks",
	"groups", "group_members", "read_markers",
	"blobs", "blob_chunks", "files", "messages", "queue", "cursors", "admin_events",
	"push_vapid", "push_subscriptions", "presence_nodes", "presence_claims", "presence", "login_failures"}

// Migrate copies the SQLite database at from (and its uploads) into the
// empty PostgreSQL database url names. On error nothing is committed.
func Migrate(ctx context.Context, from, url string) (res MigrateResult, err error) {
	start := time.Now()
	defer func() {
		res.Took = time.Since(start)
		if err != nil {
			err = errors.New(redactSecret(err.Error(), url))
		}
	}()
	if _, err := os.Stat(from); err != nil {
		return res, fmt.Errorf("migrate: no database at %s: %w", from, err)
	}
	src, err := sql.Open("sqlite", dsn(from, true))
	if err != nil {
		return res, fmt.Errorf("migrate: %s: %w", from, err)
	}
	defer src.Close()
	var version int
	if err := src.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return res, fmt.Errorf("migrate: reading %s: %w", from, err)
	}
	switch {
	case version > migrateSchemaVersion:
		return res, fmt.Errorf("migrate: %s has schema version %d; this binary copies version %d: use a newer webim", from, version, migrateSchemaVersion)
	case version < migrateSchemaVersion:
		return res, fmt.Errorf("migrate: %s has schema version %d; bring it to version %d first by opening it with this binary once (webim stats -db %s)", from, version, migrateSchemaVersion, from)
	}

	// Opening the store creates the schema on an empty database (or checks
	// the version of an existing one), under the engine's migration lock.
	pg, err := openPostgres(url, defaultMaxQueue, slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	pg.Close()
	if pgSchemaVersion() != migratePGVersion {
		return res, fmt.Errorf("migrate: the PostgreSQL schema is version %d; this binary copies into version %d", pgSchemaVersion(), migratePGVersion)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	cfg.RuntimeParams["application_name"] = "webim migrate"
	cfg.RuntimeParams["lock_timeout"] = migrateLockTimeout
	dst, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("migrate: %s", pgErrorText(err))
	}
	defer dst.Close(context.Background())

	// data_version, read on a connection of its own, changes when anyone
	// else commits to the source: read before the snapshot and again just
	// before COMMIT, it tells whether a server wrote meanwhile.
	watch, err := src.Conn(ctx)
	if err != nil {
		return res, err
	}
	defer watch.Close()
	var before int64
	if err := watch.QueryRowContext(ctx, "PRAGMA data_version").Scan(&before); err != nil {
		return res, err
	}
	snap, err := src.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer snap.Rollback()

	tx, err := dst.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(context.Background())
	// Locked first and checked after: two migrates into one database
	// queue up here, and the second finds the first one's rows.
	if _, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(migrateTargetTables, ", ")+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		if pgCode(err) == "55P03" {
			return res, fmt.Errorf("migrate: the target's tables are in use (a webim node running on %s?): stop it, then migrate: %w", redactDBURL(url), err)
		}
		return res, fmt.Errorf("migrate: locking the target: %w", err)
	}
	for _, table := range migrateTargetTables {
		var has bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+table+")").Scan(&has); err != nil {
			return res, fmt.Errorf("migrate: %w", err)
		}
		if has {
			return res, fmt.Errorf("migrate: the target database is not empty (table %s has rows): migrate only copies into an empty database", table)
		}
	}

	for _, step := range migrateSteps {
		if step.table == "files" {
			// The bytes first: files.storage_name references blobs.
			counts, bytes, err := copyUploads(ctx, snap, tx, from+".files")
			if err != nil {
				return res, fmt.Errorf("migrate: uploads: %w", err)
			}
			res.Tables = append(res.Tables, counts...)
			res.Bytes = bytes
		}
		c, err := copyTable(ctx, snap, tx, step)
		if err != nil {
			return res, fmt.Errorf("migrate: table %s: %w", step.table, err)
		}
		res.Tables = append(res.Tables, c)
	}
	for _, c := range res.Tables {
		if c.Source != c.Target {
			return res, fmt.Errorf("migrate: table %s: %d rows in the source, %d in the target; nothing was committed", c.Table, c.Source, c.Target)
		}
	}
	if err := advanceIdentities(ctx, snap, tx); err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}

	var after int64
	if err := watch.QueryRowContext(ctx, "PRAGMA data_version").Scan(&after); err != nil {
		return res, err
	}
	if after != before {
		return res, fmt.Errorf("migrate: %s was written while it was copied (is the server running?): stop it, or copy from a `webim backup`; nothing was committed", from)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("migrate: commit: %w", err)
	}
	return res, nil
}

// rowSource feeds the rows of a source query to CopyFrom one at a time, so
// a table of any size costs one row of memory.
type rowSource struct {
	rows *sql.Rows
	scan func(*sql.Rows) ([]any, error)
	vals []any
	err  error
	n    int64
}

func (s *rowSource) Next() bool {
	if s.err != nil || !s.rows.Next() {
		return false
	}
	s.vals, s.err = s.scan(s.rows)
	if s.err != nil {
		return false
	}
	s.n++
	return true
}

func (s *rowSource) Values() ([]any, error) { return s.vals, nil }

func (s *rowSource) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.rows.Err()
}

func copyTable(ctx context.Context, snap *sql.Tx, tx pgx.Tx, step copyStep) (MigrateCount, error) {
	c := MigrateCount{Table: step.table}
	if err := snap.QueryRowContext(ctx, "SELECT count(*) FROM ("+step.query+")").Scan(&c.Source); err != nil {
		return c, err
	}
	rows, err := snap.QueryContext(ctx, step.query)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	srcRows := &rowSource{rows: rows, scan: step.scan}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{step.table}, step.columns, srcRows); err != nil {
		return c, err
	}
	if err := srcRows.Err(); err != nil {
		return c, err
	}
	err = tx.QueryRow(ctx, "SELECT count(*) FROM "+step.table).Scan(&c.Target)
	return c, err
}

// copyUploads writes a blob (with its bytes in chunks of pgChunkSize) for
// every files row of the source, reading dir/<storage_name> a chunk at a
// time. It checks each file has the size its row says, and that the bytes
// the target holds add up to the source's.
func copyUploads(ctx context.Context, snap *sql.Tx, tx pgx.Tx, dir string) (counts []MigrateCount, total int64, err error) {
	const list = `SELECT storage_name, size, created_at FROM files ORDER BY id`
	blobs := MigrateCount{Table: "blobs"}
	if err := snap.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(size), 0) FROM files`).Scan(&blobs.Source, &total); err != nil {
		return nil, 0, err
	}
	rows, err := snap.QueryContext(ctx, list)
	if err != nil {
		return nil, 0, err
	}
	blobRows := &rowSource{rows: rows, scan: func(r *sql.Rows) ([]any, error) {
		var name string
		var size, created int64
		if err := r.Scan(&name, &size, &created); err != nil {
			return nil, err
		}
		return []any{name, size, int32(pgChunkSize), created}, nil
	}}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"blobs"}, []string{"storage_name", "size", "chunk_size", "created_at"}, blobRows)
	rows.Close()
	if err == nil {
		err = blobRows.Err()
	}
	if err != nil {
		return nil, 0, err
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM blobs`).Scan(&blobs.Target); err != nil {
		return nil, 0, err
	}

	rows, err = snap.QueryContext(ctx, list)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	chunks := &chunkSource{rows: rows, dir: dir, buf: make([]byte, pgChunkSize)}
	defer chunks.closeFile()
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"blob_chunks"}, []string{"storage_name", "n", "data"}, chunks); err != nil {
		return nil, 0, err
	}
	if err := chunks.Err(); err != nil {
		return nil, 0, err
	}
	bytesCount := MigrateCount{Table: "upload bytes", Source: total}
	if err := tx.QueryRow(ctx, `SELECT coalesce(sum(octet_length(data)), 0) FROM blob_chunks`).Scan(&bytesCount.Target); err != nil {
		return nil, 0, err
	}
	chunkCount := MigrateCount{Table: "blob_chunks", Source: chunks.n}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM blob_chunks`).Scan(&chunkCount.Target); err != nil {
		return nil, 0, err
	}
	return []MigrateCount{blobs, chunkCount, bytesCount}, total, nil
}

// chunkSource yields (storage_name, n, data) for every file the rows name,
// one chunk in memory at a time: pgx encodes each row before asking for the
// next, so buf is reused.
type chunkSource struct {
	rows *sql.Rows
	dir  string
	buf  []byte

	f        *os.File
	name     string
	want     int64 // the size the files row says
	got      int64
	chunk    int32
	vals     []any
	err      error
	n        int64 // chunks yielded
	finished bool
}

func (s *chunkSource) closeFile() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

func (s *chunkSource) Next() bool {
	for s.err == nil && !s.finished {
		if s.f == nil {
			if !s.rows.Next() {
				s.finished = true
				return false
			}
			var created int64
			if s.err = s.rows.Scan(&s.name, &s.want, &created); s.err != nil {
				return false
			}
			// Storage names are random hex made by SaveUpload; anything
			// else must not steer the read out of the folder.
			if s.name == "" || s.name != filepath.Base(s.name) || s.name == "." || s.name == ".." {
				s.err = fmt.Errorf("unexpected storage name %q", s.name)
				return false
			}
			s.f, s.err = os.Open(filepath.Join(s.dir, s.name))
			if s.err != nil {
				s.err = fmt.Errorf("the bytes of an upload are missing: %w", s.err)
				return false
			}
			s.got, s.chunk = 0, 0
		}
		k, err := io.ReadFull(s.f, s.buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			s.err = fmt.Errorf("reading %s: %w", s.f.Name(), err)
			return false
		}
		s.got += int64(k)
		if s.got > s.want || (k < len(s.buf) && s.got != s.want) {
			s.err = fmt.Errorf("%s holds %d bytes or more; its files row says %d", s.f.Name(), s.got, s.want)
			return false
		}
		if k < len(s.buf) {
			s.closeFile() // the last chunk, possibly empty (not stored)
		}
		if k > 0 {
			s.vals = []any{s.name, s.chunk, s.buf[:k]}
			s.chunk++
			s.n++
			return true
		}
	}
	return false
}

func (s *chunkSource) Values() ([]any, error) { return s.vals, nil }

func (s *chunkSource) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.rows.Err()
}

// advanceIdentities moves each identity sequence past every id the source
// ever gave, so a new row never takes a copied (or a deleted) one's id:
// SQLite's AUTOINCREMENT tables keep their highest in sqlite_sequence even
// after that row is gone, and clients know messages by id.
func advanceIdentities(ctx context.Context, snap *sql.Tx, tx pgx.Tx) error {
	for _, table := range []string{"users", "files", "messages", "groups", "group_members", "push_subscriptions"} {
		var last int64
		err := snap.QueryRowContext(ctx, `SELECT max(
			coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0),
			coalesce((SELECT max(id) FROM `+table+`), 0))`, table).Scan(&last)
		if err != nil {
			return fmt.Errorf("highest id of %s: %w", table, err)
		}
		// setval(…, 1, false) for a table that never had a row: the next
		// id is then 1, as on a fresh database.
		if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), greatest($2::bigint, 1), $2::bigint > 0)`, table, last); err != nil {
			return fmt.Errorf("advancing the ids of %s: %w", table, err)
		}
	}
	return nil
}
