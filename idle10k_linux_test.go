package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOverload_TenThousandIdleConnections opens 10,000 idle connections to
// the real binary (a process of its own, so each side needs only 10,000
// descriptors): it keeps serving others promptly, and once the clients
// leave its goroutines and memory come back down.
func TestOverload_TenThousandIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections to the binary; skipped with -short")
	}
	const nIdle = 10_000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < nIdle+1000 {
		t.Skipf("needs %d open files, the limit is %d", nIdle+1000, lim.Cur)
	}
	bin := buildWebim(t)
	pprofAddr := freeLoopbackAddr(t)
	p := startWebim(t, bin, "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "webim.db"),
		"-rate-limit-exempt", "127.0.0.0/8", "-pprof", pprofAddr)
	base := p.url("")
	hc := &http.Client{Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	alice, bob := uniqueName("idlea"), uniqueName("idleb")
	aTok, bTok := procUser(t, hc, base, alice), procUser(t, hc, base, bob)
	procBefriend(t, hc, base, alice, aTok, bob, bTok)
	goroutines := func() int {
		resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatalf("pprof: %v", err)
		}
		defer resp.Body.Close()
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		m := regexp.MustCompile(`total (\d+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("pprof answered %q", line)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	baseline, rssBase := goroutines(), processRSS(t, p.cmd.Process.Pid)

	start := time.Now()
	conns := make([]net.Conn, 0, nIdle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < nIdle {
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	opened := time.Since(start)
	// Connections that never send a request are closed after the 10 s
	// ReadHeaderTimeout, so on a slow machine the first may be gone
	// before the last is open: half of them held at once is enough.
	eventually(t, 20*time.Second, "the server to hold the connections", func() bool { return goroutines() >= baseline+nIdle/2 })
	peak, rssPeak := goroutines(), processRSS(t, p.cmd.Process.Pid)

	// Others are served promptly.
	t0 := time.Now()
	for i := range 10 {
		st, data, err := apiCall(hc, base, aTok, "POST", "/api/messages", map[string]any{"to": bob, "body": fmt.Sprint("hi ", i)})
		if err != nil || st != http.StatusCreated {
			t.Fatalf("send with %d idle connections: %d %s %v", nIdle, st, data, err)
		}
	}
	st, _, err := apiCall(hc, base, bTok, "GET", "/api/poll?cursor=0&timeout=0", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("poll with %d idle connections: %d %v", nIdle, st, err)
	}
	served := time.Since(t0)
	if served > 10*time.Second {
		t.Errorf("10 sends and a poll took %v with %d idle connections", served, nIdle)
	}

	// They leave; the server lets go of them.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	eventually(t, 20*time.Second, "goroutines back to baseline", func() bool { return goroutines() <= baseline+5 })
	rssAfter := processRSS(t, p.cmd.Process.Pid)
	t.Logf("%d idle connections opened in %v; server goroutines %d → %d → %d, RSS %d → %d → %d MiB; 10 sends and a poll in %v meanwhile",
		nIdle, opened.Round(time.Millisecond), baseline, peak, goroutines(), rssBase>>20, rssPeak>>20, rssAfter>>20, served.Round(time.Millisecond))
	if rssPeak > rssBase+400<<20 {
		t.Errorf("RSS grew by %d MiB for %d idle connections", (rssPeak-rssBase)>>20, nIdle)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// processRSS reads a process's resident set size in bytes.
func processRSS(t testing.TB, pid int) uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}
