package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// checkPollsMatchDatabase polls c from every cursor up to past the end and
// compares each answer with what the database itself holds: the in-memory
// tail must never answer differently.
func checkPollsMatchDatabase(t *testing.T, ts *testServer, c *client, id int64, what string) {
	t.Helper()
	last, err := ts.app.store.LastSeq(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	// Every cursor near the end (where a tail answers), a sample before.
	step := int64(3)
	if raceEnabled {
		step = 17
	}
	var cursors []int64
	for cursor := int64(0); cursor < last-12; cursor += step {
		cursors = append(cursors, cursor)
	}
	for cursor := max(0, last-12); cursor <= last+1; cursor++ {
		cursors = append(cursors, cursor)
	}
	for _, cursor := range cursors {
		_, _, raw := c.pollRaw(fmt.Sprintf("cursor=%d&timeout=0", cursor))
		var got pollAnswer
		json.Unmarshal(raw, &got)
		want, err := ts.app.store.EventsAfter(context.Background(), id, cursor, maxPollBatch)
		if err != nil {
			t.Fatal(err)
		}
		wantCursor := cursor
		if len(want) > 0 {
			wantCursor = want[len(want)-1].Seq
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(pollAnswer{Cursor: wantCursor, Events: want})
		if string(g) != string(w) {
			t.Fatalf("%s: poll from cursor %d answered\n%s\nthe database holds\n%s", what, cursor, g, w)
		}
	}
}

func userID(t *testing.T, ts *testServer, name string) int64 {
	t.Helper()
	a, err := ts.app.store.AccountByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func TestPoll_InMemoryTailMatchesDatabase(t *testing.T) {
	sqliteOnly(t)
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	carol := ts.user("carol")
	bobID := userID(t, ts, bob.username)

	// bob polls caught up, so a tail is kept for him; then traffic of
	// every kind arrives, more than a tail holds.
	_, cursor := bob.drain(0)
	bob.poll(cursor, 0)
	eventually(t, 10*time.Second, "bob's tail", func() bool {
		_, ok := ts.app.store.RecentEvents(bobID, cursor, 1)
		return ok
	})
	for i := range 150 {
		alice.send(bob, fmt.Sprint("a", i))
		bob.send(alice, fmt.Sprint("b", i))
		if i == 70 {
			carol.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated)
			bob.mustFail("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusConflict, "already_friends")
		}
		if i%40 == 0 {
			_, cursor = bob.drain(cursor)
		}
	}
	alice.uploadOK(bob, "f.png", "", pngBytes)
	last, _ := ts.app.store.LastSeq(context.Background(), bobID)
	if _, ok := ts.app.store.RecentEvents(bobID, last-5, 1); !ok {
		t.Fatal("no tail answers bob's caught-up polls: the test would not test it")
	}
	checkPollsMatchDatabase(t, ts, bob, bobID, "after traffic")

	// A partial clean, a notice, a replacing login (drops notices), more.
	_, evs, _ := bob.pollRaw("cursor=0&timeout=0")
	bob.clean(evs[60].Seq)
	checkPollsMatchDatabase(t, ts, bob, bobID, "after a partial clean")
	carol.mustDo("DELETE", "/api/friends/"+bob.username, nil, http.StatusNoContent)
	bob.login()
	alice.send(bob, "after login")
	checkPollsMatchDatabase(t, ts, bob, bobID, "after a new login")
	bob.clean(1 << 40)
	alice.send(bob, "after cleaning all")
	checkPollsMatchDatabase(t, ts, bob, bobID, "after cleaning everything")
}
