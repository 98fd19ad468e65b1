package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// uploadBytes uploads data as a file message to to and returns the answer.
func (c *client) uploadBytes(to *client, name string, data []byte) (*http.Response, []byte) {
	c.t.Helper()
	return c.upload([][2]string{{"to", to.username}, {"file", ""}}, name, "application/octet-stream", data)
}

// openSQLiteForCheck opens a database file directly, as an operator would.
func openSQLiteForCheck(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// mustIntegrityOK runs PRAGMA integrity_check and fails unless it says ok.
func mustIntegrityOK(t testing.TB, db *sql.DB) {
	t.Helper()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check = %q", res)
	}
}

func runCmd(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = run(ctx, args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut, nil)
	return out.String(), errOut.String(), err
}

func TestBackup_UnderLoadAndRestore(t *testing.T) {
	sqliteOnly(t)
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)

	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 4000)...)
	resp, data := alice.uploadBytes(bob, "pic.png", png)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	before := alice.send(bob, "before the backup")

	// Senders keep writing while the backup runs.
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, _ := alice.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": fmt.Sprintf("load %d/%d", g, i)})
				if r.StatusCode == http.StatusCreated {
					sent.Add(1)
				}
			}
		}()
	}
	eventually(t, 10*time.Second, "load to start", func() bool { return sent.Load() > 20 })

	dst := filepath.Join(t.TempDir(), "copy.db")
	out, errOut, err := runCmd(t, "backup", "-db", ts.cfg.DBPath, dst)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, errOut)
	}
	t.Logf("%s(%d messages sent during the test)", out, sent.Load())

	db := openSQLiteForCheck(t, dst)
	mustIntegrityOK(t, db)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 2 || int64(n) > sent.Load()+2 {
		t.Fatalf("copy holds %d messages; want between 2 and %d", n, sent.Load()+2)
	}
	db.Close()
	if entries, err := os.ReadDir(dst + ".files"); err != nil || len(entries) != 1 {
		t.Fatalf("copy's files folder: %v, %d entries; want the one upload", err, len(entries))
	}

	// A second backup to the same name is refused and changes nothing.
	st1, _ := os.Stat(dst)
	if _, _, err := runCmd(t, "backup", "-db", ts.cfg.DBPath, dst); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("backup over an existing file: err = %v, want a refusal", err)
	}
	if st2, _ := os.Stat(dst); st2.Size() != st1.Size() || !st2.ModTime().Equal(st1.ModTime()) {
		t.Fatal("the refused backup changed the existing file")
	}

	// Restore: a server on the copy serves what was in it, files included.
	ts.close()
	restored := newTestServer(t, func(c *Config) { c.DBPath = dst })
	bob.ts, alice.ts = restored, restored
	msgs := bob.messages()
	var gotBefore, gotFile bool
	for _, m := range msgs {
		if m.ID == before.ID && m.Body == before.Body {
			gotBefore = true
		}
		if m.File != nil {
			r, body := bob.do("GET", m.File.URL, nil)
			if r.StatusCode != http.StatusOK || !bytes.Equal(body, png) {
				t.Fatalf("restored file: %d, %d bytes", r.StatusCode, len(body))
			}
			gotFile = true
		}
	}
	if !gotBefore || !gotFile {
		t.Fatalf("restored queue of %d messages lacks the message (%v) or the file (%v)", len(msgs), gotBefore, gotFile)
	}
}

func TestBackup_Refusals(t *testing.T) {
	sqliteOnly(t)
	dir := t.TempDir()
	if _, _, err := runCmd(t, "backup", "-db", filepath.Join(dir, "nope.db"), filepath.Join(dir, "out.db")); err == nil {
		t.Fatal("backup of a missing database succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.db")); err == nil {
		t.Fatal("backup created the missing database")
	}
	if _, _, err := runCmd(t, "backup"); err == nil {
		t.Fatal("backup with no FILE succeeded")
	}
	// WEBIM_DB is the fallback for -db.
	ts := newTestServer(t)
	ts.user("env")
	dst := filepath.Join(dir, "env.db")
	var out bytes.Buffer
	getenv := func(k string) string {
		if k == "WEBIM_DB" {
			return ts.cfg.DBPath
		}
		return ""
	}
	if err := run(context.Background(), []string{"backup", dst}, getenv, strings.NewReader(""), &out, io.Discard, nil); err != nil {
		t.Fatalf("backup with WEBIM_DB: %v", err)
	}
	mustIntegrityOK(t, openSQLiteForCheck(t, dst))
}

// TestBackup_IncludesTheACMECache: <db>.acme/ is copied to FILE.acme/,
// private, without autocert's temporary files; without a cache there is
// no FILE.acme/. (TestACME_PebbleIssuesCertificate restores one and serves
// its certificate with the CA out of reach.)
func TestBackup_IncludesTheACMECache(t *testing.T) {
	sqliteOnly(t)
	ts := newTestServer(t)
	ts.user("acme")
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.db")
	if _, _, err := runCmd(t, "backup", "-db", ts.cfg.DBPath, plain); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(plain + ".acme"); !os.IsNotExist(err) {
		t.Fatalf("backup of a server without ACME made %s.acme: %v", plain, err)
	}

	cache := ts.cfg.DBPath + ".acme"
	entries := map[string]string{"acme_account+key": "account key", "chat.example.com": "key and chain"}
	if err := os.Mkdir(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range entries {
		if err := os.WriteFile(filepath.Join(cache, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(cache, "chat.example.com.tmp123"), []byte("half"), 0o600)
	os.Mkdir(filepath.Join(cache, "sub"), 0o700)
	dst := filepath.Join(dir, "acme.db")
	out, _, err := runCmd(t, "backup", "-db", ts.cfg.DBPath, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "2 ACME cache entries") {
		t.Errorf("backup said %q", out)
	}
	got, err := os.ReadDir(dst + ".acme")
	if err != nil || len(got) != len(entries) {
		t.Fatalf("%s.acme: %v, %v", dst, got, err)
	}
	if fi, _ := os.Stat(dst + ".acme"); fi.Mode().Perm() != 0o700 {
		t.Errorf("%s.acme has mode %v", dst, fi.Mode().Perm())
	}
	for name, body := range entries {
		p := filepath.Join(dst+".acme", name)
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if err != nil || string(b) != body || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %q %v, mode %v", p, b, err, fi.Mode().Perm())
		}
	}
	// An existing FILE.acme is not overwritten.
	os.Mkdir(filepath.Join(dir, "again.db.acme"), 0o700)
	if _, _, err := runCmd(t, "backup", "-db", ts.cfg.DBPath, filepath.Join(dir, "again.db")); err == nil {
		t.Error("backup overwrote an existing FILE.acme")
	}
}
