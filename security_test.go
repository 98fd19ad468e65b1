package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// authedEndpoints is every route that needs a session, with a body that
// would be valid for it.
func authedEndpoints(other string, fileID int64) []struct {
	method, path string
	body         any
} {
	return []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/logout", nil},
		{"GET", "/api/me", nil},
		{"GET", "/api/users?q=", nil},
		{"GET", "/api/friends", nil},
		{"POST", "/api/friends/" + other + "/request", nil},
		{"POST", "/api/friends/" + other + "/accept", nil},
		{"POST", "/api/friends/" + other + "/refuse", nil},
		{"DELETE", "/api/friends/" + other, nil},
		{"GET", "/api/blocks", nil},
		{"POST", "/api/blocks/" + other, nil},
		{"DELETE", "/api/blocks/" + other, nil},
		{"POST", "/api/messages", map[string]any{"to": other, "body": "intruder"}},
		{"POST", "/api/files", nil}, // multipart is checked after the session
		{"GET", fmt.Sprintf("/api/files/%d", fileID), nil},
		{"GET", "/api/poll?cursor=0&timeout=0", nil},
		{"POST", "/api/clean", map[string]any{"upto": 1 << 40}},
	}
}

// TestSecurity_EveryEndpointRefusesDeadTokens calls every authenticated
// endpoint with no token, a malformed one, a well-formed unknown one, a
// replaced session's and a logged-out session's, as bearer and as cookie:
// each is a 401 with the right code, and nothing changes.
func TestSecurity_EveryEndpointRefusesDeadTokens(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)
	alice.send(bob, "private")
	resp, data := alice.uploadBytes(bob, "secret.txt", []byte("secret"))
	var up struct{ Message Message }
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	decodeInto(t, data, &up)

	replaced := alice.token
	alice.login()
	carol := ts.user("carol")
	loggedOut := carol.token
	carol.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	messagesBefore := countRows(t, ts, `SELECT count(*) FROM messages`)
	queueBefore := countRows(t, ts, `SELECT count(*) FROM queue`)

	tokens := []struct{ what, token, code string }{
		{"no token", "", "unauthorized"},
		{"malformed token", "not a token at all", "unauthorized"},
		{"unknown token", strings.Repeat("A", 43), "unauthorized"},
		{"replaced session", replaced, "session_replaced"},
		{"logged-out session", loggedOut, "unauthorized"},
	}
	for _, tok := range tokens {
		for _, ep := range authedEndpoints(bob.username, up.Message.File.ID) {
			for _, asCookie := range []bool{false, true} {
				c := &client{ts: ts, t: t}
				resp, data := c.doWith(ep.method, ep.path, ep.body, func(r *http.Request) {
					if ep.body != nil {
						r.Header.Set("Content-Type", "application/json")
					}
					if tok.token == "" {
						return
					}
					if asCookie {
						r.AddCookie(&http.Cookie{Name: sessionCookie, Value: tok.token})
					} else {
						r.Header.Set("Authorization", "Bearer "+tok.token)
					}
				})
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s with %s (cookie %v): %d %s", ep.method, ep.path, tok.what, asCookie, resp.StatusCode, data)
					continue
				}
				checkError(t, resp, data, http.StatusUnauthorized, tok.code)
			}
		}
	}
	if n := countRows(t, ts, `SELECT count(*) FROM messages`); n != messagesBefore {
		t.Errorf("refused requests changed the messages: %d, was %d", n, messagesBefore)
	}
	if n := countRows(t, ts, `SELECT count(*) FROM queue`); n != queueBefore {
		t.Errorf("refused requests changed the queues: %d rows, was %d", n, queueBefore)
	}
	// Bob still has his queue and friend.
	if got := bob.messages(); len(got) != 2 {
		t.Errorf("bob's queue after the attempts: %+v", got)
	}
}

// TestSecurity_NoAccessToOtherUsersData: a valid session of a third user
// reads nothing of a conversation, cannot fetch its files, clean its queue
// or act on its friendship.
func TestSecurity_NoAccessToOtherUsersData(t *testing.T) {
	ts := newTestServer(t)
	alice, bob, mallory := ts.user("alice"), ts.user("bob"), ts.user("mallory")
	befriend(alice, bob)
	carol := ts.user("carol")
	carol.mustDo("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusCreated)
	sent := alice.send(bob, "for bob only")
	resp, data := alice.uploadBytes(bob, "bob.txt", []byte("for bob only"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	var up struct{ Message Message }
	decodeInto(t, data, &up)

	for _, m := range mallory.messages() {
		t.Errorf("mallory sees %+v", m)
	}
	mallory.mustFail("GET", up.Message.File.URL, nil, http.StatusNotFound, "not_found")
	for id := up.Message.File.ID - 2; id <= up.Message.File.ID+2; id++ {
		resp, data := mallory.do("GET", fmt.Sprintf("/api/files/%d", id), nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("mallory GET /api/files/%d: %d %s", id, resp.StatusCode, data)
		}
	}
	// Mallory's clean touches only Mallory's queue.
	mallory.mustDo("POST", "/api/clean", map[string]any{"upto": 1 << 40}, http.StatusOK)
	if got := bob.messages(); len(got) != 2 || got[0].ID != sent.ID {
		t.Errorf("after mallory's clean bob has %+v", got)
	}
	// Mallory cannot end their friendship, nor take Carol's request.
	mallory.mustFail("DELETE", "/api/friends/"+bob.username, nil, http.StatusNotFound, "no_such_request")
	mallory.mustFail("POST", "/api/friends/"+carol.username+"/accept", nil, http.StatusNotFound, "no_such_request")
	mallory.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "hi"}, http.StatusForbidden, "not_friends")
	var f struct{ Friends, Incoming []userJSON }
	alice.mustJSON("GET", "/api/friends", nil, http.StatusOK, &f)
	if len(f.Friends) != 1 || f.Friends[0].Username != bob.username || len(f.Incoming) != 1 {
		t.Errorf("alice's friends after mallory's attempts: %+v", f)
	}
	// Mallory's searches show names, never presence or messages.
	var users struct{ Users []map[string]any }
	mallory.mustJSON("GET", "/api/users?q=", nil, http.StatusOK, &users)
	for _, u := range users.Users {
		if _, ok := u["online"]; ok {
			t.Errorf("directory shows presence to a stranger: %v", u)
		}
	}
}

// TestSecurity_HostileInput sends SQL, HTML, control characters, invalid
// UTF-8 and huge lines where users type: bodies come back exactly as
// stored, names are refused, nothing is a 500.
func TestSecurity_HostileInput(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)

	bodies := []string{
		`'; DROP TABLE messages; --`,
		`" OR 1=1 --`,
		`<script>alert(document.cookie)</script>`,
		`<img src=x onerror=alert(1)>`,
		"nul \x00 inside",
		"\x00",
		"bell \a, escape \x1b[31m red, del \x7f",
		"\u202eRTL override\u202c and zero width \u200b",
		"line\r\nbreaks\tand tabs",
		"emoji 😀👩‍👩‍👧 and CJK 漢字",
		strings.Repeat("😀", 4000),
	}
	for _, body := range bodies {
		var out struct{ Message Message }
		alice.mustJSON("POST", "/api/messages", map[string]any{"to": bob.username, "body": body}, http.StatusCreated, &out)
		if out.Message.Body != body {
			t.Errorf("send answered body %q for %q", out.Message.Body, body)
		}
	}
	got := bob.messages()
	if len(got) != len(bodies) {
		t.Fatalf("bob got %d messages, want %d", len(got), len(bodies))
	}
	for i, m := range got {
		if m.Body != bodies[i] {
			t.Errorf("stored %q, got back %q", bodies[i], m.Body)
		}
	}
	// Invalid UTF-8 in raw JSON: decoded as U+FFFD, never a 500.
	resp, data := alice.do("POST", "/api/messages", []byte("{\"to\":\""+bob.username+"\",\"body\":\"bad \xff\xfe utf-8\"}"))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("invalid UTF-8 body: %d %s", resp.StatusCode, data)
	}

	// Usernames: anything but [a-z0-9_.-]{3,32} is refused, as sign-up and
	// as a path.
	names := []string{`a'; DROP TABLE users; --`, `<script>`, "nul\x00name", "ctl\x1bname", "bad\xffutf8", "Ｆｕｌｌｗｉｄｔｈ", "kelvin\u212a", strings.Repeat("a", 10000), "../../etc", "a b c"}
	for _, name := range names {
		resp, data := ts.anon().do("POST", "/api/signup", map[string]any{"username": name, "password": "correct horse battery"})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("sign-up as %q: %d %s", name, resp.StatusCode, data)
		}
		resp, data = alice.do("POST", "/api/friends/"+urlPathEscape(name)+"/request", nil)
		if resp.StatusCode >= 500 || resp.StatusCode < 400 {
			t.Errorf("friend request to %q: %d %s", name, resp.StatusCode, data)
		}
	}
	// Display names: HTML is allowed and returned as data (JSON escapes
	// <, > and &); control characters are refused.
	resp, data = ts.anon().do("POST", "/api/signup", map[string]any{"username": uniqueName("html"), "password": "correct horse battery", "display_name": "<b>bold</b> & co"})
	if resp.StatusCode != http.StatusCreated || strings.Contains(string(data), "<b>") {
		t.Errorf("HTML display name: %d %s", resp.StatusCode, data)
	}
	for _, dn := range []string{"nul\x00", "esc\x1b[0m", "\u202e"} {
		resp, data := ts.anon().do("POST", "/api/signup", map[string]any{"username": uniqueName("ctl"), "password": "correct horse battery", "display_name": dn})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("display name %q: %d %s", dn, resp.StatusCode, data)
		}
	}
	// Search with SQL and LIKE wildcards finds nothing and fails nothing.
	for _, q := range []string{`%`, `_`, `' OR '1'='1`, `\`, "\x00"} {
		var out struct{ Users []userJSON }
		alice.mustJSON("GET", "/api/users?q="+urlQueryEscape(q), nil, http.StatusOK, &out)
		if len(out.Users) != 0 {
			t.Errorf("search %q found %v", q, out.Users)
		}
	}

	// A 10 MB line: as a JSON body it is 413, as a header 431; the server
	// goes on serving.
	big := strings.Repeat("x", 10<<20)
	resp, data = alice.do("POST", "/api/messages", `{"to":"`+bob.username+`","body":"`+big+`"}`)
	checkError(t, resp, data, http.StatusRequestEntityTooLarge, "too_large")
	if code := rawHeaderLine(t, ts, "X-Big: "+big); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("10 MB header line answered %d", code)
	}
	if code := rawHeaderLine(t, ts, "X-Ctl: a\x00b"); code != http.StatusBadRequest {
		t.Errorf("header with NUL answered %d", code)
	}
	alice.send(bob, "still working")
	ts.checkInvariants()
}

// rawHeaderLine sends a GET with one extra raw header line and returns the
// status code of the answer.
func rawHeaderLine(t *testing.T, ts *testServer, line string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		io.WriteString(conn, "GET /api/health HTTP/1.1\r\nHost: x\r\n"+line+"\r\n\r\n")
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSecurity_Headers checks the headers API.md and the page promise on
// every kind of answer, and how uploaded files are served.
func TestSecurity_Headers(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)
	common := func(what string, resp *http.Response) {
		t.Helper()
		if v := resp.Header.Get("X-Content-Type-Options"); v != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", what, v)
		}
		if v := resp.Header.Get("Referrer-Policy"); v == "" || v == "unsafe-url" {
			t.Errorf("%s: Referrer-Policy %q", what, v)
		}
	}
	// The page: a CSP without inline script.
	for _, path := range []string{"/", "/static/app.js"} {
		resp, _ := ts.anon().do("GET", path, nil)
		common(path, resp)
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") ||
			!strings.Contains(csp, "object-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
	// API answers, errors included, are never cached.
	for _, c := range []struct {
		cl           *client
		method, path string
	}{
		{alice, "GET", "/api/me"}, {alice, "GET", "/api/poll?timeout=0"}, {ts.anon(), "GET", "/api/me"},
		{ts.anon(), "GET", "/api/health"}, {ts.anon(), "GET", "/api/nope"}, {ts.anon(), "POST", "/api/login"},
	} {
		resp, _ := c.cl.do(c.method, c.path, nil)
		common(c.path, resp)
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("%s %s (%d): Cache-Control %q", c.method, c.path, resp.StatusCode, cc)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, ct)
		}
	}
	// Login's cookie.
	resp, _ := ts.anon().do("POST", "/api/login", map[string]any{"username": alice.username, "password": alice.password})
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Errorf("session cookie %+v", cookie)
	}
	alice.login()

	// Files: the sniffed type, never the declared one; active content is an
	// attachment in a sandbox.
	files := []struct {
		name    string
		content []byte
		inline  bool
		ctype   string
	}{
		{"page.html", []byte("<!DOCTYPE html><html><script>alert(1)</script></html>"), false, "text/html"},
		{"pic.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), false, ""},
		{"pic.png", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...), true, "image/png"},
		{"fake.png", []byte("<html><script>alert(1)</script>"), false, "text/html"},
		{"run.exe", []byte("MZ\x90\x00\x03"), false, "application/octet-stream"},
		{"evil\"; filename=x.html", []byte("plain text"), false, "text/plain"},
	}
	for _, f := range files {
		resp, data := alice.uploadBytes(bob, f.name, f.content)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload %s: %d %s", f.name, resp.StatusCode, data)
		}
		var up struct{ Message Message }
		decodeInto(t, data, &up)
		resp, data = bob.do("GET", up.Message.File.URL, nil)
		if resp.StatusCode != http.StatusOK || string(data) != string(f.content) {
			t.Fatalf("download %s: %d", f.name, resp.StatusCode)
		}
		common(f.name, resp)
		ct, cd := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition")
		if f.ctype != "" && !strings.HasPrefix(ct, f.ctype) {
			t.Errorf("%s served as %q, want %s", f.name, ct, f.ctype)
		}
		if f.inline != strings.HasPrefix(cd, "inline") || (!f.inline && !strings.HasPrefix(cd, "attachment")) {
			t.Errorf("%s: Content-Disposition %q", f.name, cd)
		}
		if strings.Contains(cd, `x.html"`) && !strings.Contains(cd, `\"`) && !strings.Contains(cd, "*=") {
			t.Errorf("%s: file name not quoted in %q", f.name, cd)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", f.name, csp)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") && !strings.Contains(cc, "private") {
			t.Errorf("%s: Cache-Control %q", f.name, cc)
		}
	}
}

func urlPathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func urlQueryEscape(s string) string { return urlPathEscape(s) }
