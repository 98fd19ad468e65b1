// Package pgtest gives tests a private, throw-away PostgreSQL server.
//
// Each test binary gets one cluster of its own, started on the first call to
// NewDatabase (or any other helper) and listening only on 127.0.0.1 and on a
// unix socket in its temp dir. Each test asks for a fresh database:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDatabase(t) // dropped again on t.Cleanup
//		...
//	}
//
// Run is m.Run followed by Stop; a TestMain that does more can call Stop
// itself: `code := m.Run(); pgtest.Stop(); os.Exit(code)`. Without either
// the server still dies with the test binary (see start), and the next run
// deletes its files.
//
// When PostgreSQL cannot be started (no server binaries, say), NewDatabase
// skips the test with the reason, and says so once on stderr; with CI=true
// in the environment it fails the test instead, so CI never goes green by
// skipping everything.
//
// Restart, StopServer and StartServer are faults for tests of how the
// server's clients behave: the port and data dir stay the same, so URLs
// taken before stay valid.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// dirPrefix names this package's temp dirs, so a later run can find the
	// ones a killed run left behind. Short, because the socket path inside
	// the dir must fit in sun_path (~107 bytes).
	dirPrefix = "wpg"
	ownerFile = "owner"
	readyWait = 30 * time.Second
	stopWait  = 30 * time.Second
)

// settings go into postgresql.conf rather than the command line, so that
// anyone starting the data dir by hand while debugging gets the same server.
var settings = []string{
	"listen_addresses = '127.0.0.1'",
	"fsync = on",
	"synchronous_commit = on",
	"max_connections = 400",
	"shared_buffers = 128MB",
	"log_line_prefix = '%m [%p] %d '",
}

// cluster is the one server of this process. mu guards the running
// postmaster; the fields set by start never change afterwards.
type cluster struct {
	dir     string // temp dir: owner file, unix socket, data/
	data    string
	logPath string
	bin     string
	port    int
	cred    *syscall.Credential // nil unless we run as root

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been reaped
	stopped bool          // Stop ran; nothing may start again

	adminMu   sync.Mutex
	adminConn *pgx.Conn
}

var (
	once     sync.Once
	the      *cluster
	startErr error
	dbSeq    atomic.Int64
	skipOnce sync.Once
)

func get() (*cluster, error) {
	once.Do(func() {
		t0 := time.Now()
		the, startErr = start()
		if startErr == nil && os.Getenv("PGTEST_VERBOSE") != "" {
			fmt.Fprintf(os.Stderr, "pgtest: cluster up on port %d in %v\n", the.port, time.Since(t0))
		}
	})
	return the, startErr
}

func need(tb testing.TB) *cluster {
	tb.Helper()
	c, err := get()
	if err == nil {
		return c
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("pgtest: PostgreSQL is required when CI=true: %v", err)
	}
	skipOnce.Do(func() {
		fmt.Fprintf(os.Stderr, "pgtest: SKIPPING every PostgreSQL test: %v\n", err)
	})
	tb.Skipf("pgtest: PostgreSQL unavailable: %v", err)
	return nil
}

// Run runs the tests, then stops the cluster; use it as
// `func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }`.
func Run(m *testing.M) int {
	defer Stop()
	return m.Run()
}

// Stop shuts the cluster down and deletes its files. Safe to call when no
// cluster was started, and more than once.
func Stop() {
	once.Do(func() { startErr = errors.New("pgtest: Stop was called") })
	c := the
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.stop("fast")
	os.RemoveAll(c.dir)
}

// NewDatabase creates an empty database for this test alone and returns its
// URL; the database is dropped, its connections cut, on tb.Cleanup.
//
// Measured with PostgreSQL 15 on the 2-core CI box (TestTimings): CREATE
// DATABASE 75-130 ms, DROP 12-35 ms, and several times that when the box is
// busy. fsync=off made no difference, so it is the copy of template1 (about
// 7.5 MB, through the WAL in 15's default strategy), not the syncs: fine
// for one database per test, too slow for one per table-driven case.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	c := need(tb)
	name := dbName(tb.Name())
	if err := c.admin(fmt.Sprintf("CREATE DATABASE %s", pgx.Identifier{name}.Sanitize())); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if !c.running() {
			return // the test left the server down; Stop deletes it all
		}
		err := c.admin(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize()))
		if err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return c.url(name)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// dbName makes a name that is unique in this process and still says which
// test made it, for whoever looks at a leftover database.
func dbName(test string) string {
	name := fmt.Sprintf("t%d_%s", dbSeq.Add(1), unsafeChars.ReplaceAllString(strings.ToLower(test), "_"))
	return name[:min(len(name), 63)] // NAMEDATALEN-1
}

// URL returns the URL of database dbname on the cluster, starting the
// cluster if need be; "" if it cannot be started.
func URL(dbname string) string {
	c, err := get()
	if err != nil {
		return ""
	}
	return c.url(dbname)
}

// AdminURL is URL("postgres"), the superuser's own database.
func AdminURL() string { return URL("postgres") }

// Port returns the cluster's TCP port, starting it if need be; 0 if it cannot
// be started.
func Port() int {
	c, err := get()
	if err != nil {
		return 0
	}
	return c.port
}

// BinDir returns the directory of the PostgreSQL server binaries in use, or
// "" if none was found.
func BinDir() string {
	dir, _ := findBinDir()
	return dir
}

// Restart stops the server in the given pg_ctl shutdown mode ("smart",
// "fast" or "immediate"; immediate means crash recovery on start) and starts
// it again on the same port and data dir.
func Restart(tb testing.TB, mode string) {
	tb.Helper()
	c := need(tb)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop(mode); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
	if err := c.launch(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
}

// StopServer stops the server (fast shutdown) and leaves it down, so a test
// can see what its clients do without a database; StartServer brings it back.
func StopServer(tb testing.TB) {
	tb.Helper()
	c := need(tb)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stop("fast"); err != nil {
		tb.Fatalf("pgtest: stop: %v", err)
	}
}

// StartServer starts the server again after StopServer, on the same port.
func StartServer(tb testing.TB) {
	tb.Helper()
	c := need(tb)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return
	}
	if err := c.launch(); err != nil {
		tb.Fatalf("pgtest: start: %v", err)
	}
}

func (c *cluster) url(dbname string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, dbname)
}

// socketURL reaches the server through the unix socket in our own dir: a
// TCP connect could reach a stranger that took the port in the meantime.
func (c *cluster) socketURL(dbname string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", dbname, c.dir, c.port)
}

func (c *cluster) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil
}

// admin runs one statement as the superuser. The connection is kept: a new
// one costs 15-30 ms here, as much as the statement.
func (c *cluster) admin(sql string) error {
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	for try := 0; try < 2; try++ {
		if c.adminConn == nil {
			if c.adminConn, err = pgx.Connect(ctx, c.socketURL("postgres")); err != nil {
				continue
			}
		}
		if _, err = c.adminConn.Exec(ctx, sql); err == nil {
			return nil
		}
		// Maybe a connection the server closed since; once more on a new one.
		c.adminConn.Close(ctx)
		c.adminConn = nil
	}
	return fmt.Errorf("%s: %w", sql, err)
}

func (c *cluster) closeAdmin() {
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	if c.adminConn != nil {
		c.adminConn.Close(context.Background())
		c.adminConn = nil
	}
}

func findBinDir() (string, error) {
	const root = "/usr/lib/postgresql"
	var vers []int
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		v, err := strconv.Atoi(e.Name())
		if err == nil && isFile(filepath.Join(root, e.Name(), "bin", "postgres")) {
			vers = append(vers, v)
		}
	}
	if slices.Contains(vers, 15) {
		return filepath.Join(root, "15", "bin"), nil
	}
	if len(vers) > 0 {
		return filepath.Join(root, strconv.Itoa(slices.Max(vers)), "bin"), nil
	}
	out, err := exec.Command("pg_config", "--bindir").Output()
	if dir := strings.TrimSpace(string(out)); err == nil && isFile(filepath.Join(dir, "postgres")) {
		return dir, nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries in %s/*/bin nor at pg_config --bindir (Debian: apt-get install postgresql)", root)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// start makes and starts the cluster. Its postmaster is our child with a
// parent-death signal, so even a kill -9 of the test binary takes the server
// down with it; what that leaves on disk, the next run's removeStale deletes.
func start() (*cluster, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin}
	if os.Geteuid() == 0 {
		// The postmaster refuses to run as root.
		if c.cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	removeStale(c)

	if c.dir, err = os.MkdirTemp("", dirPrefix); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(c.dir)
		}
	}()
	if err := os.WriteFile(filepath.Join(c.dir, ownerFile), []byte(selfOwner()), 0o644); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	c.data = filepath.Join(c.dir, "data")
	c.logPath = filepath.Join(c.data, "server.log")

	// --no-sync: losing initdb's files matters only if the machine itself
	// crashes mid-test; the server's own writes are still fsynced.
	if out, err := c.command("initdb", "-D", c.data, "--auth=trust", "-U", "postgres",
		"--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf("\n# pgtest\n%s\nunix_socket_directories = '%s'\n", strings.Join(settings, "\n"), c.dir)
	if err := appendFile(filepath.Join(c.data, "postgresql.conf"), conf); err != nil {
		return nil, err
	}

	// A free port found by listening can be taken by someone else before
	// the postmaster binds it; then try another.
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		err = c.launch()
		if err == nil {
			ok = true
			return c, nil
		}
		if attempt == 4 || !strings.Contains(err.Error(), "already in use") {
			return nil, err
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}

// postgresUser returns the credentials of the postgres OS user, creating the
// user if the machine has none (the Debian package normally makes it).
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		if out, err := exec.Command("useradd", "--system", "--user-group", "postgres").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("running as root and no postgres user; useradd: %v: %s", err, out)
		}
		if u, err = user.Lookup("postgres"); err != nil {
			return nil, err
		}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// command prepares one of the PostgreSQL binaries, as the postgres user when
// we are root.
func (c *cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	// Messages in English, so the port-collision check can read them.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// Anything the postgres user can enter; the caller's cwd may be /root.
	cmd.Dir = os.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

// launch starts the postmaster and waits until it accepts connections.
// c.mu is held, or c is not yet shared.
func (c *cluster) launch() error {
	if c.stopped {
		return errors.New("the cluster was stopped")
	}
	logf, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child keeps its own copy
	logStart, _ := logf.Seek(0, 2)

	cmd := c.command("postgres", "-D", c.data, "-p", strconv.Itoa(c.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGQUIT is the postmaster's immediate shutdown: it takes its backends
	// with it and leaves no shared memory behind.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := onLockedThread(cmd.Start); err != nil {
		return fmt.Errorf("postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.cmd, c.exited = cmd, exited

	deadline := time.Now().Add(readyWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		// Ready on the socket means the TCP port is ours too: failing to bind
		// it is fatal to the postmaster.
		conn, err := pgx.Connect(ctx, c.socketURL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-exited:
			c.cmd = nil
			return fmt.Errorf("postgres exited at start: %v\n%s", cmd.ProcessState, c.logTail(logStart))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop("immediate")
			return fmt.Errorf("postgres not ready after %v: %v\n%s", readyWait, err, c.logTail(logStart))
		}
	}
}

// stop shuts the postmaster down in a pg_ctl mode and reaps it. c.mu is held.
func (c *cluster) stop(mode string) error {
	sig, ok := map[string]syscall.Signal{
		"smart": syscall.SIGTERM, "fast": syscall.SIGINT, "immediate": syscall.SIGQUIT,
	}[mode]
	if !ok {
		return fmt.Errorf("unknown shutdown mode %q", mode)
	}
	c.closeAdmin()
	if c.cmd == nil {
		return nil
	}
	defer func() { c.cmd = nil }()
	c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
		return nil
	case <-time.After(stopWait):
	}
	c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("postgres ignored %s shutdown for %v; killed", mode, stopWait)
}

func (c *cluster) logTail(from int64) string {
	b, _ := os.ReadFile(c.logPath)
	b = b[min(int(from), len(b)):]
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "--- " + c.logPath + " ---\n" + string(b)
}

// The parent-death signal fires when the thread that forked the child exits,
// not the process, and Go may end a thread under a goroutine that locked it.
// So every postmaster is forked from one thread that lives as long as the
// process.
var (
	spawnOnce sync.Once
	spawnc    = make(chan func())
)

func onLockedThread(f func() error) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread()
			for f := range spawnc {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnc <- func() { errc <- f() }
	return <-errc
}

// selfOwner says which process owns a temp dir: pid and start time, since a
// pid alone can be reused by the time anyone checks.
func selfOwner() string {
	return fmt.Sprintf("%d %s\n", os.Getpid(), startTime(os.Getpid()))
}

// startTime is field 22 of /proc/PID/stat, or "" if there is no such process.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces; fields after it do not.
	rest := b[bytes.LastIndexByte(b, ')')+1:]
	f := strings.Fields(string(rest))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// removeStale deletes the clusters that earlier test binaries left in the
// temp dir when they died without Stop, first stopping any postmaster still
// running there (one whose parent-death signal was lost, say).
func removeStale(c *cluster) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or just being made
		}
		var pid int
		var started string
		fmt.Sscan(string(b), &pid, &started)
		if pid > 0 && started != "" && startTime(pid) == started {
			continue // its test binary is still running
		}
		data := filepath.Join(dir, "data")
		if isFile(filepath.Join(data, "postmaster.pid")) {
			c.command("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "10").Run()
		}
		os.RemoveAll(dir)
	}
}
