package main

import (
	"net/http"
	"testing"
	"time"
)

func TestServer_SendPollClean(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.newUser("alice"), ts.newUser("bob")
	befriend(alice, bob)

	sent := alice.send(bob, "hello bob")
	got := bob.messages()
	if len(got) != 1 || got[0] != sent {
		t.Fatalf("bob got %+v, want [%+v]", got, sent)
	}
	// The sender's copy is in the sender's own queue.
	if mine := alice.messages(); len(mine) != 1 || mine[0].ID != sent.ID {
		t.Fatalf("alice's own queue holds %+v", mine)
	}
	p := bob.poll(0, 0)
	var removed struct {
		Removed int64 `json:"removed"`
	}
	bob.mustJSON("POST", "/api/clean", map[string]any{"upto": p.Cursor}, http.StatusOK, &removed)
	if removed.Removed != 1 {
		t.Fatalf("removed %d, want 1", removed.Removed)
	}
	if got := bob.messages(); len(got) != 0 {
		t.Fatalf("after clean bob still has %+v", got)
	}
	if mine := alice.messages(); len(mine) != 1 {
		t.Fatalf("bob's clean took alice's copy: %+v", mine)
	}
}

func TestServer_PollWakesOnSend(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.newUser("alice"), ts.newUser("bob")
	befriend(alice, bob)
	cursor := bob.poll(0, 0).Cursor

	done := make(chan pollResult, 1)
	go func() { done <- bob.poll(cursor, 30) }()
	eventually(t, 5*time.Second, "bob's poll to wait", func() bool { return ts.app.notifier.waiting() == 1 })
	sent := alice.send(bob, "wake up")
	select {
	case p := <-done:
		if len(p.Events) != 1 || p.Events[0].Message == nil || p.Events[0].Message.ID != sent.ID {
			t.Fatalf("poll answered %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("poll was not woken by the send")
	}
}

// Seqs must never repeat within a queue, even when clean has emptied it and
// the server restarts: a client's cursor from before would hide new events.
func TestQueue_SeqNeverRepeatsAfterCleanAndRestart(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.newUser("alice"), ts.newUser("bob")
	befriend(alice, bob)
	for i := 0; i < 3; i++ {
		alice.send(bob, "before")
	}
	p := bob.poll(0, 0)
	last := p.Cursor
	bob.mustDo("POST", "/api/clean", map[string]any{"upto": last}, http.StatusOK)

	ts.restart()
	alice.send(bob, "after")
	q := bob.poll(last, 0)
	if len(q.Events) != 1 || q.Events[0].Seq <= last {
		t.Fatalf("after clean and restart, poll from %d gave %+v", last, q)
	}
}

func TestQueue_CapCountsRecipientOnly(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.MaxQueue = 3 })
	alice, bob := ts.newUser("alice"), ts.newUser("bob")
	befriend(alice, bob)
	for i := 0; i < 3; i++ {
		alice.send(bob, "fill")
	}
	alice.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "one too many"}, http.StatusConflict, "queue_full")
	// alice's own queue holds 3 sent copies, at the cap, yet her copy of a
	// send to someone with room is always stored.
	carol := ts.newUser("carol")
	befriend(alice, carol)
	alice.send(carol, "room here")
	if n := len(alice.messages()); n != 4 {
		t.Fatalf("alice holds %d messages, want 4", n)
	}
	// The cap survives a restart (the writer's counts are rebuilt from rows).
	ts.restart()
	alice.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "still full"}, http.StatusConflict, "queue_full")
	bob.mustDo("POST", "/api/clean", map[string]any{"upto": 1 << 40}, http.StatusOK)
	alice.send(bob, "room again")
}

// The sender's own copy names the client_msg_id it was sent with, so a page
// whose answer was lost can still match the event with its pending copy.
func TestQueue_MessageEventsCarryClientMsgID(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)
	alice.mustDo("POST", "/api/messages", map[string]any{"to": bob.username, "body": "hi", "client_msg_id": "cid-1"}, http.StatusCreated)
	alice.send(bob, "no id")
	for _, c := range []*client{alice, bob} {
		got := c.messages()
		if len(got) != 2 || got[0].ClientMsgID != "cid-1" || got[1].ClientMsgID != "" {
			t.Fatalf("%s's queue: %+v", c.username, got)
		}
	}
	ts.restart() // from the database, not the in-memory tail
	if got := alice.messages(); len(got) != 2 || got[0].ClientMsgID != "cid-1" {
		t.Fatalf("after restart: %+v", got)
	}
}
