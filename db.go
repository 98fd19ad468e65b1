package main

import (
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgxpool"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
)

// isPostgresURL reports whether -db names a PostgreSQL database (a libpq
// connection URL) rather than a SQLite file.
func isPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// checkDB validates -db before anything is opened: a PostgreSQL URL must
// parse as libpq's does (pgx's parser, so PGPASSWORD, .pgpass and sslmode
// work as users expect). Its errors never show the password and are usage
// errors (exit 2).
func checkDB(db string) error {
	if db == "" {
		return usageError{errors.New("-db is empty: give a SQLite file or a postgres:// URL")}
	}
	if !isPostgresURL(db) {
		return nil
	}
	if _, err := pgxpool.ParseConfig(db); err != nil {
		return usageError{fmt.Errorf("-db %s is not a valid PostgreSQL URL (want postgres://USER@HOST:PORT/DATABASE?sslmode=...): %s",
			redactDBURL(db), redactSecret(err.Error(), db))}
	}
	return nil
}

// redactSecret removes db's password from msg, wherever a library put it,
// and any other secrets given (a password from PGPASSWORD or .pgpass).
func redactSecret(msg, db string, others ...string) string {
	u, err := url.Parse(db)
	if err != nil {
		return "(details withheld: they could hold the password)"
	}
	p, _ := u.User.Password()
	for _, secret := range append([]string{p, u.Query().Get("password")}, others...) {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(secret), "xxxxx")
			msg = strings.ReplaceAll(msg, url.PathEscape(secret), "xxxxx")
		}
	}
	return msg
}

// usageError is a mistake in how webim was called: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// OpenStore opens the store -db names for the server: PostgreSQL for a
// postgres:// URL, otherwise the SQLite file at that path (created if need be).
func OpenStore(db string, maxQueue int, log *slog.Logger) (Store, error) {
	return openStore(db, maxQueue, log, false)
}

// openShared opens the store for an admin command, beside a server that may
// be running on the same database. Only a command that may start a fresh
// install creates a SQLite file: for any other, a mistyped path is an
// error, not a new empty database.
func openShared(db string, create bool, notices io.Writer, log *slog.Logger) (Store, error) {
	if !isPostgresURL(db) {
		if _, err := os.Stat(db); err != nil {
			if !create || !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no database at %s (give -db or set WEBIM_DB): %w", db, err)
			}
			fmt.Fprintf(notices, "creating a new database at %s\n", db)
		}
	}
	return openStore(db, defaultMaxQueue, log, true)
}

// openStore is the one place that tells the engines apart.
func openStore(db string, maxQueue int, log *slog.Logger, shared bool) (Store, error) {
	if isPostgresURL(db) {
		return openPostgres(db, maxQueue, log, shared)
	}
	return openSQLite(db, maxQueue, log, shared)
}

// redactDBURL is db fit for logs and errors: a PostgreSQL URL's password
// becomes xxxxx (a SQLite path is returned as it is).
func redactDBURL(db string) string {
	if !isPostgresURL(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		// Unparsable: keep only what surely holds no password.
		scheme, _, _ := strings.Cut(db, "://")
		return scheme + "://(unparsable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func dedupe(ids []int64) []int64 {
	seen := make(map[int64]struct{}, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

func unixMilli(t time.Time) int64 { return t.UnixMilli() }

func fromMilli(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// apiTime formats t as API.md's times: RFC 3339, UTC, milliseconds.
func apiTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// checkBackupable refuses "webim backup" where it is not the tool: a
// PostgreSQL database is backed up with PostgreSQL's own pg_dump.
func checkBackupable(db string) error {
	if !isPostgresURL(db) {
		return nil
	}
	return usageError{fmt.Errorf(`webim backup copies a SQLite database; %s is PostgreSQL: back it up with pg_dump, e.g.
  pg_dump --format=custom --file=webim.dump '%s'
and restore into an empty database with
  pg_restore --dbname='%s' webim.dump
(uploaded files are in the database too, so the dump holds everything)`, redactDBURL(db), redactDBURL(db), redactDBURL(db))}
}

// acmeCacheDir is where ACME certificates are kept: beside a SQLite file, or,
// for PostgreSQL (no file to stand beside), webim.acme in the working
// directory of the one node that terminates TLS.
func acmeCacheDir(db string) string {
	if isPostgresURL(db) {
		return "webim.acme"
	}
	return db + ".acme"
}
