package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// friendOnline reads c's friend list and returns name's online flag.
func (c *client) friendOnline(name string) bool {
	c.t.Helper()
	resp, data := c.do("GET", "/api/friends", nil)
	checkJSON(c.t, resp, data, http.StatusOK)
	var out struct {
		Friends []map[string]any `json:"friends"`
	}
	json.Unmarshal(data, &out)
	for _, f := range out.Friends {
		if f["username"] == name {
			online, ok := f["online"].(bool)
			if !ok {
				c.t.Fatalf("friend %s has no online flag: %s", name, data)
			}
			return online
		}
	}
	c.t.Fatalf("%s is not among %s's friends: %s", name, c.username, data)
	return false
}

// presenceAbout returns the online flags of c's presence events about name.
func presenceAbout(evs []rawEvent, name string) []bool {
	var out []bool
	for _, e := range eventsOfType(evs, "presence") {
		if e.User["username"] == name {
			out = append(out, e.User["online"] == true)
		}
	}
	return out
}

func TestPresence_LoginLogoutNoFlap(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t) // the real 90 s grace: no timer fires in this test
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	_, cursor := alice.drain(0)
	if !alice.friendOnline(bob.username) {
		t.Fatal("bob, logged in, is not online")
	}

	// Logout: friends are told at once.
	bob.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	e, cursor := alice.waitEvent(cursor, "presence", bob.username)
	if e.User["online"] != false || e.User["display_name"] != bob.username {
		t.Fatalf("presence event %v, want bob offline", e.Raw)
	}
	checkTime(t, "presence at", e.At)
	if alice.friendOnline(bob.username) {
		t.Fatal("bob, logged out, is still online")
	}

	// Login: online again.
	bob.login()
	e, cursor = alice.waitEvent(cursor, "presence", bob.username)
	if e.User["online"] != true {
		t.Fatalf("presence event %v, want bob online", e.Raw)
	}
	if !alice.friendOnline(bob.username) {
		t.Fatal("bob, logged in, is not online")
	}

	// A replacing login, with and without an open poll, causes no flap.
	bob.login()
	old := *bob
	polled := old.pollAsync(0, 30)
	ts.waitPolling(1)
	bob.login()
	if p := receive(t, polled, "bob's replaced poll"); len(p.Events) == 0 || p.Events[len(p.Events)-1].Type != "session_replaced" {
		t.Fatalf("replaced poll answered %+v", p)
	}
	bob.send(alice, "marker") // a later event, so the drain sees anything queued before it
	evs, _ := alice.drain(cursor)
	if flags := presenceAbout(evs, bob.username); len(flags) != 0 {
		t.Fatalf("replacing logins sent presence %v to alice", flags)
	}
	if len(eventsOfType(evs, "message")) != 1 {
		t.Fatalf("alice's events %+v, want just the marker message", evs)
	}
	if !alice.friendOnline(bob.username) {
		t.Fatal("bob is offline after a replacing login")
	}
	// The actor gets no presence event about themselves.
	bobEvents, _ := bob.drain(0)
	if flags := presenceAbout(bobEvents, bob.username); len(flags) != 0 {
		t.Fatalf("bob got presence events about himself: %v", flags)
	}
}

func TestPresence_OfflineAfterGrace(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	ts := newTestServer(t, withGrace(grace))
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]

	// alice polls without a break and collects every presence event
	// about bob, with the time she saw it.
	type seen struct {
		online bool
		at     time.Time
	}
	var mu sync.Mutex
	var got []seen
	stop := make(chan struct{})
	done := make(chan struct{})
	alice.login()
	go func() {
		defer close(done)
		var cursor int64
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, data := alice.do("GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=1", cursor), nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("alice's poll: %d %s", resp.StatusCode, data)
				return
			}
			var p pollResult
			json.Unmarshal(data, &p)
			now := time.Now()
			for _, e := range p.Events {
				if e.Type == "presence" && e.User != nil && e.User.Username == bob.username {
					mu.Lock()
					got = append(got, seen{*e.User.Online, now})
					mu.Unlock()
				}
			}
			cursor = p.Cursor
		}
	}()
	defer func() { close(stop); <-done }()
	ts.waitPolling(1)
	last := func() (seen, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return seen{}, 0
		}
		return got[len(got)-1], len(got)
	}
	waitFor := func(online bool, after int) seen {
		t.Helper()
		var s seen
		eventually(t, 10*time.Second, fmt.Sprintf("presence online=%v about bob", online), func() bool {
			var n int
			s, n = last()
			return n > after && s.online == online
		})
		return s
	}

	// bob logs in and never polls: after the grace he is offline.
	bob.login()
	_, n := last()
	waitFor(false, n)
	if alice.friendOnline(bob.username) {
		t.Fatal("bob is online in alice's list after the grace")
	}

	// A poll brings him back, and keeps him online while it is open
	// longer than the grace; the offline event comes only after it ends.
	_, n = last()
	polled := bob.pollAsync(0, 2)
	waitFor(true, n)
	_, n = last()
	p := receive(t, polled, "bob's poll")
	ended := time.Now()
	if len(p.Events) != 0 {
		// bob has no events (presence notices are dropped while offline)
		t.Logf("bob's poll answered %+v", p)
	}
	off := waitFor(false, n)
	if off.at.Before(ended) {
		t.Fatalf("bob went offline while his poll was open (offline seen %v before the poll ended)", ended.Sub(off.at))
	}
}
