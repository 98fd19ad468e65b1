package main

import (
	"bytes"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// admin runs "webim ARGS..." against ts's database, as a shell would while
// the server runs, and fails the test if it fails.
func (ts *testServer) admin(stdin string, args ...string) string {
	ts.t.Helper()
	args = withDB(args, ts.cfg.DBPath)
	out, stderr, err := runCLI(ts.t.(*testing.T), stdin, args...)
	if err != nil {
		ts.t.Fatalf("webim %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// withDB puts -db path after the command's name ("stats", "user add").
func withDB(args []string, path string) []string {
	n := 1
	if args[0] == "user" {
		n = 2
	}
	out := append([]string{}, args[:n]...)
	out = append(out, "-db", path)
	return append(out, args[n:]...)
}

// adminFails runs an admin command that must fail, and returns its error.
func (ts *testServer) adminFails(stdin string, args ...string) error {
	ts.t.Helper()
	args = withDB(args, ts.cfg.DBPath)
	_, _, err := runCLI(ts.t.(*testing.T), stdin, args...)
	if err == nil || exitCode(err) == 0 {
		ts.t.Fatalf("webim %s succeeded", strings.Join(args, " "))
	}
	return err
}

// userFromShell is a client for an account made with "webim user add".
func (ts *testServer) userFromShell(name, password string) *client {
	ts.t.Helper()
	ts.admin(password+"\n", "user", "add", name)
	c := &client{ts: ts, t: ts.t, username: name, password: password}
	c.login()
	return c
}

// waitUnauthorized waits until c's token is refused, as it must be within
// adminCheckEvery of an admin command.
func (c *client) waitUnauthorized(within time.Duration) {
	c.t.Helper()
	eventually(c.t, within, c.username+"'s token to stop working", func() bool {
		resp, _ := c.do("GET", "/api/me", nil)
		return resp.StatusCode == http.StatusUnauthorized
	})
}

func TestAdmin_AddListDisableEnablePasswd(t *testing.T) {
	ts := newTestServer(t)
	if out := ts.admin("first password\n", "user", "add", "Alice", "-display", "Alice A."); !strings.Contains(out, "added user alice") {
		t.Fatalf("user add said %q", out)
	}
	alice := &client{ts: ts, t: t, username: "alice", password: "first password"}
	alice.login()
	var me struct {
		User userJSON `json:"user"`
	}
	alice.mustJSON("GET", "/api/me", nil, http.StatusOK, &me)
	if me.User.DisplayName != "Alice A." {
		t.Fatalf("display name %q", me.User.DisplayName)
	}

	// A name that is taken, a weak or missing password: clear errors.
	for _, c := range []struct{ stdin, want string }{
		{"another password\n", "exists already"},
	} {
		if err := ts.adminFails(c.stdin, "user", "add", "alice"); !strings.Contains(err.Error(), c.want) {
			t.Errorf("user add alice: %v", err)
		}
	}
	if err := ts.adminFails("short\n", "user", "add", "bob"); !strings.Contains(err.Error(), "8 to 1024") {
		t.Errorf("weak password: %v", err)
	}
	if err := ts.adminFails("", "user", "add", "bob"); !strings.Contains(err.Error(), "no password") {
		t.Errorf("empty stdin: %v", err)
	}
	if err := ts.adminFails("x\n", "user", "add", "no spaces allowed"); !strings.Contains(err.Error(), "a username is") {
		t.Errorf("bad name: %v", err)
	}

	list := ts.admin("", "user", "list")
	if !strings.Contains(list, "alice") || !strings.Contains(list, "Alice A.") || !strings.Contains(list, "active") || strings.Contains(list, "bob") {
		t.Fatalf("user list:\n%s", list)
	}

	// Disable: an open poll ends with 401, the token is dead, and login is
	// refused with account_disabled.
	polled := make(chan int, 1)
	go func() {
		resp, _ := alice.do("GET", "/api/poll?cursor=0&timeout=30", nil)
		polled <- resp.StatusCode
	}()
	eventually(t, 5*time.Second, "alice's poll to wait", func() bool { return ts.app.notifier.waiting() == 1 })
	ts.admin("", "user", "disable", "alice")
	select {
	case status := <-polled:
		// As after a logout: the open poll answers (empty), the next is refused.
		if status != http.StatusOK && status != http.StatusUnauthorized {
			t.Fatalf("alice's open poll answered %d after disable", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice's open poll did not end after disable")
	}
	alice.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "unauthorized")
	alice.token = ""
	alice.mustFail("POST", "/api/login", map[string]any{"username": "alice", "password": "first password"}, http.StatusForbidden, "account_disabled")
	if list := ts.admin("", "user", "list"); !strings.Contains(list, "disabled") {
		t.Fatalf("user list after disable:\n%s", list)
	}
	if out := ts.admin("", "user", "disable", "alice"); !strings.Contains(out, "already") {
		t.Errorf("second disable said %q", out)
	}

	// Enable: login works again.
	ts.admin("", "user", "enable", "alice")
	alice.login()

	// Passwd: the session ends at once, the old password is refused.
	ts.admin("second password\n", "user", "passwd", "alice")
	alice.waitUnauthorized(5 * time.Second)
	alice.token = ""
	alice.mustFail("POST", "/api/login", map[string]any{"username": "alice", "password": "first password"}, http.StatusUnauthorized, "invalid_credentials")
	alice.password = "second password"
	alice.login()

	for _, sub := range []string{"passwd", "disable", "enable", "delete"} {
		if err := ts.adminFails("some password\n", "user", sub, "nobody"); !strings.Contains(err.Error(), "there is no user nobody") {
			t.Errorf("user %s nobody: %v", sub, err)
		}
	}
}

// uploadTo sends a file message from c to to.
func (c *client) uploadTo(to *client, name, content string) Message {
	c.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("to", to.username)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write([]byte(content))
	mw.Close()
	req, _ := http.NewRequest("POST", c.ts.url("/api/files"), &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, data := c.roundTrip(req)
	if resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	var out struct {
		Message Message `json:"message"`
	}
	if err := decodeJSONBytes(data, &out); err != nil {
		c.t.Fatal(err)
	}
	return out.Message
}

func TestAdmin_DeleteUser(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.userFromShell("alice", "alice password")
	bob := ts.cheapUser("bob")
	carol := ts.cheapUser("carol")
	befriend(alice, bob)
	carol.mustDo("POST", "/api/friends/alice/request", nil, http.StatusCreated)
	bob.mustDo("POST", "/api/blocks/"+carol.username, nil, http.StatusOK)
	alice.mustDo("POST", "/api/blocks/"+carol.username, nil, http.StatusOK)

	// Bob sends a file and cleans his copy: only alice's queue holds it.
	gone := bob.uploadTo(alice, "gone.txt", "only alice holds this")
	p := bob.poll(0, 0)
	bob.mustDo("POST", "/api/clean", map[string]any{"upto": p.Cursor}, http.StatusOK)
	// These stay in both queues.
	kept := alice.uploadTo(bob, "kept.txt", "bob keeps this")
	alice.send(bob, "hello bob")
	if n := ts.storedFiles(); n != 2 {
		t.Fatalf("%d stored files, want 2", n)
	}
	if mine := alice.messages(); len(mine) != 3 || mine[0].ID != gone.ID {
		t.Fatalf("alice's queue: %+v", mine)
	}

	out := ts.admin("", "user", "delete", "alice")
	if !strings.Contains(out, "deleted user alice (3 queued messages, 1 files)") {
		t.Fatalf("user delete said %q", out)
	}
	alice.waitUnauthorized(5 * time.Second)
	alice.token = ""
	alice.mustFail("POST", "/api/login", map[string]any{"username": "alice", "password": "alice password"}, http.StatusUnauthorized, "invalid_credentials")

	// The file only alice's queue held is gone, from the table and the disk;
	// what bob still holds stays readable.
	if n := ts.storedFiles(); n != 1 {
		t.Fatalf("%d stored files after delete, want 1", n)
	}
	got := bob.messages()
	if len(got) != 2 || got[0].ID != kept.ID || got[0].From != "alice" {
		t.Fatalf("bob's queue after alice's deletion: %+v", got)
	}
	bob.mustDo("GET", kept.File.URL, nil, http.StatusOK)
	var friends struct {
		Friends []userJSON `json:"friends"`
	}
	bob.mustJSON("GET", "/api/friends", nil, http.StatusOK, &friends)
	if len(friends.Friends) != 0 {
		t.Fatalf("bob's friends after alice's deletion: %+v", friends)
	}
	// The server's gauge follows: bob's 2 messages remain.
	eventually(t, 5*time.Second, "the queued gauge to drop", func() bool { return ts.app.store.QueuedMessages() == 2 })
	// No row names alice any more.
	for _, q := range []string{
		`SELECT count(*) FROM users WHERE username = 'alice'`,
		`SELECT count(*) FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE u.id IS NULL`,
		`SELECT count(*) FROM friendships f LEFT JOIN users u ON u.id = f.user_id OR u.id = f.friend_id WHERE u.id IS NULL`,
		`SELECT count(*) FROM friend_requests`,
		`SELECT count(*) FROM blocks b JOIN users u ON u.id = b.blocker_id WHERE u.username <> '` + bob.username + `'`,
		`SELECT count(*) FROM queue q LEFT JOIN users u ON u.id = q.user_id WHERE u.id IS NULL`,
		`SELECT count(*) FROM messages WHERE refs <= 0`,
		`SELECT count(*) FROM files`,
	} {
		var n int
		if err := ts.sqlite().read.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		want := 0
		if strings.Contains(q, "FROM files") {
			want = 1
		}
		if n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
	// The name is free again.
	ts.admin("new alice password\n", "user", "add", "alice")
}

func TestAdmin_Stats(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.cheapUser("alice"), ts.cheapUser("bob")
	befriend(alice, bob)
	alice.send(bob, "one")
	bob.uploadTo(alice, "f.txt", "12345")

	out := ts.admin("", "stats")
	for _, want := range []string{"users", "2 (0 disabled)", "online now", "unknown", "queued messages  4", "database", "files            1, 5 B"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats without -url lacks %q:\n%s", want, out)
		}
	}
	// Presence comes from the running server.
	// The poll must end before the test does, or the server closes under it.
	cursor := bob.poll(0, 0).Cursor
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		bob.do("GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=2", cursor), nil)
	}()
	eventually(t, 5*time.Second, "bob to be online", func() bool { return ts.app.presence.Online() >= 1 })
	out = ts.admin("", "stats", "-url", ts.srv.URL)
	if !strings.Contains(out, fmt.Sprintf("online now       %d", ts.app.presence.Online())) {
		t.Errorf("stats -url:\n%s", out)
	}
	<-polled
	if err := ts.adminFails("", "stats", "-url", "http://127.0.0.1:1"); !strings.Contains(err.Error(), "asking") {
		t.Errorf("stats with an unreachable -url: %v", err)
	}
}

func TestAdmin_ErrorsAndHelp(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing-here.db")
	for _, args := range [][]string{
		{"user"},
		{"user", "frobnicate"},
		{"user", "add"},
		{"user", "add", "a1b", "c2d"},
		{"user", "list", "extra"},
		{"user", "list", "-db", missing},
		{"user", "disable", "-db", missing, "alice"},
		{"stats", "-db", missing},
		{"stats", "extra"},
		{"user", "add", "-nosuchflag", "alice"},
		{"nosuchcommand"},
	} {
		_, _, err := runCLI(t, "", args...)
		if err == nil || exitCode(err) == 0 {
			t.Errorf("webim %s: %v, want a failure", strings.Join(args, " "), err)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed command created %s", missing)
	}
	for _, args := range [][]string{
		{"user", "-h"}, {"user", "add", "-h"}, {"user", "list", "-h"}, {"user", "passwd", "-h"},
		{"user", "disable", "-h"}, {"user", "enable", "-h"}, {"user", "delete", "-h"}, {"stats", "-h"},
	} {
		_, stderr, err := runCLI(t, "", args...)
		if !errors.Is(err, errHelpShown) || exitCode(err) != 0 || !strings.Contains(stderr, "Usage: webim "+args[0]) {
			t.Errorf("webim %s: %v, help %q", strings.Join(args, " "), err, stderr)
		}
	}
	// user add may start a fresh install; WEBIM_DB is honoured.
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	var out bytes.Buffer
	err := run(t.Context(), []string{"user", "add", "admin"}, func(k string) string {
		if k == "WEBIM_DB" {
			return fresh
		}
		return ""
	}, strings.NewReader("admin password\n"), &out, &bytes.Buffer{}, nil)
	if err != nil || !strings.Contains(out.String(), "added user admin") {
		t.Fatalf("user add on a fresh database: %v %q", err, out.String())
	}
	list, _, err := runCLI(t, "", "user", "list", "-db", fresh)
	if err != nil || !strings.Contains(list, "admin") {
		t.Fatalf("list of the fresh database: %v %q", err, list)
	}
}

func TestSignup_Closed(t *testing.T) {
	closed := newTestServer(t, func(c *Config) { c.SignupClosed = true })
	anon := closed.anon()
	anon.mustFail("POST", "/api/signup", map[string]any{"username": "someone", "password": "long enough password"}, http.StatusForbidden, "signup_closed")
	var cfg struct {
		Signup string `json:"signup"`
	}
	anon.mustJSON("GET", "/api/config", nil, http.StatusOK, &cfg)
	if cfg.Signup != "closed" {
		t.Fatalf("/api/config says signup %q", cfg.Signup)
	}
	// Accounts still come from the shell.
	closed.userFromShell("admin", "admin password")

	open := newTestServer(t)
	open.anon().mustJSON("GET", "/api/config", nil, http.StatusOK, &cfg)
	if cfg.Signup != "open" {
		t.Fatalf("/api/config says signup %q", cfg.Signup)
	}
	c, err := parseConfig([]string{"-signup", "closed"}, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil || !c.SignupClosed {
		t.Fatalf("-signup closed: %+v %v", c, err)
	}
	c, err = parseConfig(nil, func(k string) string { return map[string]string{"WEBIM_SIGNUP": "closed"}[k] }, &bytes.Buffer{})
	if err != nil || !c.SignupClosed {
		t.Fatalf("WEBIM_SIGNUP=closed: %+v %v", c, err)
	}
}
