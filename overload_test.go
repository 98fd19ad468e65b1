package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServing runs the whole program in-process, as main does, so the real
// http.Server and its timeouts are in front of the handler. It returns the
// address; the server is stopped (and must return nil) at cleanup.
func startServing(t testing.TB, args ...string) (addr string, app func() *App) {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "webim.db")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	all := append([]string{"-addr", "127.0.0.1:0", "-db", dbPath, "-log-level", "error"}, args...)
	go func() {
		done <- run(ctx, all, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard, ready)
	}()
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("run did not stop")
		}
	})
	return addr, nil
}

// runClient is an API client of a startRun server with its own transport.
func runClient(t testing.TB, addr string) (*http.Client, string) {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, "http://" + addr
}

// slowConn writes a request's bytes one chunk at a time, every gap, and
// reports when the server answered or closed the connection.
type slowConn struct {
	conn   net.Conn
	closed chan time.Time // receives when the server ended the connection
}

func openSlow(t testing.TB, addr string, head string, rest []string, gap time.Duration) *slowConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sc := &slowConn{conn: c, closed: make(chan time.Time, 1)}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatalf("write: %v", err)
	}
	go func() {
		for _, chunk := range rest {
			time.Sleep(gap)
			if _, err := io.WriteString(c, chunk); err != nil {
				break
			}
		}
	}()
	go func() {
		// The server answering or closing ends the read.
		io.Copy(io.Discard, bufio.NewReader(c))
		sc.closed <- time.Now()
	}()
	return sc
}

// TestOverload_SlowClientsAreCutOff opens many slow-loris connections,
// with headers or JSON bodies dribbled a byte at a time, against the real
// server: others are served meanwhile, slow headers are cut off by
// ReadHeaderTimeout (10 s) and slow JSON bodies by jsonBodyTimeout (15 s),
// not held for ReadTimeout's two minutes.
func TestOverload_SlowClientsAreCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the server's 10 and 15 s timeouts; skipped with -short")
	}
	addr, _ := startServing(t, "-rate-limit-exempt", "127.0.0.0/8")
	hc, base := runClient(t, addr)
	alice, bob := uniqueName("slowa"), uniqueName("slowb")
	aTok, bTok := procUser(t, hc, base, alice), procUser(t, hc, base, bob)
	procBefriend(t, hc, base, alice, aTok, bob, bTok)

	const nHeaders, nBodies = 150, 150
	start := time.Now()
	var slow []*slowConn
	headerBytes := strings.Split("X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", "")
	for range nHeaders {
		slow = append(slow, openSlow(t, addr, "GET /api/health HTTP/1.1\r\nHost: x\r\n", headerBytes, 500*time.Millisecond))
	}
	body := `{"username":"` + strings.Repeat("a", 100) + `","password":"x"}`
	for range nBodies {
		head := fmt.Sprintf("POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", len(body))
		slow = append(slow, openSlow(t, addr, head, strings.Split(body[1:], ""), 500*time.Millisecond))
	}

	// Everyone else is served promptly meanwhile.
	for i := range 20 {
		t0 := time.Now()
		st, data, err := apiCall(hc, base, aTok, "POST", "/api/messages", map[string]any{"to": bob, "body": fmt.Sprint("hi ", i)})
		if err != nil || st != http.StatusCreated {
			t.Fatalf("send during slow-loris: %d %s %v", st, data, err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("send took %v during slow-loris", d)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every slow connection is ended well before ReadTimeout.
	var latest time.Duration
	for i, sc := range slow {
		select {
		case at := <-sc.closed:
			latest = max(latest, at.Sub(start))
		case <-time.After(time.Until(start.Add(25 * time.Second))):
			kind := "header"
			if i >= nHeaders {
				kind = "JSON body"
			}
			t.Fatalf("slow %s connection %d still open after 25 s", kind, i)
		}
	}
	t.Logf("%d slow-header and %d slow-body connections all cut off within %v", nHeaders, nBodies, latest.Round(100*time.Millisecond))
}

// TestOverload_IdleConnectionsAndAbandonedPollsLeakNothing opens a few
// thousand idle connections and many polls whose clients vanish: the server
// keeps answering, and once the clients are gone the goroutine count is
// back to where it was. Polls parked by then (park.go) cannot see their
// clients leave: they are released by their timeout, 8 s here.
func TestOverload_IdleConnectionsAndAbandonedPollsLeakNothing(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	befriend(alice, bob)
	pollers := make([]*client, 200)
	for i := range pollers {
		pollers[i] = ts.quickUser("poller")
	}
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	baseline := runtime.NumGoroutine()
	heapBase := heapInUse()

	const nIdle = 3000
	conns := make([]net.Conn, 0, nIdle)
	addr := strings.TrimPrefix(ts.srv.URL, "http://")
	for range nIdle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// Polls that are abandoned: the client cancels each mid-wait.
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	var polls sync.WaitGroup
	for i := range 200 {
		c := pollers[i%len(pollers)]
		polls.Add(1)
		go func() {
			defer polls.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.url("/api/poll?cursor=0&timeout=8"), nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			if resp, err := hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	// The server still answers others promptly.
	eventually(t, 20*time.Second, "polls to be open", func() bool { return ts.app.metrics.openPolls.Load() == int64(len(pollers)) })
	t0 := time.Now()
	alice.send(bob, "still served")
	if got := bob.messages(); len(got) != 1 {
		t.Fatalf("bob got %d messages", len(got))
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("serving a send and a poll took %v with %d idle connections open", d, nIdle)
	}
	peak := runtime.NumGoroutine()
	heapPeak := heapInUse()

	// Everyone leaves.
	cancel()
	polls.Wait()
	tr.CloseIdleConnections()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		// A few are allowed for goroutines of the runtime and net/http in
		// passing; a leak would be hundreds.
		if n <= baseline+3 {
			t.Logf("goroutines: %d at baseline, %d with %d idle connections and 200 polls, %d after they left", baseline, peak, nIdle, n)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d at baseline, %d after the clients left\n%s", baseline, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Memory goes back too: what the connections held is garbage now.
	heapAfter := heapInUse()
	t.Logf("heap in use: %d MiB at baseline, %d MiB with the clients, %d MiB after", heapBase>>20, heapPeak>>20, heapAfter>>20)
	if heapAfter > heapBase+16<<20 {
		t.Errorf("heap in use grew from %d to %d MiB after the clients left", heapBase>>20, heapAfter>>20)
	}
	// Parked polls go at their deadline at the latest.
	eventually(t, 20*time.Second, "the abandoned polls to be released", func() bool {
		return ts.app.notifier.waiting() == 0 && ts.app.metrics.openPolls.Load() == 0 && ts.app.parker.parked() == 0
	})
	if d := time.Since(t0); d > 15*time.Second {
		t.Errorf("abandoned polls released %v after the send, beyond their 8 s timeout", d)
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // a second cycle empties sync.Pools' victim caches
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
