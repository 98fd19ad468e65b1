package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// pollAsync polls in the background; the answer arrives on the channel.
func (c *client) pollAsync(cursor int64, timeout int) <-chan pollResult {
	ch := make(chan pollResult, 1)
	go func() {
		var out pollResult
		resp, data := c.do("GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=%d", cursor, timeout), nil)
		if resp.StatusCode != http.StatusOK {
			c.t.Errorf("background poll of %s: %d %s", c.username, resp.StatusCode, data)
		} else if err := json.Unmarshal(data, &out); err != nil {
			c.t.Errorf("background poll of %s: %s: %v", c.username, data, err)
		}
		ch <- out
	}()
	return ch
}

// waitPolling waits until n users have a poll waiting.
func (ts *testServer) waitPolling(n int) {
	ts.t.Helper()
	eventually(ts.t, 10*time.Second, fmt.Sprintf("%d waiting polls", n), func() bool { return ts.app.notifier.waiting() >= n })
}

func receive(t testing.TB, ch <-chan pollResult, what string) pollResult {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the poll did not answer", what)
		return pollResult{}
	}
}

func TestSession_ReplacedWhilePolling(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)
	bob.send(alice, "before")
	cursor := alice.poll(0, 0).Cursor

	old := *alice
	polled := old.pollAsync(cursor, 30)
	ts.waitPolling(1)
	alice.login() // a second login of the same user

	p := receive(t, polled, "the replaced session's poll")
	if len(p.Events) != 1 || p.Events[0].Type != "session_replaced" {
		t.Fatalf("the replaced session's poll answered %+v, want one session_replaced event", p)
	}
	e := p.Events[0]
	checkTime(t, "session_replaced at", e.At)
	if e.Seq <= cursor || p.Cursor != e.Seq {
		t.Fatalf("session_replaced seq %d, cursor %d, after cursor %d", e.Seq, p.Cursor, cursor)
	}

	// Every later request with the old token: 401 session_replaced.
	old.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "session_replaced")
	old.mustFail("GET", "/api/poll?timeout=0", nil, http.StatusUnauthorized, "session_replaced")
	old.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "x"}, http.StatusUnauthorized, "session_replaced")
	old.mustFail("POST", "/api/logout", nil, http.StatusUnauthorized, "session_replaced")
	resp, data := old.doWith("GET", "/api/me", nil, old.withCookie(""))
	checkError(t, resp, data, http.StatusUnauthorized, "session_replaced")

	// The new session works, and still sees the uncleaned message.
	if got := alice.messages(); len(got) != 1 || got[0].Body != "before" {
		t.Fatalf("new session sees %+v", got)
	}
	// A restart does not forget which token was replaced.
	ts.restart()
	old.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "session_replaced")
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)

	// A logged-out token is merely unknown.
	loggedOut := *alice
	alice.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	loggedOut.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	old.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "session_replaced")
}

func TestSession_ReplacedWithoutPoll(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.user("alice")
	first := *alice
	alice.login()
	first.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "session_replaced")
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
	// Third login: both older tokens say session_replaced.
	second := *alice
	alice.login()
	first.mustFail("GET", "/api/friends", nil, http.StatusUnauthorized, "session_replaced")
	second.mustFail("GET", "/api/friends", nil, http.StatusUnauthorized, "session_replaced")
	alice.mustDo("GET", "/api/friends", nil, http.StatusOK)
}

func TestSession_LogoutWhilePolling(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.user("alice")
	// Logging out from elsewhere with the same token ends the open poll;
	// it is not a replacement, so no session_replaced event.
	polled := alice.pollAsync(0, 30)
	ts.waitPolling(1)
	alice.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	p := receive(t, polled, "the logged-out session's poll")
	for _, e := range p.Events {
		if e.Type == "session_replaced" {
			t.Fatalf("logout answered the poll with %+v", p)
		}
	}
}

func TestSession_ConcurrentLoginsLeaveOneLiveSession(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, noExemption)
	alice := ts.user("alice")
	const n = 10
	tokens := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out struct {
				Token string `json:"token"`
			}
			resp, data := ts.anon().do("POST", "/api/login", map[string]any{"username": alice.username, "password": alice.password})
			if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &out) != nil {
				t.Errorf("login %d: %d %s", i, resp.StatusCode, data)
			}
			tokens[i] = out.Token
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	check := func(when string) {
		t.Helper()
		live := 0
		for _, tok := range append(tokens, alice.token) {
			c := &client{ts: ts, t: t, token: tok}
			resp, data := c.do("GET", "/api/me", nil)
			switch {
			case resp.StatusCode == http.StatusOK:
				live++
			case resp.StatusCode == http.StatusUnauthorized && errorCode(data) == "session_replaced":
			default:
				t.Fatalf("%s: %d %s", when, resp.StatusCode, data)
			}
		}
		if live != 1 {
			t.Fatalf("%s: %d live sessions, want exactly 1", when, live)
		}
	}
	check("after concurrent logins")
	ts.restart()
	check("after a restart")
}

func TestSession_NoticesAreNotRedeliveredAfterLogin(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	carol := ts.user("carol")
	carol.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated)
	alice.send(bob, "kept")
	evs, _ := bob.drain(0)
	if fr := eventsOfType(evs, "friend_request"); len(fr) == 0 || fr[len(fr)-1].User["username"] != carol.username {
		t.Fatalf("bob's events before the new login: %+v", evs)
	}
	bob.login()
	evs, _ = bob.drain(0)
	if len(evs) != 1 || evs[0].Type != "message" || evs[0].Message.Body != "kept" {
		t.Fatalf("after a new login bob's queue from 0: %+v, want only the uncleaned message", evs)
	}
	// The request itself is still pending: only the event is gone.
	if l := bob.friendLists(); !same(l.incoming, carol.username) {
		t.Fatalf("bob's incoming %v", l.incoming)
	}
}
