package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// eventsOf reads c's queue from cursor 0 and returns its events of type typ.
func eventsOf(c *client, typ string) []rawEvent {
	c.t.Helper()
	_, events, _ := c.pollRaw("cursor=0&timeout=0")
	var out []rawEvent
	for _, e := range events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func TestMe_DisplayName(t *testing.T) {
	ts := newTestServer(t)
	cs := ts.friends("ma", "mb")
	alice, bob := cs[0], cs[1]
	outsider := ts.user("mc")

	alice.mustFail("PATCH", "/api/me", map[string]any{}, http.StatusBadRequest, "bad_request")
	alice.mustFail("PATCH", "/api/me", map[string]any{"display_name": 5}, http.StatusBadRequest, "bad_request")
	alice.mustFail("PATCH", "/api/me", `{"display_name":"x"} trailing`, http.StatusBadRequest, "bad_request")
	for _, bad := range []string{"", "   ", strings.Repeat("x", 65), "a\u202eb", "tab\there"} {
		alice.mustFail("PATCH", "/api/me", map[string]any{"display_name": bad}, http.StatusBadRequest, "invalid_display_name")
	}
	alice.mustFail("PUT", "/api/me", map[string]any{"display_name": "x"}, http.StatusMethodNotAllowed, "method_not_allowed")
	ts.anon().mustFail("PATCH", "/api/me", map[string]any{"display_name": "x"}, http.StatusUnauthorized, "unauthorized")
	resp, data := alice.doWith("PATCH", "/api/me", map[string]any{"display_name": "Evil"}, alice.withCookie("http://evil.example"))
	checkError(t, resp, data, http.StatusForbidden, "bad_origin")
	if n := len(eventsOf(bob, "user_updated")); n != 0 {
		t.Fatalf("refused renames sent %d events", n)
	}

	var out struct {
		User userJSON `json:"user"`
	}
	alice.mustJSON("PATCH", "/api/me", map[string]any{"display_name": "Alice 👩‍💻"}, http.StatusOK, &out)
	if out.User.Username != alice.username || out.User.DisplayName != "Alice 👩‍💻" {
		t.Fatalf("PATCH answered %+v", out.User)
	}
	alice.mustJSON("GET", "/api/me", nil, http.StatusOK, &out)
	if out.User.DisplayName != "Alice 👩‍💻" {
		t.Fatalf("GET /api/me shows %q", out.User.DisplayName)
	}
	ev := eventsOf(bob, "user_updated")
	if len(ev) != 1 || ev[0].User["username"] != alice.username || ev[0].User["display_name"] != "Alice 👩‍💻" {
		t.Fatalf("bob's user_updated events: %+v", ev)
	}
	if n := len(eventsOf(outsider, "user_updated")); n != 0 {
		t.Fatalf("a non-friend got %d user_updated events", n)
	}
	var friends struct {
		Friends []userJSON `json:"friends"`
	}
	bob.mustJSON("GET", "/api/friends", nil, http.StatusOK, &friends)
	if len(friends.Friends) != 1 || friends.Friends[0].DisplayName != "Alice 👩‍💻" {
		t.Fatalf("bob's friends: %+v", friends.Friends)
	}
	var users struct {
		Users []userJSON `json:"users"`
	}
	outsider.mustJSON("GET", "/api/users?q=alice%20", nil, http.StatusOK, &users)
	if len(users.Users) != 1 || users.Users[0].Username != alice.username {
		t.Fatalf("search by the new display name: %+v", users.Users)
	}
	// Notices alice causes from now on carry the new name.
	alice.mustDo("POST", "/api/friends/"+outsider.username+"/request", nil, http.StatusCreated)
	if ev := eventsOf(outsider, "friend_request"); len(ev) != 1 || ev[0].User["display_name"] != "Alice 👩‍💻" {
		t.Fatalf("friend_request after the rename: %+v", ev)
	}
	// And the name survives a restart and a new login.
	ts.restart()
	alice.login()
	alice.mustJSON("GET", "/api/me", nil, http.StatusOK, &out)
	if out.User.DisplayName != "Alice 👩‍💻" {
		t.Fatalf("after a restart: %q", out.User.DisplayName)
	}
}

func TestMe_Password(t *testing.T) {
	ts := newTestServer(t)
	u := ts.user("pw")
	const next = "a much better passphrase"
	u.mustFail("POST", "/api/me/password", map[string]any{"new_password": next}, http.StatusBadRequest, "bad_request")
	u.mustFail("POST", "/api/me/password", map[string]any{"password": u.password}, http.StatusBadRequest, "weak_password")
	u.mustFail("POST", "/api/me/password", map[string]any{"password": u.password, "new_password": "short"}, http.StatusBadRequest, "weak_password")
	u.mustFail("POST", "/api/me/password", map[string]any{"password": u.password, "new_password": strings.Repeat("x", 1025)}, http.StatusBadRequest, "weak_password")
	u.mustFail("POST", "/api/me/password", map[string]any{"password": 1, "new_password": next}, http.StatusBadRequest, "bad_request")
	u.mustFail("POST", "/api/me/password", map[string]any{"password": "wrong password", "new_password": next}, http.StatusUnauthorized, "invalid_credentials")
	ts.anon().mustFail("POST", "/api/me/password", map[string]any{"password": u.password, "new_password": next}, http.StatusUnauthorized, "unauthorized")
	// Nothing changed so far.
	check := ts.anon()
	check.mustDo("POST", "/api/login", map[string]any{"username": u.username, "password": u.password}, http.StatusOK)

	// The replaced session (check's login replaced u's): u logs in again.
	stale := *u
	u.login()
	stale.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "session_replaced")
	u.mustDo("POST", "/api/me/password", map[string]any{"password": u.password, "new_password": next}, http.StatusNoContent)
	u.mustDo("GET", "/api/me", nil, http.StatusOK)
	u.mustDo("GET", "/api/poll?timeout=0", nil, http.StatusOK)
	stale.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	check.mustFail("POST", "/api/login", map[string]any{"username": u.username, "password": u.password}, http.StatusUnauthorized, "invalid_credentials")
	u.password = next
	// The session survives a restart too (it is in the database).
	ts.restart()
	u.mustDo("GET", "/api/me", nil, http.StatusOK)
	u.login()
}

func TestMe_WrongPasswordCountsAsFailedLogin(t *testing.T) {
	ts := newTestServer(t, noExemption)
	u := ts.user("rl")
	for i := range 5 {
		u.as(t).mustFail("POST", "/api/me/password", map[string]any{"password": fmt.Sprint("wrong ", i), "new_password": "whatever it is"},
			http.StatusUnauthorized, "invalid_credentials")
	}
	resp, data := u.do("POST", "/api/me/password", map[string]any{"password": u.password, "new_password": "whatever it is"})
	checkRateLimited(t, resp, data, 15*60)
	resp, data = u.do("DELETE", "/api/me", map[string]any{"password": u.password})
	checkRateLimited(t, resp, data, 15*60)
	resp, data = login(ts.anon(), u.username, u.password, nil)
	checkRateLimited(t, resp, data, 15*60)
}

func TestMe_Delete(t *testing.T) {
	ts, res := pushServer(t)
	res.set("push.example", "203.0.113.10")
	cs := ts.friends("da", "db")
	alice, bob := cs[0], cs[1]
	asker := ts.user("dq")
	asker.mustDo("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusCreated)
	id := ts.liveUserID(alice)
	alice.subscribe(newBrowserSub(t, "https://push.example/alice"))
	alice.send(bob, "remember me")
	bob.send(alice, "unread by alice")

	alice.mustFail("DELETE", "/api/me", map[string]any{}, http.StatusBadRequest, "bad_request")
	alice.mustFail("DELETE", "/api/me", map[string]any{"password": "not it at all"}, http.StatusUnauthorized, "invalid_credentials")
	resp, data := alice.doWith("DELETE", "/api/me", map[string]any{"password": alice.password}, alice.withCookie("null"))
	checkError(t, resp, data, http.StatusForbidden, "bad_origin")
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)

	cursor := alice.poll(0, 0).Cursor
	ch := alice.pollAsync(cursor, 30)
	ts.waitPolling(1)
	resp, _ = alice.doWith("DELETE", "/api/me", map[string]any{"password": alice.password}, alice.withCookie(""))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /api/me: %d", resp.StatusCode)
	}
	if c := resp.Header.Get("Set-Cookie"); !strings.Contains(c, sessionCookie+"=;") {
		t.Fatalf("the cookie is not cleared: %q", c)
	}
	receive(t, ch, "alice's open poll")
	alice.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	ts.anon().mustFail("POST", "/api/login", map[string]any{"username": alice.username, "password": alice.password}, http.StatusUnauthorized, "invalid_credentials")
	for _, c := range []*client{bob, asker} {
		ev := eventsOf(c, "friend_removed")
		if len(ev) != 1 || ev[0].User["username"] != alice.username {
			t.Fatalf("%s's friend_removed events: %+v", c.username, ev)
		}
	}
	var friends struct {
		Friends, Incoming, Outgoing []userJSON
	}
	bob.mustJSON("GET", "/api/friends", nil, http.StatusOK, &friends)
	if len(friends.Friends) != 0 {
		t.Fatalf("bob still has friends %+v", friends.Friends)
	}
	// Bob keeps what alice sent him; alice's subscriptions are gone.
	if msgs := bob.messages(); len(msgs) != 2 {
		t.Fatalf("bob has %d messages, want both", len(msgs))
	}
	if subs, err := ts.app.store.PushSubscriptions(context.Background(), id); err != nil || len(subs) != 0 {
		t.Fatalf("alice's subscriptions after deletion: %v (%v)", subs, err)
	}
	bob.mustFail("POST", "/api/messages", map[string]any{"to": alice.username, "body": "hello?"}, http.StatusNotFound, "no_such_user")
	ts.checkInvariants()
	// The name is free again, and the new account is somebody else.
	again := ts.user("x")
	again.username = alice.username
	again.mustDo("POST", "/api/signup", map[string]any{"username": alice.username, "password": "a new person here"}, http.StatusCreated)
	ts.restart()
	bob.mustFail("POST", "/api/messages", map[string]any{"to": alice.username, "body": "hello?"}, http.StatusForbidden, "not_friends")
}
