package main

import (
	"database/sql"
	"github.com/jackc/pgx/v5/stdlib"
	"testing"
)

// checkDBInvariants checks, straight from the database file, what must hold
// in every committed state: the file is sound, each cursor agrees with its
// queue (last_seq is written lazily: only when queue rows are deleted), each message's refs with the queue rows holding it, every file has
// its message, and relations are symmetric and respect blocks.
//
// The queries are the same on both engines (Postgres enforces its foreign
// keys itself and has no integrity_check: those two are SQLite's alone).
func checkDBInvariants(t testing.TB, db *sql.DB) {
	t.Helper()
	checks := []struct{ what, query string }{}
	if !isPostgresDB(db) {
		mustIntegrityOK(t, db)
		checks = append(checks, struct{ what, query string }{"foreign key violations", `SELECT count(*) FROM pragma_foreign_key_check`},
			// Only SQLite's queue rows have an acked column.
			struct{ what, query string }{"acked queue rows left behind", `SELECT count(*) FROM queue WHERE acked <> 0`})
	}
	checks = append(checks, []struct{ what, query string }{
		{"users without a cursor row", `SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM cursors c WHERE c.user_id = u.id)`},
		{"queue rows at or below the cleaned seq", `SELECT count(*) FROM queue q JOIN cursors c ON c.user_id = q.user_id WHERE q.seq <= c.acked_seq`},
		{"cursors cleaned past their last seq", `SELECT count(*) FROM cursors WHERE acked_seq > last_seq`},
		{"message events without their message", `SELECT count(*) FROM queue q WHERE q.kind = 1
			AND (q.message_id IS NULL OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = q.message_id))`},
		{"message events in a third user's queue", `SELECT count(*) FROM queue q JOIN messages m ON m.id = q.message_id
			WHERE q.kind = 1 AND m.group_id IS NULL AND q.user_id NOT IN (m.sender_id, m.recipient_id)`},
		{"queue rows whose conversation is not their message's", `SELECT count(*) FROM queue q JOIN messages m ON m.id = q.message_id
			WHERE q.kind = 1 AND (q.conv <> CASE WHEN m.group_id IS NOT NULL THEN -m.group_id
				WHEN q.user_id = m.sender_id THEN m.recipient_id ELSE m.sender_id END
				OR q.own <> CASE WHEN q.user_id = m.sender_id THEN 1 ELSE 0 END)`},
		{"groups without members", `SELECT count(*) FROM groups g WHERE NOT EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = g.id)`},
		{"groups whose owner is not a member", `SELECT count(*) FROM groups g WHERE NOT EXISTS
			(SELECT 1 FROM group_members gm WHERE gm.group_id = g.id AND gm.user_id = g.owner_id)`},
		{"a message twice in one queue", `SELECT count(*) FROM (SELECT 1 FROM queue WHERE kind = 1 GROUP BY user_id, message_id HAVING count(*) > 1) AS x`},
		{"messages whose refs differ from the queue rows holding them", `SELECT count(*) FROM messages m
			LEFT JOIN (SELECT message_id, count(*) AS n FROM queue WHERE kind = 1 GROUP BY message_id) q ON q.message_id = m.id
			WHERE m.refs <> coalesce(q.n, 0) OR m.refs <= 0`},
		{"files no message holds", `SELECT count(*) FROM files WHERE id NOT IN (SELECT file_id FROM messages WHERE file_id IS NOT NULL)`},
		{"one-sided friendships", `SELECT count(*) FROM friendships a WHERE NOT EXISTS
			(SELECT 1 FROM friendships b WHERE b.user_id = a.friend_id AND b.friend_id = a.user_id)`},
		{"friendships despite a block", `SELECT count(*) FROM friendships f JOIN blocks b
			ON (b.blocker_id = f.user_id AND b.blocked_id = f.friend_id) OR (b.blocker_id = f.friend_id AND b.blocked_id = f.user_id)`},
		{"requests despite a block", `SELECT count(*) FROM friend_requests r JOIN blocks b
			ON (b.blocker_id = r.from_id AND b.blocked_id = r.to_id) OR (b.blocker_id = r.to_id AND b.blocked_id = r.from_id)`},
		{"requests between friends", `SELECT count(*) FROM friend_requests r JOIN friendships f ON f.user_id = r.from_id AND f.friend_id = r.to_id`},
		{"self relations", `SELECT (SELECT count(*) FROM friendships WHERE user_id = friend_id) + (SELECT count(*) FROM friend_requests WHERE from_id = to_id) + (SELECT count(*) FROM blocks WHERE blocker_id = blocked_id)`},
		{"more than one live session per user", `SELECT count(*) FROM (SELECT 1 FROM sessions WHERE NOT replaced GROUP BY user_id HAVING count(*) > 1) AS x`},
	}...)
	for _, c := range checks {
		var n int
		if err := db.QueryRow(c.query).Scan(&n); err != nil {
			t.Fatalf("checking %s: %v", c.what, err)
		}
		if n != 0 {
			t.Errorf("database invariant broken: %d %s", n, c.what)
		}
	}
}

// openCheckDB opens the database -db names directly, as an operator would,
// to check what a server left behind.
func openCheckDB(t testing.TB, db string) *sql.DB {
	t.Helper()
	if !isPostgresURL(db) {
		return openSQLiteForCheck(t, db)
	}
	conn, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func isPostgresDB(db *sql.DB) bool {
	_, ok := db.Driver().(*stdlib.Driver)
	return ok
}
