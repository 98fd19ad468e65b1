package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// signup posts a sign-up and returns the answer.
func signup(c *client, body any) (*http.Response, []byte) {
	c.t.Helper()
	return c.do("POST", "/api/signup", body)
}

func TestAccounts_SignupLoginMeLogout(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	anon := ts.anon()

	// Sign-up: 201 {"user"}, the name stored lower-case, the display name
	// defaulting to it, no presence on one's own user object.
	resp, data := signup(anon, map[string]any{"username": "Alice.Smith-1_", "password": "12345678"})
	checkJSON(t, resp, data, http.StatusCreated)
	var su struct {
		User map[string]any `json:"user"`
	}
	json.Unmarshal(data, &su)
	if su.User["username"] != "alice.smith-1_" || su.User["display_name"] != "alice.smith-1_" {
		t.Fatalf("signup answered %s", data)
	}
	if _, ok := su.User["online"]; ok {
		t.Fatalf("own user object carries presence: %s", data)
	}

	// Sign-up with a display name keeps it exactly.
	resp, data = signup(anon, map[string]any{"username": "bob", "password": "12345678", "display_name": "Bob 🎉 Ünïcode"})
	checkJSON(t, resp, data, http.StatusCreated)
	if !strings.Contains(string(data), `"display_name":"Bob 🎉 Ünïcode"`) {
		t.Fatalf("display name not kept: %s", data)
	}

	// Login, case-insensitively: 200 {"user","token"} and the cookie.
	resp, data = anon.do("POST", "/api/login", map[string]any{"username": "ALICE.smith-1_", "password": "12345678"})
	checkJSON(t, resp, data, http.StatusOK)
	var li struct {
		User  map[string]any `json:"user"`
		Token string         `json:"token"`
	}
	json.Unmarshal(data, &li)
	if li.Token == "" || li.User["username"] != "alice.smith-1_" {
		t.Fatalf("login answered %s", data)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("login set no %s cookie: %v", sessionCookie, resp.Header.Values("Set-Cookie"))
	}
	if cookie.Value != li.Token || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode ||
		cookie.Path != "/" || cookie.MaxAge != 30*24*3600 || cookie.Secure {
		t.Fatalf("cookie %q: want the token, HttpOnly, SameSite=Strict, Path=/, Max-Age=2592000, not Secure over http", resp.Header.Get("Set-Cookie"))
	}
	alice := &client{ts: ts, t: t, username: "alice.smith-1_", password: "12345678", token: li.Token}

	// /api/me by bearer and by cookie.
	resp, data = alice.do("GET", "/api/me", nil)
	checkJSON(t, resp, data, http.StatusOK)
	if !strings.Contains(string(data), `"username":"alice.smith-1_"`) {
		t.Fatalf("me answered %s", data)
	}
	resp, data = alice.doWith("GET", "/api/me", nil, alice.withCookie(""))
	checkJSON(t, resp, data, http.StatusOK)

	// Logout: 204, cookie cleared, token unknown from then on.
	resp, data = alice.do("POST", "/api/logout", nil)
	if resp.StatusCode != http.StatusNoContent || len(data) != 0 {
		t.Fatalf("logout: %d %s", resp.StatusCode, data)
	}
	cleared := false
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && c.Value == "" && c.MaxAge < 0 {
			cleared = true
		}
	}
	if !cleared {
		t.Fatalf("logout did not clear the cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	alice.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	alice.mustFail("POST", "/api/logout", nil, http.StatusUnauthorized, "unauthorized")
	resp, data = alice.doWith("GET", "/api/me", nil, alice.withCookie(""))
	checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
}

func TestAccounts_SignupRejects(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	anon := ts.anon()
	long := func(s string, n int) string { return strings.Repeat(s, n) }
	cases := []struct {
		name string
		body any
		code string
	}{
		{"short username", map[string]any{"username": "ab", "password": "12345678"}, "invalid_username"},
		{"long username", map[string]any{"username": long("a", 33), "password": "12345678"}, "invalid_username"},
		{"space in username", map[string]any{"username": "a b c", "password": "12345678"}, "invalid_username"},
		{"bang in username", map[string]any{"username": "bob!", "password": "12345678"}, "invalid_username"},
		{"non-ASCII username", map[string]any{"username": "jür", "password": "12345678"}, "invalid_username"},
		{"Kelvin sign username", map[string]any{"username": "\u212Aelvin", "password": "12345678"}, "invalid_username"},
		{"slash in username", map[string]any{"username": "a/b/c", "password": "12345678"}, "invalid_username"},
		{"empty username", map[string]any{"username": "", "password": "12345678"}, "invalid_username"},
		{"missing username", map[string]any{"password": "12345678"}, "invalid_username"},
		{"short password", map[string]any{"username": "weakpw", "password": "1234567"}, "weak_password"},
		// Seven code points, fourteen bytes: lengths count code points.
		{"short multibyte password", map[string]any{"username": "weakpw", "password": "ééééééé"}, "weak_password"},
		{"long password", map[string]any{"username": "weakpw", "password": long("x", 1025)}, "weak_password"},
		{"missing password", map[string]any{"username": "weakpw"}, "weak_password"},
		{"empty display name", map[string]any{"username": "weakpw", "password": "12345678", "display_name": ""}, "invalid_display_name"},
		{"long display name", map[string]any{"username": "weakpw", "password": "12345678", "display_name": long("é", 65)}, "invalid_display_name"},
		{"newline in display name", map[string]any{"username": "weakpw", "password": "12345678", "display_name": "a\nb"}, "invalid_display_name"},
		{"NUL in display name", map[string]any{"username": "weakpw", "password": "12345678", "display_name": "a\x00b"}, "invalid_display_name"},
		{"username of wrong type", map[string]any{"username": 12345, "password": "12345678"}, ""},
		{"password of wrong type", map[string]any{"username": "weakpw", "password": true}, ""},
	}
	for _, c := range cases {
		resp, data := signup(anon, c.body)
		if c.code == "" {
			// A known field of the wrong type: 400 with bad_request or
			// the field's own code.
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%s: status %d, want 400; %s", c.name, resp.StatusCode, data)
			}
			checkError(t, resp, data, http.StatusBadRequest, errorCode(data))
			continue
		}
		if resp.StatusCode != http.StatusBadRequest || errorCode(data) != c.code {
			t.Fatalf("%s: %d %s, want 400 %s", c.name, resp.StatusCode, data, c.code)
		}
		checkError(t, resp, data, http.StatusBadRequest, c.code)
	}
	// None of them stored anything: the name is still free.
	resp, data := signup(anon, map[string]any{"username": "weakpw", "password": "12345678"})
	checkJSON(t, resp, data, http.StatusCreated)

	// Boundaries that are allowed: 3 and 32 characters, an 8-code-point
	// password of multibyte characters, 64 display-name characters.
	for _, body := range []map[string]any{
		{"username": "abc", "password": "éééééééé"},
		{"username": long("z", 32), "password": long("🔑", 1024)},
		{"username": "display64", "password": "12345678", "display_name": long("é", 64)},
		{"username": "joiner", "password": "12345678", "display_name": "Ana 👩\u200d💻"},
	} {
		resp, data := signup(anon, body)
		checkJSON(t, resp, data, http.StatusCreated)
	}
	anon.mustDo("POST", "/api/login", map[string]any{"username": "abc", "password": "éééééééé"}, http.StatusOK)

	// Taken, whatever the case.
	anon.mustFail("POST", "/api/signup", map[string]any{"username": "WEAKPW", "password": "abcdefgh"}, http.StatusConflict, "username_taken")
	// The first account's password still works: the refused sign-up changed nothing.
	anon.mustDo("POST", "/api/login", map[string]any{"username": "weakpw", "password": "12345678"}, http.StatusOK)
	anon.mustFail("POST", "/api/login", map[string]any{"username": "weakpw", "password": "abcdefgh"}, http.StatusUnauthorized, "invalid_credentials")
}

// errorCode returns the code of an API error body, or "".
func errorCode(data []byte) string {
	var e errorBody
	json.Unmarshal(data, &e)
	return e.Error.Code
}

func TestAccounts_LoginRejects(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.user("alice")
	anon := ts.anon()

	// Same answer for an unknown user and a wrong password.
	r1, d1 := anon.do("POST", "/api/login", map[string]any{"username": alice.username, "password": "wrong password"})
	checkError(t, r1, d1, http.StatusUnauthorized, "invalid_credentials")
	r2, d2 := anon.do("POST", "/api/login", map[string]any{"username": "nobody-here", "password": "wrong password"})
	checkError(t, r2, d2, http.StatusUnauthorized, "invalid_credentials")
	if string(d1) != string(d2) {
		t.Fatalf("unknown user %s and wrong password %s answer differently", d2, d1)
	}
	// A name that could never exist is just as unknown.
	anon.mustFail("POST", "/api/login", map[string]any{"username": "x", "password": "wrong password"}, http.StatusUnauthorized, "invalid_credentials")
	// Missing fields and wrong types are 400.
	anon.mustFail("POST", "/api/login", map[string]any{"username": alice.username}, http.StatusBadRequest, "bad_request")
	anon.mustFail("POST", "/api/login", map[string]any{"password": "x"}, http.StatusBadRequest, "bad_request")
	anon.mustFail("POST", "/api/login", map[string]any{"username": 1, "password": "x"}, http.StatusBadRequest, "bad_request")
	// A failed login does not end the live session.
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
}

func TestAccounts_BadTokens(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice := ts.user("alice")
	for _, auth := range []string{
		"",
		"Bearer",
		"Bearer ",
		"Bearer nonsense",
		"Bearer " + strings.Repeat("A", 43),
		"Basic " + alice.token,
		alice.token,
	} {
		resp, data := alice.doWith("GET", "/api/me", nil, func(r *http.Request) {
			r.Header.Del("Authorization")
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
		})
		checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
	}
	// The scheme is case-insensitive.
	resp, data := alice.doWith("GET", "/api/me", nil, func(r *http.Request) { r.Header.Set("Authorization", "bearer "+alice.token) })
	checkJSON(t, resp, data, http.StatusOK)
	// An unknown cookie is unauthorized too.
	resp, data = alice.doWith("GET", "/api/me", nil, func(r *http.Request) {
		r.Header.Del("Authorization")
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "garbage"})
	})
	checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
	// Every authenticated route refuses an anonymous caller with 401.
	anon := ts.anon()
	for _, r := range [][2]string{
		{"POST", "/api/logout"}, {"GET", "/api/me"}, {"GET", "/api/users"}, {"GET", "/api/friends"},
		{"POST", "/api/friends/" + alice.username + "/request"}, {"POST", "/api/friends/" + alice.username + "/accept"},
		{"POST", "/api/friends/" + alice.username + "/refuse"}, {"DELETE", "/api/friends/" + alice.username},
		{"GET", "/api/blocks"}, {"POST", "/api/blocks/" + alice.username}, {"DELETE", "/api/blocks/" + alice.username},
		{"POST", "/api/messages"}, {"POST", "/api/files"}, {"GET", "/api/files/1"},
		{"GET", "/api/poll?timeout=0"}, {"POST", "/api/clean"},
	} {
		anon.mustFail(r[0], r[1], nil, http.StatusUnauthorized, "unauthorized")
	}
}

func TestAccounts_SessionExpiresAfter30DaysUnused(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ts := newTestServerHooked(t, withClock(clock))
	alice, bob := ts.user("alice"), ts.user("bob")

	// Used every 29 days, a session lives on.
	for range 3 {
		clock.advance(29 * 24 * time.Hour)
		alice.mustDo("GET", "/api/me", nil, http.StatusOK)
	}
	// Unused for more than 30 days, it is gone: bob's was last used at login.
	bob.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	// The last use is kept across a restart, which reads sessions from
	// the database.
	ts.restart()
	clock.advance(29 * 24 * time.Hour)
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
	ts.restart()
	clock.advance(31 * 24 * time.Hour)
	alice.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	alice.login()
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
}
