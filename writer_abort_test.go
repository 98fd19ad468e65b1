package main

import (
	"errors"
	"testing"
	"time"
)

// TestStore_AbortedTransactionFailsTheRestOfTheBatch: on some I/O errors
// (SQLITE_IOERR or SQLITE_FULL while a large statement spills its cache)
// SQLite rolls the whole transaction back by itself. The ops after it in the
// same group commit must then not run outside any transaction (each
// SAVEPOINT would start and RELEASE commit its own), nor be answered 503
// for changes that were in fact stored.
func TestStore_AbortedTransactionFailsTheRestOfTheBatch(t *testing.T) {
	ts := newTestServer(t)
	s := ts.sqlite()
	ctx := t.Context()

	// Hold the writer, so the next two ops share one batch.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.do(ctx, func(tx *writeTx) error { close(held); <-hold; return nil })
	<-held
	aborted := make(chan error, 1)
	go func() {
		aborted <- s.do(ctx, func(tx *writeTx) error {
			// What SQLite does on such an error: the transaction is gone.
			if _, err := tx.conn.ExecContext(tx.ctx, "ROLLBACK"); err != nil {
				return err
			}
			return errors.New("disk I/O error (simulated)")
		})
	}()
	eventually(t, 5*time.Second, "the failing op to queue", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.pending) == 1
	})
	created := make(chan error, 1)
	name := uniqueName("after")
	go func() {
		_, err := s.CreateUser(ctx, name, name, "$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA")
		created <- err
	}()
	eventually(t, 5*time.Second, "the second op to queue", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.pending) == 2
	})
	close(hold)

	if err := <-aborted; err == nil {
		t.Fatal("the failing op succeeded")
	}
	err := <-created
	stored := countRows(t, ts, `SELECT count(*) FROM users WHERE username = ?`, name) == 1
	switch {
	case err == nil && !stored:
		t.Fatal("CreateUser succeeded but the user is not stored")
	case err != nil && stored:
		t.Fatalf("CreateUser answered %v, but the user was stored (committed outside the batch's transaction)", err)
	case err != nil && !errors.Is(err, errStorage):
		t.Fatalf("CreateUser answered %v, want a storage error", err)
	}
	// The writer is healthy afterwards.
	if _, err := s.CreateUser(ctx, uniqueName("later"), "later", "x"); err != nil {
		t.Fatalf("next write: %v", err)
	}
	checkDBInvariants(t, s.read)
}

// TestStore_StorageErrorInsideAnOpIs503: a storage failure that hits a
// statement (not the commit) is the server's trouble too: 503, not 500.
func TestStore_StorageErrorInsideAnOpIs503(t *testing.T) {
	ts := newTestServer(t)
	s := ts.sqlite()
	err := s.do(t.Context(), func(tx *writeTx) error {
		// SQLITE_READONLY from a real statement, as a remounted disk gives.
		if _, err := tx.exec(`PRAGMA query_only = 1`); err != nil {
			return err
		}
		defer tx.exec(`PRAGMA query_only = 0`)
		_, err := tx.exec(`INSERT INTO users (username, display_name, display_fold, password_hash, created_at) VALUES ('ro', 'ro', 'ro', 'x', 0)`)
		return err
	})
	if e, ok := asAPIError(err); !ok || e.Status != 503 {
		t.Fatalf("op failing with %v is answered %d %s, want 503", err, e.Status, e.Code)
	}
	if _, err := s.CreateUser(t.Context(), uniqueName("after"), "after", "x"); err != nil {
		t.Fatalf("next write: %v", err)
	}
}
