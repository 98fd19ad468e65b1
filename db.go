package main

import (
	"errors"
	"log/slog"
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

func openStore(db string, maxQueue int, log *slog.Logger, shared bool) (Store, error) {
	if isPostgresURL(db) {
		return nil, errors.New("the PostgreSQL engine is not in this build yet")
	}
	return openSQLite(db, maxQueue, log, shared)
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
