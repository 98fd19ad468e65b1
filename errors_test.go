package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// malformedBodies are not one JSON object of the right shape: 400.
var malformedBodies = []string{
	``,
	` `,
	`{`,
	`{"to":`,
	`nope`,
	`{} {}`,
	`{}x`,
	`{}]`,
	`{"a":1}{"b":2}`,
	`[]`,
	`"a string"`,
	`42`,
	`{"to": "x", "body": "y",}`,
	`{'to': 'x'}`,
	"\xff\xfe{}",
	`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
}

func TestErrors_MalformedJSONEverywhere(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	alice.send(bob, "kept")
	before := queueState(alice) + "|" + queueState(bob)

	for _, path := range []string{"/api/signup", "/api/login", "/api/messages", "/api/clean"} {
		for _, body := range malformedBodies {
			resp, data := alice.do("POST", path, body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("POST %s %.40q: %d %s, want 400", path, body, resp.StatusCode, data)
			}
			checkError(t, resp, data, http.StatusBadRequest, errorCode(data))
		}
		// `null` is not an object either; whatever the code, a 400.
		resp, data := alice.do("POST", path, `null`)
		checkError(t, resp, data, http.StatusBadRequest, errorCode(data))
	}
	// Trailing data after a valid object is refused, not half-applied.
	alice.mustFail("POST", "/api/messages", `{"to":"`+bob.username+`","body":"first"} {"to":"`+bob.username+`","body":"second"}`, 400, "bad_request")
	alice.mustFail("POST", "/api/clean", `{"upto": 1000000} x`, 400, "bad_request")
	alice.mustFail("POST", "/api/signup", `{"username":"trailing","password":"12345678"} {}`, 400, "bad_request")
	if after := queueState(alice) + "|" + queueState(bob); after != before {
		t.Fatalf("malformed requests changed the queues:\n%s\n%s", before, after)
	}
	ts.anon().mustFail("POST", "/api/login", map[string]any{"username": "trailing", "password": "12345678"}, 401, "invalid_credentials")
}

func TestErrors_OversizeBodies(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	huge := strings.Repeat("x", 2<<20)
	for _, c := range []struct {
		path string
		body any
	}{
		{"/api/signup", map[string]any{"username": "hugeuser", "password": huge}},
		{"/api/login", map[string]any{"username": alice.username, "password": huge}},
		{"/api/messages", map[string]any{"to": bob.username, "body": huge}},
		{"/api/clean", map[string]any{"upto": 1 << 40, "padding": huge}},
	} {
		resp, data := alice.do("POST", c.path, c.body)
		checkError(t, resp, data, http.StatusRequestEntityTooLarge, "too_large")
	}
	if got := bob.messages(); len(got) != 0 {
		t.Fatalf("an oversize request stored %+v", got)
	}
	ts.anon().mustFail("POST", "/api/login", map[string]any{"username": "hugeuser", "password": "12345678"}, 401, "invalid_credentials")
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
}

func TestErrors_UnknownFieldsIgnored(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	anon := ts.anon()
	extra := map[string]any{"future_field": []any{1, "two", map[string]any{"three": nil}}, "another": true}
	with := func(m map[string]any) map[string]any {
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	anon.mustDo("POST", "/api/signup", with(map[string]any{"username": "newclient", "password": "12345678"}), http.StatusCreated)
	var li struct {
		Token string `json:"token"`
	}
	anon.mustJSON("POST", "/api/login", with(map[string]any{"username": "newclient", "password": "12345678"}), http.StatusOK, &li)
	nc := &client{ts: ts, t: t, username: "newclient", token: li.Token}
	bob := ts.user("bob")
	befriend(nc, bob)
	nc.mustDo("POST", "/api/messages", with(map[string]any{"to": bob.username, "body": "hi", "priority": "high"}), http.StatusCreated)
	if got := bob.messages(); len(got) != 1 || got[0].Body != "hi" {
		t.Fatalf("bob got %+v", got)
	}
	bob.clean(1 << 40)
	// JSON with a charset parameter is JSON.
	resp, data := nc.doWith("POST", "/api/messages", map[string]any{"to": bob.username, "body": "charset"}, func(r *http.Request) {
		r.Header.Set("Content-Type", "application/json; charset=utf-8")
	})
	checkJSON(t, resp, data, http.StatusCreated)
	// And with no Content-Type at all, the body is still read as JSON.
	resp, data = nc.doWith("POST", "/api/messages", map[string]any{"to": bob.username, "body": "no type"}, func(r *http.Request) {
		r.Header.Del("Content-Type")
	})
	checkJSON(t, resp, data, http.StatusCreated)
}

func TestErrors_RoutesAndMethods(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.user("alice")
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/nope"},
		{"GET", "/api/friends/" + alice.username + "/nope"},
		{"POST", "/api/friends/" + strings.Repeat("a", 5000) + "/request"},
		{"POST", "/api/friends/%00%01/request"},
		{"GET", "/api/files/99999999999999999999999"},
		{"PUT", "/api/messages"},
		{"GET", "/api/messages"},
		{"GET", "/api/signup"},
		{"DELETE", "/api/me"},
		{"PATCH", "/api/friends/" + alice.username},
	} {
		resp, data := alice.do(c.method, c.path, nil)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("%s %s: %d %s, want a 4xx", c.method, c.path, resp.StatusCode, data)
		}
		checkError(t, resp, data, resp.StatusCode, errorCode(data))
	}
}

// TestErrors_Shape checks one error of each status for the exact shape:
// {"error": {"code", "message"}} and nothing else at the top.
func TestErrors_Shape(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	anon := ts.anon()
	resp, data := anon.do("GET", "/api/me", nil)
	checkError(t, resp, data, 401, "unauthorized")
	var top map[string]json.RawMessage
	json.Unmarshal(data, &top)
	if len(top) != 1 {
		t.Fatalf("error body %s has more than error", data)
	}
	var inner map[string]any
	json.Unmarshal(top["error"], &inner)
	if _, ok := inner["code"].(string); !ok {
		t.Fatalf("error body %s", data)
	}
	if m, ok := inner["message"].(string); !ok || m == "" {
		t.Fatalf("error body %s", data)
	}
}

// A JSON body is read as JSON whatever its Content-Type says; what is not
// JSON is a 400 all the same.
func TestErrors_ContentTypeDoesNotDecide(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.user("alice")
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", ""} {
		resp, data := alice.doWith("POST", "/api/clean", `{"upto": 0}`, func(r *http.Request) {
			r.Header.Del("Content-Type")
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
		})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("JSON sent as %q: %d %s", ct, resp.StatusCode, data)
		}
		resp, data = alice.doWith("POST", "/api/clean", `upto=0`, func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		})
		checkError(t, resp, data, http.StatusBadRequest, "bad_request")
	}
}
