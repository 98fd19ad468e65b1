package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// injectWriteFault makes every write transaction of ts fail at commit, as a
// full or read-only disk would, until the returned func is called.
func injectWriteFault(ts *testServer) (clear func()) {
	fault := errors.New("injected: no space left on device")
	ts.sqlite().writeFault.Store(&fault)
	return func() { ts.sqlite().writeFault.Store(nil) }
}

func countRows(t testing.TB, ts *testServer, query string, args ...any) int {
	t.Helper()
	var n int
	if err := ts.sqlite().read.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestStorageFault_WritesAnswer503AndRecover(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, carol := ts.user("alice"), ts.user("bob"), ts.user("carol")
	befriend(alice, bob)
	first := alice.send(bob, "before the fault")
	carol.mustDo("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusCreated)
	messagesBefore := countRows(t, ts, `SELECT count(*) FROM messages`)
	filesBefore, _ := os.ReadDir(ts.sqlite().filesDir)

	clear := injectWriteFault(ts)
	// Every kind of write answers 503 storage_unavailable, none a 500.
	writes := []struct {
		c            *client
		method, path string
		body         any
	}{
		{alice, "POST", "/api/messages", map[string]any{"to": bob.username, "body": "lost?", "client_msg_id": "during-fault"}},
		{ts.anon(), "POST", "/api/signup", map[string]any{"username": uniqueName("dave"), "password": "correct horse battery"}},
		{ts.anon(), "POST", "/api/login", map[string]any{"username": bob.username, "password": bob.password}},
		{alice, "POST", "/api/friends/" + carol.username + "/accept", nil},
		{alice, "POST", "/api/friends/" + carol.username + "/refuse", nil},
		{bob, "POST", "/api/friends/" + carol.username + "/request", nil},
		{alice, "DELETE", "/api/friends/" + bob.username, nil},
		{alice, "POST", "/api/blocks/" + bob.username, nil},
		{alice, "DELETE", "/api/blocks/" + bob.username, nil},
		{bob, "POST", "/api/clean", map[string]any{"upto": 1000}},
		{bob, "POST", "/api/logout", nil},
	}
	for _, w := range writes {
		w.c.mustFail(w.method, w.path, w.body, http.StatusServiceUnavailable, "storage_unavailable")
	}
	resp, data := alice.uploadBytes(bob, "a.txt", []byte("some text"))
	checkError(t, resp, data, http.StatusServiceUnavailable, "storage_unavailable")

	// Reads still work, and nothing of the failed writes shows.
	bob.mustDo("GET", "/api/me", nil, http.StatusOK)
	ts.anon().mustDo("GET", "/api/health", nil, http.StatusOK)
	if got := bob.messages(); len(got) != 1 || got[0].ID != first.ID {
		t.Fatalf("during the fault bob's queue is %+v", got)
	}
	if n := countRows(t, ts, `SELECT count(*) FROM messages`); n != messagesBefore {
		t.Fatalf("%d messages after failed writes, %d before", n, messagesBefore)
	}
	if files, _ := os.ReadDir(ts.sqlite().filesDir); len(files) != len(filesBefore) {
		t.Fatalf("failed upload left a file: %d files, %d before", len(files), len(filesBefore))
	}
	var f struct{ Friends, Incoming []userJSON }
	alice.mustJSON("GET", "/api/friends", nil, http.StatusOK, &f)
	if len(f.Friends) != 1 || len(f.Incoming) != 1 {
		t.Fatalf("failed relation changes showed: %+v", f)
	}

	// Space returns: the same writes work, the failed send's id is fresh.
	clear()
	var out struct{ Message Message }
	alice.mustJSON("POST", "/api/messages", map[string]any{"to": bob.username, "body": "after", "client_msg_id": "during-fault"}, http.StatusCreated, &out)
	if got := bob.messages(); len(got) != 2 || got[1].Body != "after" {
		t.Fatalf("after recovery bob's queue is %+v", got)
	}
	resp, data = alice.uploadBytes(bob, "a.txt", []byte("some text"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload after recovery: %d %s", resp.StatusCode, data)
	}
	alice.mustDo("POST", "/api/friends/"+carol.username+"/accept", nil, http.StatusOK)
	bob.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	bob.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	ts.checkInvariants()
}

// TestStorageFault_FlappingDiskNeverHalfWrites toggles the fault while many
// senders run: every 201 is stored once, every 503 stored nothing (its
// retry with the same client_msg_id is a 201, not a 200).
func TestStorageFault_FlappingDiskNeverHalfWrites(t *testing.T) {
	ts := newTestServer(t)
	bob := ts.user("bob")
	const nSenders, perSender = 6, 60
	senders := make([]*client, nSenders)
	for i := range senders {
		senders[i] = ts.user("flap")
		befriend(senders[i], bob)
	}
	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Add(1)
	go func() {
		defer flips.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				ts.sqlite().writeFault.Store(nil)
				return
			case <-time.After(time.Duration(1+i%4) * time.Millisecond):
			}
			if i%2 == 0 {
				fault := errors.New("injected: read-only file system")
				ts.sqlite().writeFault.Store(&fault)
			} else {
				ts.sqlite().writeFault.Store(nil)
			}
		}
	}()
	var created, failed atomic.Int64
	var wg sync.WaitGroup
	ids := make([]map[string]int64, nSenders)
	for i, c := range senders {
		ids[i] = map[string]int64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perSender {
				cid := fmt.Sprintf("m%d", k)
				sawFailure := false
				for attempt := 0; attempt < 200; attempt++ {
					resp, data := c.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": cid, "client_msg_id": cid})
					if resp.StatusCode == http.StatusServiceUnavailable {
						failed.Add(1)
						sawFailure = true
						continue
					}
					if resp.StatusCode != http.StatusCreated {
						// A 200 means a send answered 503 had been stored.
						t.Errorf("%s %s: %d %s (after a 503: %v)", c.username, cid, resp.StatusCode, data, sawFailure)
						return
					}
					var out struct{ Message Message }
					decodeInto(t, data, &out)
					ids[i][cid] = out.Message.ID
					created.Add(1)
					break
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	flips.Wait()

	got := map[string]int{}
	for _, m := range bob.messages() {
		got[m.From+"/"+m.Body]++
	}
	for i, c := range senders {
		for cid := range ids[i] {
			if got[c.username+"/"+cid] != 1 {
				t.Errorf("%s/%s delivered %d times", c.username, cid, got[c.username+"/"+cid])
			}
		}
	}
	if n := countRows(t, ts, `SELECT count(*) FROM messages`); int64(n) != created.Load() {
		t.Errorf("%d messages stored, %d answered 201", n, created.Load())
	}
	ts.checkInvariants()
	t.Logf("%d sends stored, %d answered 503 and retried", created.Load(), failed.Load())
}

func decodeInto(t testing.TB, data []byte, out any) {
	t.Helper()
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
}

// TestWriteError_StorageFailureIs503: a storage failure that reaches a
// handler outside the writer (a read the disk failed) is a 503 too.
func TestWriteError_StorageFailureIs503(t *testing.T) {
	ts := newTestServer(t)
	// A real SQLITE_READONLY: the read pool is query_only.
	_, err := ts.sqlite().read.Exec(`DELETE FROM users`)
	if err == nil || !isStorageFailure(err) {
		t.Fatalf("want a storage failure from the read pool, got %v", err)
	}
	rec, req := httptest.NewRecorder(), httptest.NewRequest("GET", "/api/poll", nil)
	ts.app.writeError(rec, req, fmt.Errorf("reading the queue: %w", err))
	resp := rec.Result()
	resp.Request = req
	checkError(t, resp, rec.Body.Bytes(), http.StatusServiceUnavailable, "storage_unavailable")
}
