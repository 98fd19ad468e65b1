package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// testServer is the real App behind a real HTTP server, on a fresh database
// of the current engine pass (engine_test.go).
type testServer struct {
	t      testing.TB
	cfg    Config
	app    *App
	srv    *httptest.Server
	closed bool
	// hook, if set, runs on each new App before it serves (fixture_test.go).
	hook func(*App)
}

// quietLogger keeps test output for failures that matter.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

var loopbackOnly = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// newTestServer starts a server; by default loopback is exempt from rate
// limits, as most tests are not about them.
func newTestServer(t testing.TB, opts ...func(*Config)) *testServer {
	t.Helper()
	return newTestServerHooked(t, nil, opts...)
}

// newTestServerHooked is newTestServer with hook run on every App it starts
// (restarts included) before the App serves a request: the place to shorten
// the presence grace or install a test clock.
func newTestServerHooked(t testing.TB, hook func(*App), opts ...func(*Config)) *testServer {
	t.Helper()
	cfg := Config{
		DBPath:          engineDB(t),
		MaxFileSize:     defaultMaxFileSize,
		MaxQueue:        defaultMaxQueue,
		RateLimitExempt: loopbackOnly,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ts := &testServer{t: t, cfg: cfg, hook: hook}
	ts.start()
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	app, err := newApp(ts.cfg, quietLogger())
	if err != nil {
		ts.t.Fatalf("newApp: %v", err)
	}
	if ts.hook != nil {
		ts.hook(app)
	}
	ts.app = app
	// The listener is wrapped as main.go's is, so that polls park as they
	// do in production.
	ts.srv = httptest.NewUnstartedServer(app.Handler())
	ts.srv.Listener = app.ParkingListener(ts.srv.Listener)
	ts.srv.Start()
	ts.closed = false
}

func (ts *testServer) close() {
	if ts.closed {
		return
	}
	ts.closed = true
	ts.app.BeginShutdown()
	ts.srv.Close()
	if err := ts.app.Close(); err != nil {
		ts.t.Errorf("closing app: %v", err)
	}
}

// restart stops the server and opens the same database file again, as a
// process restart would.
func (ts *testServer) restart() {
	ts.t.Helper()
	ts.close()
	ts.start()
}

func (ts *testServer) url(path string) string { return ts.srv.URL + path }

// client is one user's API client: it authenticates with a bearer token.
type client struct {
	ts       *testServer
	t        testing.TB
	username string
	password string
	token    string
}

var userCounter atomic.Int64

// uniqueName returns a fresh valid username with the given prefix.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, userCounter.Add(1))
}

// anon is a client with no session.
func (ts *testServer) anon() *client { return &client{ts: ts, t: ts.t} }

// newUser signs up and logs in a fresh user.
func (ts *testServer) newUser(prefix string) *client {
	ts.t.Helper()
	c := &client{ts: ts, t: ts.t, username: uniqueName(prefix), password: "correct horse battery"}
	c.mustDo("POST", "/api/signup", map[string]any{"username": c.username, "password": c.password}, http.StatusCreated)
	c.login()
	return c
}

// login logs c in again, replacing its previous session.
func (c *client) login() {
	c.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	c.token = ""
	c.mustJSON("POST", "/api/login", map[string]any{"username": c.username, "password": c.password}, http.StatusOK, &out)
	if out.Token == "" {
		c.t.Fatalf("login of %s returned no token", c.username)
	}
	c.token = out.Token
}

// do sends a request with a JSON body (nil for none) and returns the
// response with its body read.
func (c *client) do(method, path string, body any) (*http.Response, []byte) {
	c.t.Helper()
	return c.doWith(method, path, body, nil)
}

func (c *client) roundTrip(req *http.Request) (*http.Response, []byte) {
	c.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL.Path, err)
	}
	return resp, data
}

// mustDo fails the test unless the answer has status want.
func (c *client) mustDo(method, path string, body any, want int) []byte {
	c.t.Helper()
	resp, data := c.do(method, path, body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, want, data)
	}
	return data
}

// mustJSON is mustDo that decodes the answer into out.
func (c *client) mustJSON(method, path string, body any, want int, out any) {
	c.t.Helper()
	data := c.mustDo(method, path, body, want)
	if err := json.Unmarshal(data, out); err != nil {
		c.t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
	}
}

// mustFail expects an error answer with the given status and code, in
// API.md's error shape.
func (c *client) mustFail(method, path string, body any, status int, code string) {
	c.t.Helper()
	resp, data := c.do(method, path, body)
	checkError(c.t, resp, data, status, code)
}

func checkError(t testing.TB, resp *http.Response, data []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, data)
	}
	var e errorBody
	if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s %s: body %s is not the API's error shape", resp.Request.Method, resp.Request.URL.Path, data)
	}
	if e.Error.Code != code {
		t.Fatalf("%s %s: code %q, want %q (%s)", resp.Request.Method, resp.Request.URL.Path, e.Error.Code, code, e.Error.Message)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", resp.Request.Method, resp.Request.URL.Path, ct)
	}
}

// befriend makes a and b friends through the API.
func befriend(a, b *client) {
	a.t.Helper()
	a.mustDo("POST", "/api/friends/"+b.username+"/request", nil, http.StatusCreated)
	b.mustDo("POST", "/api/friends/"+a.username+"/accept", nil, http.StatusOK)
}

type pollResult struct {
	Cursor int64 `json:"cursor"`
	Events []struct {
		Seq     int64           `json:"seq"`
		Type    string          `json:"type"`
		At      string          `json:"at"`
		Message *Message        `json:"message"`
		User    *userJSON       `json:"user"`
		Raw     json.RawMessage `json:"-"`
	} `json:"events"`
}

// poll polls once with the given cursor and timeout (seconds).
func (c *client) poll(cursor int64, timeout int) pollResult {
	c.t.Helper()
	var out pollResult
	c.mustJSON("GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=%d", cursor, timeout), nil, http.StatusOK, &out)
	return out
}

// messages polls from cursor 0 (timeout 0) until the queue is read, and
// returns its message events.
func (c *client) messages() []Message {
	c.t.Helper()
	var out []Message
	var cursor int64
	for {
		p := c.poll(cursor, 0)
		if len(p.Events) == 0 {
			return out
		}
		for _, e := range p.Events {
			if e.Type == "message" {
				out = append(out, *e.Message)
			}
		}
		cursor = p.Cursor
	}
}

// send sends body to to and expects 201.
func (c *client) send(to *client, body string) Message {
	c.t.Helper()
	var out struct {
		Message Message `json:"message"`
	}
	c.mustJSON("POST", "/api/messages", map[string]any{"to": to.username, "body": body}, http.StatusCreated, &out)
	return out.Message
}

// eventually retries f until it returns true or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sqlite returns the server's SQLite engine, for tests of SQLite's own
// machinery (its writer, WAL and files folder); on another engine the test
// is skipped.
func (ts *testServer) sqlite() *sqliteStore {
	ts.t.Helper()
	s, ok := ts.app.store.(*sqliteStore)
	if !ok {
		ts.t.Skip("a test of the SQLite engine's own machinery")
	}
	return s
}

// checkInvariants checks, straight from the database, what must hold in
// every committed state (invariants_test.go).
func (ts *testServer) checkInvariants() {
	ts.t.Helper()
	if s, ok := ts.app.store.(*sqliteStore); ok {
		checkDBInvariants(ts.t, s.read)
	}
}
