package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"webim/internal/pgtest"
)

// The PostgreSQL engine's own tests: what the HTTP suite cannot see from
// one server (several stores on one database, racing migrations, the
// database going away). They skip without PostgreSQL (fail under CI=true).

func openPG(t *testing.T, url string) *pgStore {
	t.Helper()
	s, err := openPostgres(url, defaultMaxQueue, quietLogger(), false)
	if err != nil {
		t.Fatalf("openPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pgFriends creates users a and b on s, friends.
func pgFriends(t *testing.T, s Store, a, b string) (User, User) {
	t.Helper()
	ctx := context.Background()
	ua, err := s.CreateUser(ctx, a, a, "x")
	if err != nil {
		t.Fatal(err)
	}
	ub, err := s.CreateUser(ctx, b, b, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RequestFriend(ctx, ua, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcceptFriend(ctx, ub, a); err != nil {
		t.Fatal(err)
	}
	return ua, ub
}

func allEvents(t *testing.T, s Store, user int64) []Event {
	t.Helper()
	var out []Event
	cursor := int64(0)
	for {
		evs, err := s.EventsAfter(context.Background(), user, cursor, maxPollBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		cursor = evs[len(evs)-1].Seq
	}
}

func TestPostgresSendPollClean(t *testing.T) {
	s := openPG(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	a, b := pgFriends(t, s, "alice", "bob")
	m, created, err := s.SendMessage(ctx, a, "bob", "hi", "c1", nil)
	if err != nil || !created || m.ID == 0 || m.From != "alice" || m.To != "bob" {
		t.Fatalf("send: %+v %v %v", m, created, err)
	}
	again, created, err := s.SendMessage(ctx, a, "bob", "other body", "c1", nil)
	if err != nil || created || again.ID != m.ID || again.Body != "hi" {
		t.Fatalf("repeat: %+v %v %v", again, created, err)
	}
	for _, c := range []struct {
		to   string
		want error
	}{{"nobody", errNoSuchUser}, {"alice", errMessageSelf}} {
		if _, _, err := s.SendMessage(ctx, a, c.to, "x", "", nil); !errors.Is(err, c.want) {
			t.Errorf("send to %s: %v, want %v", c.to, err, c.want)
		}
	}
	if _, err := s.CreateUser(ctx, "carol", "Carol", "x"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SendMessage(ctx, a, "carol", "x", "", nil); !errors.Is(err, errNotFriends) {
		t.Errorf("send to a stranger: %v", err)
	}
	if _, err := s.CreateUser(ctx, "carol", "Carol", "x"); !errors.Is(err, errUsernameTaken) {
		t.Errorf("second carol: %v", err)
	}
	evs := allEvents(t, s, b.ID)
	if len(evs) != 1 || evs[0].Message == nil || evs[0].Message.ID != m.ID || evs[0].Message.ClientMsgID != "c1" {
		t.Fatalf("bob's events: %+v", evs)
	}
	if q := s.QueuedMessages(); q != 2 {
		t.Errorf("queued %d, want 2", q)
	}
	removed, err := s.Clean(ctx, b.ID, 1<<62)
	if err != nil || removed != 1 {
		t.Fatalf("clean: %d %v", removed, err)
	}
	if removed, err := s.Clean(ctx, a.ID, 1<<62); err != nil || removed != 1 {
		t.Fatalf("clean alice: %d %v", removed, err)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n); err != nil || n != 0 {
		t.Errorf("messages left: %d %v", n, err)
	}
	m2, _, err := s.SendMessage(ctx, a, "bob", "after", "", nil)
	if err != nil || m2.ID <= m.ID {
		t.Errorf("id after clean: %d (first was %d) %v", m2.ID, m.ID, err)
	}
	if evs := allEvents(t, s, b.ID); len(evs) != 1 || evs[0].Seq <= 1 {
		t.Errorf("seq after clean: %+v", evs)
	}
	if q := s.QueuedMessages(); q != 2 {
		t.Errorf("queued %d, want 2", q)
	}
}

func TestPostgresQueueCap(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s, err := openPostgres(url, 3, quietLogger(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, _ := pgFriends(t, s, "alice", "bob")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, full := 0, 0
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.SendMessage(context.Background(), a, "bob", fmt.Sprint(i), "", nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, errQueueFull):
				full++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 3 || full != 7 {
		t.Errorf("%d sent, %d refused; want 3 and 7", ok, full)
	}
}

// Two stores on one database (two processes, as two nodes will be) sending
// to the same users at once: each user's seqs are unique and, read back,
// strictly increasing, and every message is in both queues.
func TestPostgresSeqTwoWriters(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s1, s2 := openPG(t, url), openPG(t, url)
	a, b := pgFriends(t, s1, "alice", "bob")
	const perWorker, workers = 40, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		s := []*pgStore{s1, s2}[w%2]
		from, to := a, "bob"
		if w%4 >= 2 {
			from, to = b, "alice"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				if _, _, err := s.SendMessage(context.Background(), from, to, fmt.Sprintf("%d-%d", w, i), "", nil); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, u := range []User{a, b} {
		evs := allEvents(t, s2, u.ID)
		msgs := 0
		for i, e := range evs {
			if i > 0 && e.Seq <= evs[i-1].Seq {
				t.Fatalf("%s: seq %d after %d", u.Username, e.Seq, evs[i-1].Seq)
			}
			if e.Message != nil {
				msgs++
			}
		}
		if msgs != workers*perWorker {
			t.Errorf("%s holds %d messages, want %d", u.Username, msgs, workers*perWorker)
		}
		var last, queued int64
		if err := s1.pool.QueryRow(context.Background(), `SELECT last_seq, queued FROM cursors WHERE user_id = $1`, u.ID).Scan(&last, &queued); err != nil {
			t.Fatal(err)
		}
		if last != evs[len(evs)-1].Seq || queued != int64(msgs) {
			t.Errorf("%s: cursor last_seq %d queued %d; queue ends at %d with %d messages", u.Username, last, queued, evs[len(evs)-1].Seq, msgs)
		}
	}
}

// Concurrent repeats of one client_msg_id, through two stores: exactly one
// is created, and every answer is that message.
func TestPostgresClientMsgIDRace(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s1, s2 := openPG(t, url), openPG(t, url)
	a, b := pgFriends(t, s1, "alice", "bob")
	for round := range 5 {
		cid := fmt.Sprintf("same-%d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		created, ids := 0, map[int64]bool{}
		for i := range 16 {
			s := []*pgStore{s1, s2}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, c, err := s.SendMessage(context.Background(), a, "bob", "x", cid, nil)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				if c {
					created++
				}
				ids[m.ID] = true
			}()
		}
		wg.Wait()
		if created != 1 || len(ids) != 1 {
			t.Fatalf("round %d: %d created, ids %v", round, created, ids)
		}
	}
	if evs := allEvents(t, s1, b.ID); len(evs) != 5 {
		t.Errorf("bob has %d events, want 5", len(evs))
	}
}

// Processes starting together on an empty database: the advisory lock lets
// one create the schema and the others find it done.
func TestPostgresMigrationsRace(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*pgStore, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = openPostgres(url, defaultMaxQueue, quietLogger(), i%2 == 1)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		} else {
			stores[i].Close()
		}
	}
	conn := pgConn(t, url)
	var rows, version int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_version`).Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || version != pgSchemaVersion() {
		t.Errorf("schema_version: %d rows, version %d; want 1 row, %d", rows, version, pgSchemaVersion())
	}
}

func pgConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// A step appended to pgMigrations runs once, in its transaction, on a
// database of the version before; the version moves with it.
func TestPostgresMigrationStep(t *testing.T) {
	url := pgtest.NewDatabase(t)
	openPG(t, url).Close()
	saved := pgMigrations
	t.Cleanup(func() { pgMigrations = saved })
	pgMigrations = append(append([]string{}, saved...), `ALTER TABLE users ADD COLUMN pgtest_step int NOT NULL DEFAULT 7`)
	s := openPG(t, url)
	var v, col int
	if err := s.pool.QueryRow(context.Background(), `SELECT (SELECT version FROM schema_version), coalesce(max(pgtest_step), 7) FROM users`).Scan(&v, &col); err != nil {
		t.Fatal(err)
	}
	if v != pgSchemaVersion() || col != 7 {
		t.Errorf("version %d (want %d), column %d", v, pgSchemaVersion(), col)
	}
	s.Close()
	// A step that fails leaves the version where it was.
	pgMigrations = append(pgMigrations, `ALTER TABLE nonexistent ADD COLUMN x int`)
	if _, err := openPostgres(url, defaultMaxQueue, quietLogger(), false); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("failing step: %v", err)
	}
	pgMigrations = pgMigrations[:len(pgMigrations)-1]
	openPG(t, url)
}

func TestPostgresNewerSchemaRefused(t *testing.T) {
	url := pgtest.NewDatabase(t)
	openPG(t, url).Close()
	if _, err := pgConn(t, url).Exec(context.Background(), `UPDATE schema_version SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	_, err := openPostgres(url, defaultMaxQueue, quietLogger(), false)
	if err == nil || !strings.Contains(err.Error(), "newer webim") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestPostgresUnreachableNamesPlaceNotPassword(t *testing.T) {
	start := time.Now()
	_, err := openPostgres("postgres://webim:s3cr3tpw@127.0.0.1:1/chatdb?sslmode=disable", defaultMaxQueue, quietLogger(), false)
	if err == nil {
		t.Fatal("opened a database on port 1")
	}
	msg := err.Error()
	if strings.Contains(msg, "s3cr3tpw") || !strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "chatdb") {
		t.Errorf("error %q: want host, port and database, no password", msg)
	}
	if d := time.Since(start); d > 7*time.Second {
		t.Errorf("took %v", d)
	}
	_, err = openPostgres("postgres://webim:s3cr3tpw@127.0.0.1:notaport/x", defaultMaxQueue, quietLogger(), false)
	if err == nil || strings.Contains(err.Error(), "s3cr3tpw") {
		t.Errorf("malformed URL: %v", err)
	}
	if r := redactDBURL("postgres://u:pw@h:5/d?sslmode=disable"); strings.Contains(r, "pw@") || !strings.Contains(r, "u:xxxxx@h:5/d") {
		t.Errorf("redactDBURL: %s", r)
	}
}

// A file of several chunks is stored in the database and read back whole,
// through seeks and through Range requests; its bytes go with the last
// message holding it.
func TestPostgresFileChunks(t *testing.T) {
	s := openPG(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	a, b := pgFriends(t, s, "alice", "bob")
	data := make([]byte, 3*pgChunkSize+12345)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	copy(data, "\x89PNG\r\n\x1a\n")
	f, err := s.SaveUpload(bytes.NewReader(data), "../pic.png", int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(data)) || f.ContentType != "image/png" || f.Name != "pic.png" {
		t.Fatalf("upload: %+v", f)
	}
	if _, err := s.SaveUpload(bytes.NewReader(data), "big", int64(len(data)-1)); !errors.Is(err, errFileTooLarge) {
		t.Errorf("too large: %v", err)
	}
	m, _, err := s.SendMessage(ctx, a, "bob", "pic.png", "", f)
	if err != nil || m.File == nil {
		t.Fatalf("send: %+v %v", m, err)
	}
	if _, _, err := s.OpenFile(ctx, 999, m.File.ID); !errors.Is(err, errNotFound) {
		t.Errorf("stranger: %v", err)
	}
	info, r, err := s.OpenFile(ctx, b.ID, m.File.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	for _, off := range []int64{0, pgChunkSize - 3, 2*pgChunkSize + 1, int64(len(data)) - 5} {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		n, _ := io.ReadFull(r, buf)
		if !bytes.Equal(buf[:n], data[off:min(off+10, int64(len(data)))]) {
			t.Errorf("at %d: %x", off, buf[:n])
		}
	}
	r.Close()
	_, r, _ = s.OpenFile(ctx, a.ID, m.File.ID)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", pgChunkSize-10, pgChunkSize+9))
	http.ServeContent(rec, req, info.Name, time.Time{}, r)
	if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), data[pgChunkSize-10:pgChunkSize+10]) {
		t.Errorf("range: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	r.Close()
	st, err := s.Stats(ctx)
	if err != nil || st.Files != 1 || st.FilesBytes != int64(len(data)) {
		t.Errorf("stats: %+v %v", st, err)
	}
	s.Clean(ctx, b.ID, 1<<62)
	if _, _, err := s.OpenFile(ctx, a.ID, m.File.ID); err != nil {
		t.Errorf("the sender's copy still holds it: %v", err)
	}
	s.Clean(ctx, a.ID, 1<<62)
	if _, _, err := s.OpenFile(ctx, a.ID, m.File.ID); !errors.Is(err, errNotFound) {
		t.Errorf("after both cleaned: %v", err)
	}
	var chunks int
	s.pool.QueryRow(ctx, `SELECT count(*) FROM blob_chunks`).Scan(&chunks)
	if chunks != 0 {
		t.Errorf("%d chunks left", chunks)
	}
	// An upload never sent is swept once old.
	if _, err := s.SaveUpload(strings.NewReader("orphan"), "o.txt", 100); err != nil {
		t.Fatal(err)
	}
	s.SetClock(func() time.Time { return time.Now().Add(2 * pgOrphanAge) })
	s.sweepOrphanBlobs()
	if st, _ := s.Stats(ctx); st.Files != 0 {
		t.Errorf("orphan not swept: %+v", st)
	}
}

// DeleteUser releases what only its queue held and tells servers by an
// admin event; other stores' gauges follow.
func TestPostgresAdminDelete(t *testing.T) {
	url := pgtest.NewDatabase(t)
	server, admin := openPG(t, url), openPG(t, url)
	admin.shared = true
	ctx := context.Background()
	a, _ := pgFriends(t, server, "alice", "bob")
	for i := range 3 {
		if _, _, err := server.SendMessage(ctx, a, "bob", fmt.Sprint(i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	seen, _ := server.LastAdminEvent(ctx)
	d, err := admin.DeleteUser(ctx, "bob")
	if err != nil || d.Queued != 3 {
		t.Fatalf("delete: %+v %v", d, err)
	}
	evs, err := server.AdminEventsAfter(ctx, seen)
	if err != nil || len(evs) != 1 || evs[0].QueuedDelta != -3 {
		t.Fatalf("admin events: %+v %v", evs, err)
	}
	if q := server.QueuedMessages(); q != 3 {
		t.Errorf("server's gauge %d, want 3 (alice's copies)", q)
	}
	if _, _, err := server.SendMessage(ctx, a, "bob", "gone?", "", nil); !errors.Is(err, errNoSuchUser) {
		t.Errorf("send to the deleted: %v", err)
	}
	if _, err := admin.CreateUser(ctx, "bob", "Bob again", "x"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := server.SendMessage(ctx, a, "bob", "new bob", "", nil); !errors.Is(err, errNotFriends) {
		t.Errorf("send to the new bob: %v", err)
	}
}

// Postgres stopping under a running store: writes and Ping answer
// errStorage with nothing stored, and the store recovers by itself.
func TestPostgresOutageAndRecovery(t *testing.T) {
	s := openPG(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	a, b := pgFriends(t, s, "alice", "bob")
	if _, _, err := s.SendMessage(ctx, a, "bob", "before", "", nil); err != nil {
		t.Fatal(err)
	}
	pgtest.StopServer(t)
	restarted := false
	defer func() {
		if !restarted {
			pgtest.StartServer(t)
		}
	}()
	if _, _, err := s.SendMessage(ctx, a, "bob", "during", "d1", nil); !errors.Is(err, errStorage) {
		t.Errorf("send while down: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, errStorage) {
		t.Errorf("ping while down: %v", err)
	}
	if _, err := s.EventsAfter(ctx, b.ID, 0, 10); !errors.Is(err, errStorage) {
		t.Errorf("poll while down: %v", err)
	}
	pgtest.StartServer(t)
	restarted = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := s.SendMessage(ctx, a, "bob", "after", "d1", nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping after: %v", err)
	}
	var bodies []string
	for _, e := range allEvents(t, s, b.ID) {
		if e.Message != nil {
			bodies = append(bodies, e.Message.Body)
		}
	}
	if strings.Join(bodies, ",") != "before,after" {
		t.Errorf("bob's messages: %v", bodies)
	}
}
