package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestOrigin_CookieWritesFromAnotherOrigin(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	self := ts.srv.URL // http://127.0.0.1:PORT
	port := self[strings.LastIndexByte(self, ':')+1:]

	send := func(body string) map[string]any { return map[string]any{"to": bob.username, "body": body} }
	for _, origin := range []string{
		"null",
		"http://evil.example",
		"https://127.0.0.1:" + port, // another scheme
		"http://127.0.0.1:1",        // another port
		"http://localhost:" + port,  // another host
		"http://127.0.0.1",          // default port 80
		"http://127.0.0.1:" + port + ".evil.example",
		"garbage",
	} {
		resp, data := alice.doWith("POST", "/api/messages", send("from "+origin), alice.withCookie(origin))
		checkError(t, resp, data, http.StatusForbidden, "bad_origin")
		// Every state-changing route, not only messages.
		for _, r := range [][2]string{
			{"POST", "/api/logout"}, {"POST", "/api/clean"}, {"POST", "/api/friends/" + bob.username + "/request"},
			{"DELETE", "/api/friends/" + bob.username}, {"POST", "/api/blocks/" + bob.username},
			{"DELETE", "/api/blocks/" + bob.username}, {"POST", "/api/files"},
		} {
			var body any
			if r[1] == "/api/clean" {
				body = map[string]any{"upto": 1 << 40}
			}
			resp, data := alice.doWith(r[0], r[1], body, alice.withCookie(origin))
			checkError(t, resp, data, http.StatusForbidden, "bad_origin")
		}
	}
	// Nothing of it happened: bob got no message, alice is still logged in
	// and still bob's friend.
	if got := bob.messages(); len(got) != 0 {
		t.Fatalf("cross-origin sends were stored: %+v", got)
	}
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
	if !alice.friendOnline(bob.username) {
		t.Fatal("bob is not online in alice's list")
	}

	// Not refused: same origin (any case), no Origin header, bearer
	// without the cookie, and reads.
	ok := []func(*http.Request){
		alice.withCookie(self),
		alice.withCookie(strings.ToUpper(self[:4]) + self[4:]),
		alice.withCookie(""),
		func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }, // bearer only
		func(r *http.Request) { r.Header.Set("Origin", "null") },                // bearer only
	}
	for i, edit := range ok {
		resp, data := alice.doWith("POST", "/api/messages", send("fine"), edit)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("case %d: %d %s", i, resp.StatusCode, data)
		}
	}
	for _, path := range []string{"/api/me", "/api/friends", "/api/poll?timeout=0", "/api/users"} {
		resp, data := alice.doWith("GET", path, nil, alice.withCookie("http://evil.example"))
		checkJSON(t, resp, data, http.StatusOK)
	}
	if got := bob.messages(); len(got) != len(ok) {
		t.Fatalf("bob got %d messages, want %d", len(got), len(ok))
	}
	// Logout by cookie from the same origin works.
	resp, _ := alice.doWith("POST", "/api/logout", nil, alice.withCookie(self))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("same-origin cookie logout: %d", resp.StatusCode)
	}
}

func TestOrigin_BehindTrustedProxy(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	proxied := func(origin string) func(*http.Request) {
		return func(r *http.Request) {
			alice.withCookie(origin)(r)
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "chat.example.org")
		}
	}
	body := map[string]any{"to": bob.username, "body": "via proxy"}
	resp, data := alice.doWith("POST", "/api/messages", body, proxied("https://chat.example.org"))
	checkJSON(t, resp, data, http.StatusCreated)
	resp, data = alice.doWith("POST", "/api/messages", body, proxied("https://chat.example.org:443"))
	checkJSON(t, resp, data, http.StatusCreated)
	resp, data = alice.doWith("POST", "/api/messages", body, proxied("http://chat.example.org"))
	checkError(t, resp, data, http.StatusForbidden, "bad_origin")
	resp, data = alice.doWith("POST", "/api/messages", body, proxied(ts.srv.URL))
	checkError(t, resp, data, http.StatusForbidden, "bad_origin")

	// From an untrusted peer the forwarded headers are ignored.
	ts2 := newTestServer(t)
	carol, dave := ts2.user("carol"), ts2.user("dave")
	befriend(carol, dave)
	resp, data = carol.doWith("POST", "/api/messages", map[string]any{"to": dave.username, "body": "x"}, func(r *http.Request) {
		carol.withCookie("https://chat.example.org")(r)
		r.Header.Set("X-Forwarded-Proto", "https")
		r.Header.Set("X-Forwarded-Host", "chat.example.org")
	})
	checkError(t, resp, data, http.StatusForbidden, "bad_origin")
}

// sessionCookieOf returns the webim_session cookie a response sets.
func sessionCookieOf(t testing.TB, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", sessionCookie, resp.Header.Values("Set-Cookie"))
	return nil
}

func TestOrigin_TLSAndSecureCookie(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	tlsSrv := httptest.NewTLSServer(ts.app.Handler())
	defer tlsSrv.Close()
	hc := tlsSrv.Client()
	do := func(method, path, body string, edit func(*http.Request)) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, tlsSrv.URL+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if edit != nil {
			edit(req)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	creds := `{"username":"` + alice.username + `","password":"` + alice.password + `"}`
	// Over TLS the cookie is Secure.
	resp := do("POST", "/api/login", creds, nil)
	c := sessionCookieOf(t, resp)
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie over TLS: %q", resp.Header.Get("Set-Cookie"))
	}
	withCookie := func(origin string) func(*http.Request) {
		return func(r *http.Request) {
			r.AddCookie(c)
			r.Header.Set("Origin", origin)
		}
	}
	msg := `{"to":"` + bob.username + `","body":"over tls"}`
	if resp := do("POST", "/api/messages", msg, withCookie(tlsSrv.URL)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("same-origin https cookie send: %d", resp.StatusCode)
	}
	if resp := do("POST", "/api/messages", msg, withCookie("http"+strings.TrimPrefix(tlsSrv.URL, "https"))); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("http origin against an https server: %d", resp.StatusCode)
	}
	// Behind a trusted TLS-terminating proxy, the client is on TLS too.
	resp, _ = ts.anon().doWith("POST", "/api/login", creds, func(r *http.Request) {
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Forwarded-Proto", "https")
	})
	if c := sessionCookieOf(t, resp); !c.Secure {
		t.Fatalf("cookie behind an https proxy: %q", resp.Header.Get("Set-Cookie"))
	}
	// Plain http: not Secure.
	resp, _ = ts.anon().doWith("POST", "/api/login", creds, func(r *http.Request) { r.Header.Set("Content-Type", "application/json") })
	if c := sessionCookieOf(t, resp); c.Secure {
		t.Fatalf("cookie over plain http: %q", resp.Header.Get("Set-Cookie"))
	}
}
