package main

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestSession_UserOrNullNever401(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.newUser("alice")
	check := func(what string, c *client, edit func(*http.Request), want string) {
		t.Helper()
		resp, body := c.doWith("GET", "/api/session", nil, edit)
		var out struct {
			User *struct{ Username string } `json:"user"`
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" || json.Unmarshal(body, &out) != nil {
			t.Fatalf("%s: %d %q %s", what, resp.StatusCode, resp.Header.Get("Cache-Control"), body)
		}
		got := ""
		if out.User != nil {
			got = out.User.Username
		}
		if got != want {
			t.Errorf("%s: user %q (%s), want %q", what, got, body, want)
		}
	}
	check("bearer", alice, nil, alice.username)
	check("cookie", ts.anon(), alice.withCookie(""), alice.username)
	check("no credentials", ts.anon(), nil, "")
	check("malformed", ts.anon(), func(r *http.Request) { r.Header.Set("Authorization", "Basic eA==") }, "")
	check("unknown", ts.anon(), func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	}, "")
	old := alice.token
	alice.login()
	check("replaced", ts.anon(), func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+old) }, "")
	alice.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	check("logged out", alice, nil, "")
	// /api/me keeps its 401.
	alice.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
}
