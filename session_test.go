package main

import (
	"encoding/json"
	"fmt"
	"net/http"
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
