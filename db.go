package main

import (
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

// OpenStore opens the store -db names for the server: PostgreSQL for a
// postgres:// URL, otherwise the SQLite file at that path (created if need be).
func OpenStore(db string, maxQueue int, log *slog.Logger) (Store, error) {
	return openStore(db, maxQueue, log, false)
}

// openShared opens the store for an admin command, beside a server that may
// be running on the same database.
func openShared(db string, log *slog.Logger) (Store, error) {
	return openStore(db, defaultMaxQueue, log, true)
}

// openStore is the one place that tells the engines apart.
func openStore(db string, maxQueue int, log *slog.Logger, shared bool) (Store, error) {
	if isPostgresURL(db) {
		return openPostgres(db, maxQueue, log, shared)
	}
	return openSQLite(db, maxQueue, log, shared)
}

// dbExists reports (as os.Stat would) whether the SQLite file exists; a
// PostgreSQL database is the server's to judge, when it is opened.
func dbExists(db string) error {
	if isPostgresURL(db) {
		return nil
	}
	_, err := os.Stat(db)
	return err
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

// urlPassword is the password a PostgreSQL URL carries, "" for none.
func urlPassword(db string) string {
	u, err := url.Parse(db)
	if err != nil {
		return ""
	}
	if p, ok := u.User.Password(); ok {
		return p
	}
	return u.Query().Get("password")
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
