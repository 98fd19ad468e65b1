package main

import (
	"net/http"
	"testing"
)

func TestRestart_EverythingStoredSurvives(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	carol, dave := ts.user("carol"), ts.user("dave")
	alice.mustDo("POST", "/api/friends/"+carol.username+"/request", nil, http.StatusCreated)
	alice.mustDo("POST", "/api/blocks/"+dave.username, nil, http.StatusOK)
	m1 := alice.send(bob, "one")
	m2 := bob.send(alice, "two")
	m3 := alice.send(bob, "three")
	p := bob.poll(0, 0)
	var firstSeq int64
	for _, e := range p.Events {
		if e.Type == "message" {
			firstSeq = e.Seq
			break
		}
	}
	bob.clean(firstSeq) // bob cleans m1
	_, bobLast := bob.drain(0)
	replaced := *carol
	carol.login()
	loggedOut := *dave
	dave.mustDo("POST", "/api/logout", nil, http.StatusNoContent)

	// A poll open across the restart is answered (empty) by the shutdown.
	polled := alice.pollAsync(1<<40, 30)
	ts.waitPolling(1)
	ts.restart()
	if p := receive(t, polled, "the poll open at shutdown"); len(p.Events) != 0 {
		t.Fatalf("shutdown answered the poll with %+v", p)
	}

	// Sessions: live tokens work, replaced and logged-out ones do not.
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
	bob.mustDo("GET", "/api/me", nil, http.StatusOK)
	carol.mustDo("GET", "/api/me", nil, http.StatusOK)
	replaced.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "session_replaced")
	loggedOut.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")

	// Messages: each queue as it was, cleaned ones gone.
	if got := bob.messages(); len(got) != 2 || got[0] != m2 || got[1] != m3 {
		t.Fatalf("bob's queue after restart %+v", got)
	}
	if got := alice.messages(); len(got) != 3 || got[0] != m1 || got[1] != m2 || got[2] != m3 {
		t.Fatalf("alice's queue after restart %+v", got)
	}
	// Relations.
	if l := alice.friendLists(); !same(l.friends, bob.username) || !same(l.outgoing, carol.username) {
		t.Fatalf("alice's lists after restart %+v", l)
	}
	if b := alice.blockList(); !same(b, dave.username) {
		t.Fatalf("alice's blocks after restart %v", b)
	}
	// Seqs go on from where they were.
	m4 := alice.send(bob, "four")
	all, _ := bob.drain(bobLast)
	evs := eventsOfType(all, "message")
	if len(evs) != 1 || evs[0].Message == nil || evs[0].Message.ID != m4.ID || evs[0].Seq <= bobLast {
		t.Fatalf("after restart bob's new events %+v (last seq %d)", evs, bobLast)
	}
	if m4.ID <= m3.ID {
		t.Fatalf("message id %d after %d", m4.ID, m3.ID)
	}
	// A user polling after the restart is online to friends.
	bob.poll(1<<40, 0)
	if !alice.friendOnline(bob.username) {
		t.Fatal("bob, polling after the restart, is not online")
	}
}
