package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// sendMany sends n messages from c to to over workers concurrent senders,
// each in order; bodies are "w<worker>-<i>".
func sendMany(c, to *client, n, workers int) {
	c.t.Helper()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				resp, data := c.do("POST", "/api/messages", map[string]any{"to": to.username, "body": fmt.Sprintf("w%d-%d", w, i)})
				if resp.StatusCode != http.StatusCreated {
					c.t.Errorf("send %d: %d %s", i, resp.StatusCode, data)
					return
				}
			}
		}()
	}
	wg.Wait()
	if c.t.Failed() {
		c.t.FailNow()
	}
}

func TestPoll_CursorBatchesNoGapsNoDuplicates(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	const n = 250
	sendMany(alice, bob, n, 5)

	// Batches of at most 100, oldest first, cursor = last seq returned;
	// seqs strictly increasing; every message once.
	check := func(who *client, startCursor int64) (ids []int64, last int64) {
		t.Helper()
		cursor, prevSeq := startCursor, startCursor
		seen := map[int64]bool{}
		batches := 0
		for {
			next, evs, _ := who.pollRaw(fmt.Sprintf("cursor=%d&timeout=0", cursor))
			if len(evs) == 0 {
				if next != cursor {
					t.Fatalf("empty answer moved the cursor from %d to %d", cursor, next)
				}
				break
			}
			batches++
			if len(evs) > 100 {
				t.Fatalf("a batch of %d events", len(evs))
			}
			for _, e := range evs {
				if e.Seq <= prevSeq {
					t.Fatalf("seq %d after %d", e.Seq, prevSeq)
				}
				prevSeq = e.Seq
				checkTime(t, "event at", e.At)
				if e.Type != "message" {
					continue
				}
				if seen[e.Message.ID] {
					t.Fatalf("message %d delivered twice", e.Message.ID)
				}
				seen[e.Message.ID] = true
				ids = append(ids, e.Message.ID)
			}
			if next != evs[len(evs)-1].Seq {
				t.Fatalf("cursor %d, last seq %d", next, evs[len(evs)-1].Seq)
			}
			cursor = next
		}
		if len(ids) == n && batches < 3 {
			t.Fatalf("%d messages came in %d batches", n, batches)
		}
		return ids, cursor
	}
	// Each sender's messages arrive in the order sent.
	checkOrder := func(msgs []Message) {
		t.Helper()
		next := map[string]int{}
		for _, m := range msgs {
			var w, i int
			fmt.Sscanf(m.Body, "w%d-%d", &w, &i)
			key := fmt.Sprint(w)
			if want, ok := next[key]; ok && i != want {
				t.Fatalf("worker %d: message %d after %d", w, i, want-5)
			}
			next[key] = i + 5
		}
	}
	ids, last := check(bob, 0)
	if len(ids) != n {
		t.Fatalf("bob got %d messages, want %d", len(ids), n)
	}
	checkOrder(bob.messages())
	// The sender's own copies, in the same order.
	own, _ := check(alice, 0)
	if fmt.Sprint(own) != fmt.Sprint(ids) {
		t.Fatal("alice's own copies differ from what bob got")
	}

	// A cursor in the middle resumes after it, exactly.
	_, evs, _ := bob.pollRaw("cursor=0&timeout=0")
	msgEvents := eventsOfType(evs, "message")
	mid := msgEvents[49].Seq
	rest, _ := check(bob, mid)
	if len(rest) != n-50 || rest[0] != ids[50] {
		t.Fatalf("from cursor %d: %d messages starting with %d", mid, len(rest), rest[0])
	}
	// No cursor at all means 0.
	_, evs, _ = bob.pollRaw("timeout=0")
	if msgEvents = eventsOfType(evs, "message"); len(evs) != 100 || msgEvents[0].Message.ID != ids[0] {
		t.Fatalf("no cursor: %d events", len(evs))
	}

	// After cleaning half and logging in anew, cursor 0 replays exactly
	// the uncleaned messages.
	if removed := bob.clean(mid); removed != 50 {
		t.Fatalf("removed %d, want 50", removed)
	}
	bob.login()
	again, end := check(bob, 0)
	if fmt.Sprint(again) != fmt.Sprint(ids[50:]) {
		t.Fatalf("after a new login cursor 0 replays %d messages, want the %d uncleaned", len(again), n-50)
	}
	if end != last {
		t.Fatalf("last seq %d, was %d", end, last)
	}
}

func TestPoll_NewerPollEndsOlder(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	_, cursor := bob.drain(0)

	first := bob.pollAsync(cursor, 30)
	ts.waitPolling(1)
	second := bob.pollAsync(cursor, 30)
	p := receive(t, first, "the older poll")
	if p.Cursor != cursor || len(p.Events) != 0 {
		t.Fatalf("older poll answered %+v, want cursor %d and no events", p, cursor)
	}
	// The newer poll is the one that gets the message.
	ts.waitPolling(1)
	sent := alice.send(bob, "to the newer poll")
	p = receive(t, second, "the newer poll")
	if len(p.Events) != 1 || p.Events[0].Message == nil || p.Events[0].Message.ID != sent.ID {
		t.Fatalf("newer poll answered %+v", p)
	}
}

func TestPoll_TimeoutAndWakeUps(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	carol := ts.user("carol")
	_, cursor := bob.drain(0)

	// timeout=0 answers at once, with the cursor unchanged and [] events.
	next, evs, raw := bob.pollRaw(fmt.Sprintf("cursor=%d&timeout=0", cursor))
	if next != cursor || len(evs) != 0 {
		t.Fatalf("timeout=0 answered %s", raw)
	}
	// A short timeout ends with {"cursor": C, "events": []}.
	next, evs, raw = bob.pollRaw(fmt.Sprintf("cursor=%d&timeout=1", cursor))
	if next != cursor || len(evs) != 0 {
		t.Fatalf("timeout=1 answered %s", raw)
	}
	// More than 60 is not an error (waits at most 60): with an event
	// queued it answers at once.
	alice.send(bob, "queued")
	next, evs, _ = bob.pollRaw(fmt.Sprintf("cursor=%d&timeout=3600", cursor))
	if len(evs) != 1 {
		t.Fatalf("timeout=3600 with an event queued: %d events", len(evs))
	}
	cursor = next

	// A waiting poll wakes for a notice too (a friend request).
	polled := bob.pollAsync(cursor, 30)
	ts.waitPolling(1)
	carol.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated)
	p := receive(t, polled, "poll waiting for a friend request")
	if len(p.Events) != 1 || p.Events[0].Type != "friend_request" || p.Events[0].User.Username != carol.username {
		t.Fatalf("poll answered %+v", p)
	}

	// A client that goes away ends its wait at once.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.url(fmt.Sprintf("/api/poll?cursor=%d&timeout=30", p.Cursor)), nil)
	req.Header.Set("Authorization", "Bearer "+bob.token)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	ts.waitPolling(1)
	cancel()
	<-errc
	eventually(t, 10*time.Second, "the abandoned poll to end", func() bool { return ts.app.notifier.waiting() == 0 })
}

func TestPoll_BadParameters(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.user("alice")
	for _, q := range []string{
		"cursor=abc", "cursor=-1", "cursor=1.5", "cursor=1e3", "cursor=99999999999999999999999", "cursor=0x10",
		"timeout=abc", "timeout=-1", "timeout=1.5", "timeout=1s",
	} {
		resp, data := alice.do("GET", "/api/poll?"+q, nil)
		checkError(t, resp, data, http.StatusBadRequest, "bad_request")
	}
}
