package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// Extensions of the fixture in helpers_test.go.

// withGrace shortens the offline grace of presence (90 s in production), as
// -offline-grace does.
func withGrace(d time.Duration) func(*Config) {
	return func(c *Config) { c.OfflineGrace = d }
}

// noExemption is a Config option that removes the loopback exemption, so the
// rate limits apply to the test clients.
func noExemption(c *Config) { c.RateLimitExempt = nil }

// testClock is a settable clock for the store and the sessions.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func withClock(c *testClock) func(*App) {
	return func(a *App) { a.store.SetClock(c.now) }
}

// cheapHash is a valid argon2id PHC string for password made with tiny
// parameters: verify reads the parameters from the string, so logins of
// users made with it cost microseconds instead of the real KDF's tens of ms.
func cheapHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=64,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(key))
}

const testPassword = "correct horse battery"

var testPasswordHash = cheapHash(testPassword)

// user is newUser without the cost of the real KDF: the account is written
// through the store with a cheap hash, then logged in through the API.
func (ts *testServer) user(prefix string) *client {
	ts.t.Helper()
	c := &client{ts: ts, t: ts.t, username: uniqueName(prefix), password: testPassword}
	if _, err := ts.app.store.CreateUser(context.Background(), c.username, c.username, testPasswordHash); err != nil {
		ts.t.Fatalf("creating %s: %v", c.username, err)
	}
	c.login()
	return c
}

// account creates a user that is never logged in (directory entries).
func (ts *testServer) account(username, display string) {
	ts.t.Helper()
	if _, err := ts.app.store.CreateUser(context.Background(), username, display, testPasswordHash); err != nil {
		ts.t.Fatalf("creating %s: %v", username, err)
	}
}

// friends makes fresh users who are all friends with each other.
func (ts *testServer) friends(prefixes ...string) []*client {
	ts.t.Helper()
	cs := make([]*client, len(prefixes))
	for i, p := range prefixes {
		cs[i] = ts.user(p)
	}
	for i := range cs {
		for j := i + 1; j < len(cs); j++ {
			befriend(cs[i], cs[j])
		}
	}
	return cs
}

// as returns a copy of c that uses t for failures (for subtests).
func (c *client) as(t testing.TB) *client {
	c2 := *c
	c2.t = t
	return &c2
}

// doWith is do with a hook to change the request (headers, cookies) before
// it is sent.
func (c *client) doWith(method, path string, body any, edit func(*http.Request)) (*http.Response, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.ts.url(path), rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if edit != nil {
		edit(req)
	}
	return c.roundTrip(req)
}

// withCookie authenticates by cookie instead of the bearer token.
func (c *client) withCookie(origin string) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Del("Authorization")
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: c.token})
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
	}
}

// rawEvent is a poll event with the raw JSON kept for shape checks.
type rawEvent struct {
	Seq     int64
	Type    string
	At      string
	Message *Message
	User    map[string]any
	Raw     map[string]json.RawMessage
}

// pollRaw polls and returns the decoded events and the raw answer.
func (c *client) pollRaw(query string) (cursor int64, events []rawEvent, raw []byte) {
	c.t.Helper()
	raw = c.mustDo("GET", "/api/poll?"+query, nil, http.StatusOK)
	var out struct {
		Cursor *int64            `json:"cursor"`
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Cursor == nil || out.Events == nil {
		c.t.Fatalf("poll answer %s is not {cursor, events}: %v", raw, err)
	}
	var v any
	json.Unmarshal(raw, &v)
	if hasNull(v) {
		c.t.Fatalf("poll answer %s holds null", raw)
	}
	for _, e := range out.Events {
		var ev rawEvent
		if err := json.Unmarshal(e, &ev.Raw); err != nil {
			c.t.Fatal(err)
		}
		var typed struct {
			Seq     int64          `json:"seq"`
			Type    string         `json:"type"`
			At      string         `json:"at"`
			Message *Message       `json:"message"`
			User    map[string]any `json:"user"`
		}
		if err := json.Unmarshal(e, &typed); err != nil {
			c.t.Fatalf("event %s: %v", e, err)
		}
		ev.Seq, ev.Type, ev.At, ev.Message, ev.User = typed.Seq, typed.Type, typed.At, typed.Message, typed.User
		events = append(events, ev)
	}
	return *out.Cursor, events, raw
}

// drain reads c's whole queue from cursor (timeout 0) and returns every
// event and the last cursor.
func (c *client) drain(cursor int64) ([]rawEvent, int64) {
	c.t.Helper()
	var all []rawEvent
	for {
		next, evs, _ := c.pollRaw(fmt.Sprintf("cursor=%d&timeout=0", cursor))
		if len(evs) == 0 {
			return all, cursor
		}
		all = append(all, evs...)
		cursor = next
	}
}

// eventsOfType filters events by type.
func eventsOfType(evs []rawEvent, typ string) []rawEvent {
	var out []rawEvent
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent polls from cursor until an event of type typ about user (for
// notices) arrives, and returns it with the cursor after it.
func (c *client) waitEvent(cursor int64, typ, about string) (rawEvent, int64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		next, evs, _ := c.pollRaw(fmt.Sprintf("cursor=%d&timeout=2", cursor))
		for _, e := range evs {
			if e.Type == typ && (about == "" || e.User["username"] == about) {
				return e, e.Seq
			}
		}
		cursor = next
	}
	c.t.Fatalf("%s: no %s event about %q within 10s", c.username, typ, about)
	return rawEvent{}, 0
}

// clean cleans c's queue up to upto and returns removed.
func (c *client) clean(upto int64) int64 {
	c.t.Helper()
	var out struct {
		Removed *int64 `json:"removed"`
	}
	c.mustJSON("POST", "/api/clean", map[string]any{"upto": upto}, http.StatusOK, &out)
	if out.Removed == nil {
		c.t.Fatal("clean answered without removed")
	}
	return *out.Removed
}

// upload sends a multipart upload; fields are written in order, "file" as
// the file part with content.
func (c *client) upload(fields [][2]string, fileName, declaredType string, content []byte) (*http.Response, []byte) {
	c.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		if f[0] == "file" {
			h := make(map[string][]string)
			h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name="file"; filename=%q`, fileName)}
			h["Content-Type"] = []string{declaredType}
			w, err := mw.CreatePart(h)
			if err != nil {
				c.t.Fatal(err)
			}
			w.Write(content)
			continue
		}
		mw.WriteField(f[0], f[1])
	}
	mw.Close()
	req, err := http.NewRequest("POST", c.ts.url("/api/files"), &buf)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.roundTrip(req)
}

// apiTimeRE is API.md's time format: RFC 3339, UTC, milliseconds.
var apiTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func checkTime(t testing.TB, what, s string) {
	t.Helper()
	if !apiTimeRE.MatchString(s) {
		t.Fatalf("%s %q is not RFC 3339 UTC with milliseconds", what, s)
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		t.Fatalf("%s %q: %v", what, s, err)
	}
}

// checkJSON fails unless resp is status with Content-Type application/json
// and a body that is JSON with no null anywhere.
func checkJSON(t testing.TB, resp *http.Response, data []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", resp.Request.Method, resp.Request.URL.Path, ct)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s %s: body %s: %v", resp.Request.Method, resp.Request.URL.Path, data, err)
	}
	if hasNull(v) {
		t.Fatalf("%s %s: body %s holds null", resp.Request.Method, resp.Request.URL.Path, data)
	}
}

func hasNull(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case []any:
		for _, e := range x {
			if hasNull(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasNull(e) {
				return true
			}
		}
	}
	return false
}

// storedFiles counts the files ts's store holds.
func (ts *testServer) storedFiles() int64 {
	ts.t.Helper()
	st, err := ts.app.store.Stats(context.Background())
	if err != nil {
		ts.t.Fatal(err)
	}
	return st.Files
}
