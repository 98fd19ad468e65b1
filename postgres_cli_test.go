package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"webim/internal/pgtest"
)

// What an operator sees of -db postgres://… before and around the engine:
// mistakes are usage errors, an unreachable server a quick clear failure,
// and the password never printed.

const testPGPassword = "s3cret-Pa55"

func TestPostgresURL_MalformedIsAUsageError(t *testing.T) {
	for _, db := range []string{
		"postgres://webim:" + testPGPassword + "@127.0.0.1:notaport/webim",
		"postgresql://webim:" + testPGPassword + "@127.0.0.1/webim?sslmode=sometimes",
		"postgres://webim@127.0.0.1/webim?connect_timeout=soon&password=" + testPGPassword,
	} {
		_, stderr, err := runCLI(t, "", "-addr", "127.0.0.1:0", "-db", db)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%s: %v (exit %d), want exit 2", redactDBURL(db), err, exitCode(err))
			continue
		}
		msg := err.Error() + stderr
		if strings.Contains(msg, testPGPassword) {
			t.Errorf("the password is in the error: %s", msg)
		}
		if !strings.Contains(msg, "PostgreSQL URL") {
			t.Errorf("error does not say what is wrong: %s", msg)
		}
	}
}

func TestPostgresURL_UnreachableFailsFastNamingTheServer(t *testing.T) {
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	db := "postgres://webim:" + testPGPassword + "@127.0.0.1:" + port + "/chatdb?sslmode=disable"
	start := time.Now()
	_, stderr, err := runCLI(t, "", "-addr", "127.0.0.1:0", "-db", db)
	took := time.Since(start)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("unreachable Postgres: %v (exit %d), want exit 1", err, exitCode(err))
	}
	msg := err.Error() + stderr
	for _, want := range []string{"127.0.0.1", port, "chatdb"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %s: %s", want, msg)
		}
	}
	if strings.Contains(msg, testPGPassword) {
		t.Errorf("the password is in the error: %s", msg)
	}
	// Generous: the point is seconds, not the driver's minutes of retries.
	if took > 30*time.Second {
		t.Errorf("gave up after %v", took)
	}
}

func TestPostgresURL_BackupPointsToPgDump(t *testing.T) {
	_, _, err := runCmd(t, "backup", "-db", "postgres://webim:"+testPGPassword+"@127.0.0.1/webim", t.TempDir()+"/b.db")
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "pg_dump") || strings.Contains(err.Error(), testPGPassword) {
		t.Fatalf("backup of a Postgres URL: %v (exit %d), want exit 2 naming pg_dump without the password", err, exitCode(err))
	}
}

// The server on a URL with a password: neither its log nor /metrics nor an
// error answer shows it. (The test cluster trusts loopback, so any password
// is accepted.)
func TestPostgresURL_PasswordNeverShown(t *testing.T) {
	db := engineDB(t)
	if engine != "postgres" {
		t.Skip("needs the PostgreSQL pass")
	}
	db = strings.Replace(db, "postgres@", "postgres:"+testPGPassword+"@", 1)
	if !strings.Contains(db, testPGPassword) {
		t.Fatalf("could not put a password into %s", pgtest.AdminURL())
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-db", db, "-log-level", "debug"},
			func(string) string { return "" }, strings.NewReader(""), io.Discard, logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	if strings.Contains(logs.String(), testPGPassword) {
		t.Errorf("the password is in the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "xxxxx") {
		t.Errorf("the log does not name the database (redacted):\n%s", logs.String())
	}
	if bytes.Contains(metrics, []byte(testPGPassword)) {
		t.Errorf("the password is in /metrics")
	}
}
