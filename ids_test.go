package main

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"testing"
)

// TestMessages_IDsNeverReused: once both users cleaned the newest message,
// the next message (and file) must still get a new id, or a client that
// knows messages by id takes the new one for the old.
func TestMessages_IDsNeverReused(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.quickUser("alice"), ts.quickUser("bob")
	befriend(alice, bob)
	cleanAll := func() {
		for _, c := range []*client{alice, bob} {
			c.mustDo("POST", "/api/clean", map[string]any{"upto": 1 << 40}, http.StatusOK)
		}
	}
	first := alice.send(bob, "first")
	resp, data := alice.uploadBytes(bob, "a.txt", []byte("hello"))
	var up struct{ Message Message }
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	decodeInto(t, data, &up)
	cleanAll()
	ts.restart() // ids must not come back after a restart either
	second := alice.send(bob, "second")
	if second.ID <= up.Message.ID || second.ID <= first.ID {
		t.Fatalf("after cleaning messages %d and %d the next message got id %d", first.ID, up.Message.ID, second.ID)
	}
	resp, data = alice.uploadBytes(bob, "b.txt", []byte("again"))
	var up2 struct{ Message Message }
	decodeInto(t, data, &up2)
	if resp.StatusCode != http.StatusCreated || up2.Message.File.ID <= up.Message.File.ID {
		t.Fatalf("after cleaning file %d the next file got id %d (%d)", up.Message.File.ID, up2.Message.File.ID, resp.StatusCode)
	}
}

// TestMigrate_ToVersion3KeepsMessagesAndFiles writes a version-2 database
// by hand (schema.sql plus step 2), with a file message in it, and opens it
// with this binary: everything is where it was, and ids go on from there.
func TestMigrate_ToVersion3KeepsMessagesAndFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webim.db")
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{schemaV1, migrations[0], `PRAGMA user_version = 2`,
		`INSERT INTO users (id, username, display_name, display_fold, password_hash, created_at) VALUES
			(1, 'alice', 'alice', 'alice', 'x', 0), (2, 'bob', 'bob', 'bob', 'x', 0)`,
		`INSERT INTO cursors (user_id, last_seq) VALUES (1, 2), (2, 2)`,
		`INSERT INTO files (id, storage_name, name, size, content_type, created_at) VALUES (7, 'abc', 'a.txt', 5, 'text/plain; charset=utf-8', 0)`,
		`INSERT INTO messages (id, sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs) VALUES
			(41, 1, 2, 'alice', 'bob', 'hi', 0, 'c1', NULL, 2), (42, 1, 2, 'alice', 'bob', 'a.txt', 0, NULL, 7, 2)`,
		`INSERT INTO queue (user_id, seq, kind, message_id, at) VALUES (1, 1, 1, 41, 0), (2, 1, 1, 41, 0), (1, 2, 1, 42, 0), (2, 2, 1, 42, 0)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := openSQLite(path, defaultMaxQueue, quietLogger(), false)
	if err != nil {
		t.Fatalf("opening the version-2 database: %v", err)
	}
	defer s.Close()
	var version int
	s.read.QueryRow(`PRAGMA user_version`).Scan(&version)
	if version != schemaVersion() || version < 3 {
		t.Fatalf("user_version %d, want %d", version, schemaVersion())
	}
	checkDBInvariants(t, s.read)
	var body, fname string
	if err := s.read.QueryRow(`SELECT m.body, f.name FROM messages m JOIN files f ON f.id = m.file_id WHERE m.id = 42`).Scan(&body, &fname); err != nil || body != "a.txt" || fname != "a.txt" {
		t.Fatalf("file message after migration: %q %q %v", body, fname, err)
	}
	var cid string
	if err := s.read.QueryRow(`SELECT client_msg_id FROM messages WHERE id = 41`).Scan(&cid); err != nil || cid != "c1" {
		t.Fatalf("message 41 after migration: %q %v", cid, err)
	}
	// The unique client_msg_id index came back.
	var n int
	s.read.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'messages_client_msg_id'`).Scan(&n)
	if n != 1 {
		t.Fatal("messages_client_msg_id index missing after migration")
	}
}
