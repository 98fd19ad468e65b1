package main

import (
	"context"
	"os"
	"sync"
	"testing"
)

// The server's writer hands checkpoints to the checkpointer, and the WAL
// still starts over under writes that never pause.
func TestCheckpointerKeepsTheWALBounded(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/w.db"
	s, err := openSQLite(path, defaultMaxQueue, quietLogger(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.ckpt.rewindFrames = 64
	ctx := context.Background()
	alice, err := s.CreateUser(ctx, "alice", "Alice", cheapHash("pw"))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := s.CreateUser(ctx, "bob", "Bob", cheapHash("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.do(ctx, func(tx *writeTx) error { return tx.makeFriends(alice.ID, bob.ID) }); err != nil {
		t.Fatal(err)
	}
	var autocheckpoint int
	err = s.do(ctx, func(tx *writeTx) error { return tx.queryRow("PRAGMA wal_autocheckpoint").Scan(&autocheckpoint) })
	if err != nil || autocheckpoint != 0 {
		t.Fatalf("writer's wal_autocheckpoint = %d (%v), want 0: the checkpointer's job", autocheckpoint, err)
	}
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	// Rounds of concurrent sends (so commits are batched) and cleans: each
	// round writes several times the rewind length.
	var largest int64
	for range 60 {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 25 {
					if _, _, err := s.SendMessage(ctx, alice, "bob", "x", "", nil); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if _, err := s.Clean(ctx, bob.ID, 1<<40); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Clean(ctx, alice.ID, 1<<40); err != nil {
			t.Fatal(err)
		}
		largest = max(largest, walSize())
	}
	t.Logf("largest WAL %d bytes", largest)
	// Without the rewind the WAL would hold every page of every round.
	var pageSize int64
	if err := s.read.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	// Rewinding, it stays near one checkpoint's worth of pages (1.5 MB
	// here); without, it holds every round's pages (about 50 MB).
	if limit := 2 * checkpointEveryPages * (pageSize + 24); largest > limit {
		t.Errorf("WAL grew to %d bytes; with the rewind it should stay under %d", largest, limit)
	}
	var n int
	if err := s.read.QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d messages left after cleaning (%v)", n, err)
	}
}
