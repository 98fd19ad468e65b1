package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Without PostgreSQL these tests skip (fail under CI=true), like any user
// of the package.
func TestMain(m *testing.M) {
	if os.Getenv("PGTEST_CRASH_CHILD") != "" {
		crashChild()
		return
	}
	os.Exit(Run(m))
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, url string) int {
	t.Helper()
	var n int
	if err := connect(t, url).QueryRow(context.Background(), "SELECT count(*) FROM kv").Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

func TestTwoDatabasesAreSeparate(t *testing.T) {
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatalf("same URL twice: %s", a)
	}
	exec1(t, connect(t, a), "CREATE TABLE kv (k text PRIMARY KEY)")
	exec1(t, connect(t, a), "INSERT INTO kv VALUES ('x')")
	exec1(t, connect(t, b), "CREATE TABLE kv (k text PRIMARY KEY)")
	if n := count(t, a); n != 1 {
		t.Fatalf("a has %d rows, want 1", n)
	}
	if n := count(t, b); n != 0 {
		t.Fatalf("b has %d rows, want 0", n)
	}
}

func TestDatabaseDroppedOnCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		url := NewDatabase(t)
		name = url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
		// An open connection must not stop the drop.
		connect(t, url)
	})
	var n int
	if err := connect(t, AdminURL()).QueryRow(context.Background(),
		"SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s still there after cleanup: n=%d err=%v", name, n, err)
	}
}

func TestRestartKeepsDataAndURL(t *testing.T) {
	url := NewDatabase(t)
	port := Port()
	conn := connect(t, url)
	exec1(t, conn, "CREATE TABLE kv (k text PRIMARY KEY)")
	exec1(t, conn, "INSERT INTO kv VALUES ('committed')")
	for i, mode := range []string{"fast", "immediate"} {
		t0 := time.Now()
		Restart(t, mode)
		t.Logf("%s restart: %v", mode, time.Since(t0))
		if Port() != port {
			t.Fatalf("port changed from %d to %d", port, Port())
		}
		if n := count(t, url); n != 1 {
			t.Fatalf("after %s restart %d rows, want 1", mode, n)
		}
		if i == 0 && conn.Ping(context.Background()) == nil {
			t.Fatal("a connection from before the restart still works")
		}
	}
}

func TestStopAndStartServer(t *testing.T) {
	url := NewDatabase(t)
	exec1(t, connect(t, url), "CREATE TABLE kv (k text PRIMARY KEY)")
	StopServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	StartServer(t)
	if n := count(t, url); n != 0 {
		t.Fatalf("%d rows, want 0", n)
	}
}

func TestDBName(t *testing.T) {
	got := dbName("TestX/sub case#1")
	if !strings.HasSuffix(got, "_testx_sub_case_1") {
		t.Errorf("dbName = %q", got)
	}
	if long := dbName(strings.Repeat("a", 100)); len(long) != 63 {
		t.Errorf("len(dbName(100 a)) = %d, want 63", len(long))
	}
}

// TestKilledBinaryLeavesNoServer kill -9s a test binary that runs a cluster,
// and checks its postmaster dies with it and its files go on the next start.
func TestKilledBinaryLeavesNoServer(t *testing.T) {
	NewDatabase(t) // skips here if there is no PostgreSQL
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "PGTEST_CRASH_CHILD=1")
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	var pmPid int
	if _, err := fmt.Fscan(bufio.NewReader(out), &dir, &pmPid); err != nil {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("child said nothing: %v", err)
	}
	child.Process.Kill()
	child.Wait()

	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pmPid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d outlived its killed test binary", pmPid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the killed child's dir should still be there: %v", err)
	}
	removeStale(the)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("stale dir %s not removed: %v", dir, err)
	}
	if _, err := os.Stat(the.dir); err != nil {
		t.Fatalf("removeStale took the live cluster's dir: %v", err)
	}
}

// TestStaleRunningClusterStopped covers a postmaster that outlived its
// owner anyway (its parent-death signal lost): removeStale stops it.
func TestStaleRunningClusterStopped(t *testing.T) {
	NewDatabase(t)
	c, err := start()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(c.dir)
	// No process has a pid this large (pid_max is at most 2^22).
	if err := os.WriteFile(filepath.Join(c.dir, ownerFile), []byte("999999999 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	removeStale(the)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.stop("immediate")
		t.Fatal("removeStale left the stale postmaster running")
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatalf("stale dir %s not removed: %v", c.dir, err)
	}
}

// crashChild starts a cluster and waits to be killed.
func crashChild() {
	c, err := get()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(c.dir, c.cmd.Process.Pid)
	time.Sleep(time.Minute)
	os.Exit(1)
}

// TestTimings logs what a cluster start and a CREATE DATABASE cost, the
// figures quoted in NewDatabase's comment.
func TestTimings(t *testing.T) {
	NewDatabase(t)
	const n = 10
	conn := connect(t, AdminURL())
	var create, drop time.Duration
	for i := range n {
		t0 := time.Now()
		exec1(t, conn, fmt.Sprintf("CREATE DATABASE timing%d", i))
		t1 := time.Now()
		exec1(t, conn, fmt.Sprintf("DROP DATABASE timing%d WITH (FORCE)", i))
		create, drop = create+t1.Sub(t0), drop+time.Since(t1)
	}
	t.Logf("CREATE DATABASE %v, DROP DATABASE %v (mean of %d)", create/n, drop/n, n)
	t0 := time.Now()
	for i := range n {
		t.Run(strconv.Itoa(i), func(t *testing.T) { NewDatabase(t) })
	}
	t.Logf("NewDatabase with its drop: %v each", time.Since(t0)/n)
	if testing.Short() {
		return
	}
	t0 = time.Now()
	c, err := start()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster start (initdb + postmaster ready): %v", time.Since(t0))
	c.stop("fast")
	os.RemoveAll(c.dir)
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatal("second cluster's dir left behind")
	}
}
