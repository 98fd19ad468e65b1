package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"webim/internal/pgtest"
)

// webim migrate: a SQLite deployment made through the real server, copied
// into Postgres and served from there, must look the same to its clients.

// serverAt starts the real App on db (a SQLite path or a postgres:// URL),
// whatever the engine pass: these tests are about moving between engines.
func serverAt(t *testing.T, db string) *testServer {
	t.Helper()
	ts := &testServer{t: t, cfg: Config{
		DBPath:          db,
		MaxFileSize:     defaultMaxFileSize,
		MaxQueue:        defaultMaxQueue,
		RateLimitExempt: loopbackOnly,
	}}
	ts.start()
	t.Cleanup(ts.close)
	return ts
}

// queueView is what a client sees of its queue: every event from a cursor,
// as raw JSON, by seq.
type queueView struct {
	seqs   []int64
	events map[int64]string
}

func viewQueue(c *client, cursor int64) queueView {
	c.t.Helper()
	v := queueView{events: map[int64]string{}}
	for {
		next, _, raw := c.pollRaw(fmt.Sprintf("cursor=%d&timeout=0", cursor))
		var out struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatal(err)
		}
		if len(out.Events) == 0 {
			return v
		}
		for _, e := range out.Events {
			var head struct {
				Seq int64 `json:"seq"`
			}
			json.Unmarshal(e, &head)
			v.seqs = append(v.seqs, head.Seq)
			v.events[head.Seq] = string(e)
		}
		cursor = next
	}
}

func (v queueView) last() int64 {
	if len(v.seqs) == 0 {
		return 0
	}
	return v.seqs[len(v.seqs)-1]
}

// sameUpTo fails unless after holds exactly before's events (same seqs,
// same JSON) and, beyond before's last seq, only presence notices: the new
// server sees its users come online, which their friends are told.
func sameUpTo(t *testing.T, who string, before, after queueView, upto int64) {
	t.Helper()
	var kept []int64
	for _, s := range after.seqs {
		if s <= upto {
			kept = append(kept, s)
			continue
		}
		if !strings.Contains(after.events[s], `"type":"presence"`) {
			t.Errorf("%s: new event %d after the migration: %s", who, s, after.events[s])
		}
	}
	if !slices.Equal(kept, before.seqs) {
		t.Fatalf("%s: seqs %v after the migration, %v before", who, kept, before.seqs)
	}
	for _, s := range kept {
		if after.events[s] != before.events[s] {
			t.Errorf("%s: event %d changed:\n before %s\n after  %s", who, s, before.events[s], after.events[s])
		}
	}
}

func sendWithID(c *client, to *client, body, cid string, want int) Message {
	c.t.Helper()
	var out struct {
		Message Message `json:"message"`
	}
	c.mustJSON("POST", "/api/messages", map[string]any{"to": to.username, "body": body, "client_msg_id": cid}, want, &out)
	return out.Message
}

func download(c *client, url string) []byte {
	c.t.Helper()
	return c.mustDo("GET", url, nil, http.StatusOK)
}

// cursorRow is a queue's state as each engine stores it.
type cursorRow struct{ last, acked, queued int64 }

func TestMigrate_SQLiteDeploymentToPostgres(t *testing.T) {
	if engine != "sqlite" {
		t.Skip("moves between engines; runs once")
	}
	dbPath := filepath.Join(t.TempDir(), "webim.db")
	src := serverAt(t, dbPath)

	alice, bob, carol, dave, erin := src.newUser("alice"), src.newUser("bob"), src.newUser("carol"), src.newUser("dave"), src.newUser("erin")
	users := []*client{alice, bob, carol, dave, erin}
	befriend(alice, bob)
	befriend(alice, carol)
	befriend(carol, erin)
	dave.mustDo("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusCreated)
	carol.mustDo("POST", "/api/blocks/"+dave.username, nil, http.StatusOK)

	alice.send(bob, "hello bob")
	withID := sendWithID(alice, bob, "sent once", "cid-1", http.StatusCreated)
	alice.send(bob, "third")
	// More than one chunk of the Postgres engine, and not a multiple of it.
	fileBytes := make([]byte, pgChunkSize+12345)
	rand.Read(fileBytes)
	resp, data := bob.upload([][2]string{{"to", alice.username}, {"client_msg_id", "file-1"}, {"file", ""}}, "photo.bin", "application/octet-stream", fileBytes)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	var up struct {
		Message Message `json:"message"`
	}
	json.Unmarshal(data, &up)
	alice.send(carol, "hi carol")
	// A group with a message, a group file and read markers (issue 14).
	group := alice.createGroup("Moving", bob, carol)
	groupMsg := bob.sendGroup(group.ID, "in the group").Message
	carol.mustDo("POST", "/api/read", map[string]any{"group": group.ID, "upto": groupMsg.ID}, http.StatusNoContent)
	bob.mustDo("POST", "/api/read", map[string]any{"with": alice.username, "upto": withID.ID}, http.StatusNoContent)

	// bob cleans part of his queue; carol and erin clean all of theirs, and
	// the newest message goes with it: its id must not come back.
	bobFirst := viewQueue(bob, 0)
	bob.clean(bobFirst.seqs[0])
	gone := erin.send(carol, "the newest message, cleaned by both")
	for _, c := range []*client{carol, erin} {
		c.clean(viewQueue(c, 0).last() + 1000)
	}
	// A replaced session: its token must still be told from an unknown one.
	oldAlice := alice.token
	alice.login()

	// Polls make their users online and tell friends so, in the background:
	// read the queues until two reads agree.
	before := map[string]queueView{}
	eventually(t, 10*time.Second, "the queues to settle", func() bool {
		stable := true
		for _, c := range users {
			v := viewQueue(c, 0)
			if prev, ok := before[c.username]; !ok || !slices.Equal(prev.seqs, v.seqs) {
				stable = false
			}
			before[c.username] = v
		}
		if !stable {
			time.Sleep(100 * time.Millisecond)
		}
		return stable
	})
	// Each client's own cursor: part way into its queue.
	cursors := map[string]int64{}
	fromCursor := map[string]queueView{}
	for _, c := range users {
		v := before[c.username]
		if len(v.seqs) > 0 {
			cursors[c.username] = v.seqs[len(v.seqs)/2]
		}
		fromCursor[c.username] = viewQueue(c, cursors[c.username])
	}
	src.close()

	sdb, err := sql.Open("sqlite", dsn(dbPath, true))
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	srcCursors := map[string]cursorRow{}
	for _, c := range users {
		var r cursorRow
		if err := sdb.QueryRow(`SELECT max(c.last_seq, coalesce((SELECT max(seq) FROM queue WHERE user_id = c.user_id), 0)), c.acked_seq,
			(SELECT count(*) FROM queue WHERE user_id = c.user_id AND kind = 1)
			FROM cursors c JOIN users u ON u.id = c.user_id WHERE u.username = ?`, c.username).Scan(&r.last, &r.acked, &r.queued); err != nil {
			t.Fatal(err)
		}
		srcCursors[c.username] = r
	}
	if srcCursors[carol.username].queued != 0 || srcCursors[carol.username].last == 0 {
		t.Fatalf("carol's queue should be empty with seqs handed out: %+v", srcCursors[carol.username])
	}

	url := pgtest.NewDatabase(t)
	stdout, stderr, err := runCLI(t, "", "migrate", "-from", dbPath, "-to", url)
	if err != nil {
		t.Fatalf("migrate: %v\n%s%s", err, stdout, stderr)
	}
	for _, table := range []string{"users", "sessions", "friendships", "friend_requests", "blocks", "groups", "group_members", "read_markers", "blobs", "blob_chunks", "files", "messages", "queue", "cursors"} {
		if !regexp.MustCompile(`(?m)^\s*` + table + `\s+\d+\s+\d+\s+ok\s*$`).MatchString(stdout) {
			t.Errorf("migrate's report has no ok line for %s:\n%s", table, stdout)
		}
	}
	if strings.Contains(stdout, "$argon2") {
		t.Errorf("migrate printed a password hash:\n%s", stdout)
	}
	t.Logf("migrate:\n%s", stdout)

	// The cursors as the Postgres engine keeps them, before any node runs.
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, c := range users {
		var r cursorRow
		if err := conn.QueryRow(context.Background(), `SELECT c.last_seq, c.acked_seq, c.queued FROM cursors c JOIN users u ON u.id = c.user_id
			WHERE u.username = $1`, c.username).Scan(&r.last, &r.acked, &r.queued); err != nil {
			t.Fatal(err)
		}
		if r != srcCursors[c.username] {
			t.Errorf("%s: cursor %+v on Postgres, %+v on SQLite", c.username, r, srcCursors[c.username])
		}
	}

	// A second migrate finds the copy and refuses, changing nothing.
	stdout2, stderr2, err := runCLI(t, "", "migrate", "-from", dbPath, "-to", url)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second migrate: %v\n%s%s", err, stdout2, stderr2)
	}

	dst := serverAt(t, url)
	for _, c := range users {
		c.ts = dst
	}
	old := &client{ts: dst, t: t, username: alice.username, token: oldAlice}
	old.mustFail("GET", "/api/me", nil, http.StatusUnauthorized, "session_replaced")
	for _, c := range users {
		c.mustDo("GET", "/api/me", nil, http.StatusOK)
	}
	for _, c := range users {
		sameUpTo(t, c.username+" from 0", before[c.username], viewQueue(c, 0), before[c.username].last())
		sameUpTo(t, c.username+" from its cursor", fromCursor[c.username], viewQueue(c, cursors[c.username]), before[c.username].last())
	}

	// The file, to both ends, byte for byte.
	for _, c := range []*client{alice, bob} {
		if got := download(c, up.Message.File.URL); !bytes.Equal(got, fileBytes) {
			t.Fatalf("%s downloaded %d bytes, want the %d uploaded", c.username, len(got), len(fileBytes))
		}
	}
	carol.mustFail("GET", up.Message.File.URL, nil, http.StatusNotFound, "not_found")

	// Relations.
	var fr struct {
		Friends, Incoming, Outgoing []userJSON
	}
	alice.mustJSON("GET", "/api/friends", nil, http.StatusOK, &fr)
	names := func(us []userJSON) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.Username)
		}
		sort.Strings(out)
		return out
	}
	if want := []string{bob.username, carol.username}; !slices.Equal(names(fr.Friends), want) {
		t.Errorf("alice's friends %v, want %v", names(fr.Friends), want)
	}
	if want := []string{dave.username}; !slices.Equal(names(fr.Incoming), want) {
		t.Errorf("alice's incoming %v, want %v", names(fr.Incoming), want)
	}
	var bl struct{ Blocked []userJSON }
	carol.mustJSON("GET", "/api/blocks", nil, http.StatusOK, &bl)
	if want := []string{dave.username}; !slices.Equal(names(bl.Blocked), want) {
		t.Errorf("carol's blocks %v, want %v", names(bl.Blocked), want)
	}
	dave.mustFail("POST", "/api/messages", map[string]any{"to": carol.username, "body": "x"}, http.StatusForbidden, "blocked")

	// Idempotency keys: the retry of a copied send is answered with it.
	if again := sendWithID(alice, bob, "sent once", "cid-1", http.StatusOK); again.ID != withID.ID {
		t.Fatalf("retry of cid-1 got message %d, want %d", again.ID, withID.ID)
	}
	// New rows get ids past every copied (or deleted) one, and seqs past
	// every seq handed out, even where the queue was emptied.
	fresh := erin.send(carol, "after the move")
	if fresh.ID <= gone.ID {
		t.Fatalf("new message id %d, want above %d (the highest ever given)", fresh.ID, gone.ID)
	}
	ev, _ := carol.waitEvent(0, "message", "")
	if ev.Message.ID != fresh.ID || ev.Seq <= srcCursors[carol.username].last {
		t.Fatalf("carol's new message: seq %d id %d, want seq above %d and id %d", ev.Seq, ev.Message.ID, srcCursors[carol.username].last, fresh.ID)
	}
	frank := dst.newUser("frank")
	frank.mustDo("GET", "/api/me", nil, http.StatusOK)
	resp, data = bob.upload([][2]string{{"to", alice.username}, {"file", ""}}, "second.txt", "text/plain", []byte("after the move"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload after the move: %d %s", resp.StatusCode, data)
	}

	// The group, its owner, its read markers; the 1:1 marker; a new
	// member's join order after the copied ones.
	g := carol.group(group.ID)
	if g.Name != "Moving" || g.Owner != alice.username || len(g.Members) != 3 || *g.member(carol.username).ReadUpto != groupMsg.ID {
		t.Errorf("the group after the move: %+v", g)
	}
	for _, c := range bob.conversations() {
		if c.With != nil && c.With.Username == alice.username && *c.ReadUpto != withID.ID {
			t.Errorf("bob's marker with alice after the move: %d, want %d", *c.ReadUpto, withID.ID)
		}
	}
	if m := alice.sendGroup(group.ID, "after the move"); m.Message.ID <= groupMsg.ID {
		t.Errorf("a group message after the move got id %d", m.Message.ID)
	}
	alice.mustDo("DELETE", groupPath(group.ID, "/members/", alice.username), nil, http.StatusNoContent)
	if g := carol.group(group.ID); g.Owner != bob.username {
		t.Errorf("after the owner left the moved group, %s owns it, want %s (the earliest joined)", g.Owner, bob.username)
	}
}

// A migrate into a database with anything in it refuses, and one from a
// missing file says so; neither writes.
func TestMigrate_Refusals(t *testing.T) {
	if engine != "sqlite" {
		t.Skip("moves between engines; runs once")
	}
	url := pgtest.NewDatabase(t)
	_, _, err := runCLI(t, "", "migrate", "-from", filepath.Join(t.TempDir(), "nope.db"), "-to", url)
	if err == nil || !strings.Contains(err.Error(), "no database at") {
		t.Fatalf("missing source: %v", err)
	}
	dbPath := filepath.Join(t.TempDir(), "webim.db")
	src := serverAt(t, dbPath)
	src.newUser("solo")
	src.close()

	// A target where a node already stored something (one upload's blob).
	pg := openPG(t, url)
	if _, err := pg.SaveUpload(strings.NewReader("x"), "x.txt", 10); err != nil {
		t.Fatal(err)
	}
	pg.Close()
	_, _, err = runCLI(t, "", "migrate", "-from", dbPath, "-to", url)
	if err == nil || !strings.Contains(err.Error(), "table blobs has rows") {
		t.Fatalf("non-empty target: %v", err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	conn.QueryRow(context.Background(), `SELECT count(*) FROM users`).Scan(&n)
	if n != 0 {
		t.Fatalf("a refused migrate wrote %d users", n)
	}
	if _, _, err := runCLI(t, "", "migrate", "-from", url, "-to", url); exitCode(err) != 2 {
		t.Fatalf("-from a postgres URL: %v, want a usage error", err)
	}
}

// The copy steps are written for one schema version of each engine, and
// name every table: a table added to either schema (read markers, groups)
// fails this until migrate copies it, or says why it need not.
func TestMigrate_KnowsTheSchema(t *testing.T) {
	if schemaVersion() != migrateSchemaVersion || pgSchemaVersion() != migratePGVersion {
		t.Fatalf("schema versions SQLite %d, Postgres %d; migrate.go copies %d into %d: update its steps",
			schemaVersion(), pgSchemaVersion(), migrateSchemaVersion, migratePGVersion)
	}
	copied := map[string]bool{"blobs": true, "blob_chunks": true}
	for _, s := range migrateSteps {
		copied[s.table] = true
	}
	// Admin events are acted on already; presence and failed logins
	// describe running processes, which a migration starts anew;
	// engine_state's one row is the target's own: a copy's skipped seqs
	// are in its cursors already (migrate.go).
	notCopied := map[string]bool{"admin_events": true, "presence_nodes": true, "presence_claims": true,
		"presence": true, "login_failures": true, "engine_state": true}
	for _, m := range regexp.MustCompile(`CREATE TABLE (\w+)`).FindAllStringSubmatch(pgSchema, -1) {
		if !copied[m[1]] && !notCopied[m[1]] {
			t.Errorf("Postgres table %s: migrate neither copies it nor says why not", m[1])
		}
		// engine_state always holds its one row, the target's own.
		if !slices.Contains(migrateTargetTables, m[1]) && m[1] != "engine_state" {
			t.Errorf("Postgres table %s: migrate does not check it is empty", m[1])
		}
	}
	s, err := openSQLite(filepath.Join(t.TempDir(), "w.db"), defaultMaxQueue, quietLogger(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.read.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		rows.Scan(&name)
		if !copied[name] && !notCopied[name] {
			t.Errorf("SQLite table %s: migrate neither copies it nor says why not", name)
		}
	}
}

// A server still writing to the source is noticed, and nothing committed:
// what it wrote after the snapshot would otherwise be lost.
func TestMigrate_RefusesASourceBeingWritten(t *testing.T) {
	if engine != "sqlite" {
		t.Skip("moves between engines; runs once")
	}
	dbPath := filepath.Join(t.TempDir(), "webim.db")
	src := serverAt(t, dbPath)
	a, b := src.newUser("busya"), src.newUser("busyb")
	befriend(a, b)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Not a.send: t.Fatal must not run on this goroutine.
			st, _, err := apiCall(http.DefaultClient, src.url(""), a.token, "POST", "/api/messages", map[string]any{"to": b.username, "body": fmt.Sprint("busy ", i)})
			if err != nil || st != http.StatusCreated {
				return
			}
		}
	}()
	url := pgtest.NewDatabase(t)
	_, _, err := runCLI(t, "", "migrate", "-from", dbPath, "-to", url)
	close(stop)
	<-done
	if err == nil || !strings.Contains(err.Error(), "was written while it was copied") {
		t.Fatalf("migrate beside a writing server: %v", err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	conn.QueryRow(context.Background(), `SELECT count(*) FROM users`).Scan(&n)
	if n != 0 {
		t.Fatalf("the refused migrate committed %d users", n)
	}
}
