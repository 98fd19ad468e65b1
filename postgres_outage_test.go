package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"webim/internal/pgtest"
)

// TestPostgres_OutageAnswers503AndRecovers stops the PostgreSQL server under
// a running webim: every write answers 503 storage_unavailable (never a 500
// or a hang) and stores nothing, /api/health says 503, an open poll answers
// as usual, and once Postgres is back webim serves again by itself, with
// nothing of the refused writes in any queue. Not parallel: it stops the
// cluster every test of the process shares, so it runs alone.
func TestPostgres_OutageAnswers503AndRecovers(t *testing.T) {
	ts := newTestServer(t)
	if engine != "postgres" {
		t.Skip("stops the PostgreSQL server: the PostgreSQL pass only")
	}
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)
	before := alice.send(bob, "before the outage")
	cursor := bob.poll(0, 0).Cursor

	type pollEnd struct {
		status int
		events int
	}
	polled := make(chan pollEnd, 1)
	go func() {
		resp, data := bob.do("GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=4", cursor), nil)
		var p pollResult
		_ = json.Unmarshal(data, &p)
		polled <- pollEnd{resp.StatusCode, len(p.Events)}
	}()
	time.Sleep(200 * time.Millisecond) // the poll is waiting

	pgtest.StopServer(t)
	up := false
	defer func() {
		if !up {
			pgtest.StartServer(t)
		}
	}()

	for i := range 3 {
		start := time.Now()
		resp, data := alice.do("POST", "/api/messages", map[string]any{
			"to": bob.username, "body": fmt.Sprintf("during the outage %d", i), "client_msg_id": fmt.Sprintf("outage-%d", i)})
		checkError(t, resp, data, http.StatusServiceUnavailable, "storage_unavailable")
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("a refused send took %v", took)
		}
	}
	resp, data := ts.anon().do("POST", "/api/signup", map[string]any{"username": uniqueName("dave"), "password": "correct horse battery"})
	checkError(t, resp, data, http.StatusServiceUnavailable, "storage_unavailable")
	if resp, _ := ts.anon().do("GET", "/api/health", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health during the outage: %d, want 503", resp.StatusCode)
	}
	if p := <-polled; p.status != http.StatusOK || p.events != 0 {
		t.Errorf("the open poll ended with %d and %d events, want 200 and none", p.status, p.events)
	}

	pgtest.StartServer(t)
	up = true
	eventually(t, 15*time.Second, "health to come back", func() bool {
		resp, _ := ts.anon().do("GET", "/api/health", nil)
		return resp.StatusCode == http.StatusOK
	})
	var after Message
	eventually(t, 15*time.Second, "a send to be stored again", func() bool {
		resp, data := alice.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": "after the outage", "client_msg_id": "after"})
		if resp.StatusCode != http.StatusCreated {
			return false
		}
		var out struct{ Message Message }
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("201 answer %s: %v", data, err)
		}
		after = out.Message
		return true
	})
	got := bob.messages()
	if len(got) != 2 || got[0].ID != before.ID || got[1].ID != after.ID {
		t.Fatalf("bob's queue after the outage: %+v, want only the messages before and after it", got)
	}
	// A retry of a refused send is a new send, not a repeat of something stored.
	resp, data = alice.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": "during the outage 0", "client_msg_id": "outage-0"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("retrying a refused send: %d %s", resp.StatusCode, data)
	}
}
