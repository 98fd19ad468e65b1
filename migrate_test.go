package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// writeV1Fixture makes a database as the first released binary left it:
// schema.sql alone, user_version 1, with an account, a friendship and a
// message in both queues.
func writeV1Fixture(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{
		schemaV1,
		`PRAGMA user_version = 1`,
		`INSERT INTO users (id, username, display_name, display_fold, password_hash, created_at) VALUES
			(1, 'alice', 'Alice', 'alice', 'x', 1), (2, 'bob', 'Bob', 'bob', 'x', 1)`,
		`INSERT INTO cursors (user_id, last_seq) VALUES (1, 0), (2, 0)`,
		`INSERT INTO friendships (user_id, friend_id, since) VALUES (1, 2, 1), (2, 1, 1)`,
		`INSERT INTO messages (id, sender_id, recipient_id, from_name, to_name, body, sent_at, refs)
			VALUES (7, 1, 2, 'alice', 'bob', 'kept across the upgrade', 1000, 2)`,
		`INSERT INTO queue (user_id, seq, kind, message_id, at) VALUES (2, 1, 1, 7, 1000), (1, 1, 1, 7, 1000)`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("fixture: %v\n%s", err, s)
		}
	}
}

func TestStore_MigratesVersion1Database(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	writeV1Fixture(t, path)

	s, err := openSQLite(path, 100, quietLogger(), false)
	if err != nil {
		t.Fatalf("opening a version-1 database: %v", err)
	}
	defer s.Close()
	var version int
	if err := s.read.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil || version != schemaVersion() {
		t.Fatalf("user_version = %d (%v), want %d", version, err, schemaVersion())
	}
	if _, err := s.read.Exec(`SELECT id, user_id, queued_delta, at FROM admin_events`); err != nil {
		t.Fatalf("version 2's table is missing: %v", err)
	}
	events, err := s.EventsAfter(context.Background(), 2, 0, maxPollBatch)
	if err != nil || len(events) != 1 || events[0].Message == nil || events[0].Message.Body != "kept across the upgrade" {
		t.Fatalf("bob's queue after the upgrade: %+v, %v", events, err)
	}
	// The upgraded database works: a new message gets the next seq.
	alice := User{ID: 1, Username: "alice", DisplayName: "Alice"}
	if _, _, err := s.SendMessage(context.Background(), alice, "bob", "after", "", nil); err != nil {
		t.Fatal(err)
	}
	events, _ = s.EventsAfter(context.Background(), 2, 1, maxPollBatch)
	if len(events) != 1 || events[0].Seq != 2 {
		t.Fatalf("the first message after the upgrade: %+v", events)
	}
	if s.QueuedMessages() != 4 {
		t.Fatalf("queued messages %d, want 4", s.QueuedMessages())
	}
}

func TestStore_RefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = openSQLite(path, 100, quietLogger(), false)
	if err == nil || !strings.Contains(err.Error(), "newer webim") {
		t.Fatalf("opening a version-99 database: %v, want a refusal", err)
	}
}
