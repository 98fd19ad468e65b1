package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"webim/internal/h1"
	"webim/internal/procstat"
)

// runChild is the bare net/http server: it listens on a loopback port,
// writes its address on out, and serves until in reaches EOF (the parent
// closed it, or died).
//
//	POST /ok    reads the body, answers 201 with a small JSON object
//	GET  /hold  holds the request until the client goes away
//	GET  /stats {"held": n, "goroutines": n}
func runChild(in io.Reader, out io.Writer) error {
	_, _ = procstat.RaiseFileLimit()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var held atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ok", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}` + "\n"))
	})
	mux.HandleFunc("GET /hold", func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		defer held.Add(-1)
		<-r.Context().Done()
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"held": held.Load(), "goroutines": int64(runtime.NumGoroutine())})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_, _ = io.Copy(io.Discard, in)
		_ = srv.Close()
	}()
	fmt.Fprintln(out, ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// child is a running bare server.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	base  string
}

// startChild starts this program again as the bare server.
func startChild() (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-child")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("child: %w", err)
	}
	return &child{cmd: cmd, stdin: stdin, base: "http://" + strings.TrimSpace(line)}, nil
}

// stop ends the child and waits for it.
func (c *child) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// stats asks the child how many requests it holds and how many goroutines
// it runs, on sc (a connection to it).
func (c *child) stats(sc *h1.Conn) (held, goroutines int64, err error) {
	sc.Start("GET", "/stats", nil)
	sc.Finish("", nil)
	a, err := sc.RoundTrip(10*time.Second, nil)
	if err != nil {
		return 0, 0, err
	}
	if a.Status != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /stats: status %d", a.Status)
	}
	var s struct{ Held, Goroutines int64 }
	err = json.Unmarshal(a.Body, &s)
	return s.Held, s.Goroutines, err
}

// sendBody and sendToken are the size of a load generator's send: its JSON
// body and its session token (32 random bytes, base64url).
const (
	sendBody  = `{"to":"lg-p00001","body":"lg 0123abcd 12345","client_msg_id":"0123abcd-17-12345"}`
	sendToken = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
)

// httpResult is the bare handler's rate under conc closed-loop clients.
type httpResult struct {
	Conc                  int     `json:"conc"`
	Requests              int     `json:"requests"`
	ReqPerSec             float64 `json:"req_per_sec"`
	P50Millis             float64 `json:"p50_ms"`
	P99Millis             float64 `json:"p99_ms"`
	ServerCPUMicrosPerReq float64 `json:"server_cpu_us_per_req"`
}

// measureHTTP drives POST /ok of a bare child server with conc clients for
// d. Each client is the load generator's (internal/h1) on its own
// keep-alive connection, and sends its next request, a send's body with a
// bearer token, when the last is answered.
func measureHTTP(ctx context.Context, conc int, d time.Duration) (*httpResult, error) {
	ch, err := startChild()
	if err != nil {
		return nil, err
	}
	defer ch.stop()
	dialer, err := h1.NewDialer(ch.base, 1)
	if err != nil {
		return nil, err
	}
	conns := make([]*h1.Conn, conc)
	for i := range conns {
		conns[i] = h1.NewConn(ctx, dialer)
		defer conns[i].Close()
	}
	post := func(c *h1.Conn) error {
		c.Start("POST", "/ok", nil)
		c.Finish(sendToken, func(b []byte) []byte { return append(b, sendBody...) })
		a, err := c.RoundTrip(30*time.Second, nil)
		if err != nil {
			return err
		}
		if a.Status != http.StatusCreated {
			return fmt.Errorf("status %d", a.Status)
		}
		return nil
	}
	// Warm up: open the connections.
	for _, c := range conns {
		if err := post(c); err != nil {
			return nil, err
		}
	}
	cpu0, _ := procstat.CPUTime(ch.cmd.Process.Pid)
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) && ctx.Err() == nil {
				t := time.Now()
				if err := post(c); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, _ := procstat.CPUTime(ch.cmd.Process.Pid)
	if firstErr != nil {
		return nil, firstErr
	}
	slices.Sort(lat)
	res := &httpResult{Conc: conc, Requests: len(lat), ReqPerSec: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		res.P50Millis = ms(lat[(len(lat)-1)/2])
		res.P99Millis = ms(lat[(len(lat)*99+99)/100-1])
		res.ServerCPUMicrosPerReq = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(len(lat))
	}
	return res, nil
}

// heldResult is the memory a bare server spends per idle held request.
type heldResult struct {
	Held                 int     `json:"held"`
	RSSBefore            int64   `json:"rss_before"`
	RSSHeld              int64   `json:"rss_held"`
	BytesPerRequest      float64 `json:"bytes_per_request"`
	GoroutinesPerRequest float64 `json:"goroutines_per_request"`
}

// measureHeld starts a fresh bare child, opens n requests to GET /hold, each
// on its own connection, and measures the child's RSS before and after.
func measureHeld(ctx context.Context, n int, logf func(string, ...any)) (*heldResult, error) {
	if lim, err := procstat.RaiseFileLimit(); err == nil && uint64(n)+64 > lim {
		return nil, fmt.Errorf("%d held requests need more than this process's %d file descriptors", n, lim)
	}
	ch, err := startChild()
	if err != nil {
		return nil, err
	}
	defer ch.stop()
	dialer, err := h1.NewDialer(ch.base, 1)
	if err != nil {
		return nil, err
	}
	statC := h1.NewConn(ctx, dialer)
	defer statC.Close()
	// Warm up the server on the stats connection, then take the baseline.
	if _, _, err := ch.stats(statC); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	pid := ch.cmd.Process.Pid
	rss0, err := procstat.RSS(pid)
	if err != nil {
		return nil, err
	}
	_, g0, err := ch.stats(statC)
	if err != nil {
		return nil, err
	}

	// Each held request is a GET on its own connection, as a load
	// generator's idle poll; the end of holdCtx closes them all.
	holdCtx, release := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { release(); wg.Wait() }()
	var failed atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1.NewConn(holdCtx, dialer)
			defer c.Close()
			c.Start("GET", "/hold", nil)
			c.Finish(sendToken, nil)
			if _, err := c.RoundTrip(time.Hour, nil); err != nil && holdCtx.Err() == nil {
				failed.Add(1)
			}
		}()
		if i%500 == 499 {
			time.Sleep(50 * time.Millisecond) // stay under the listen backlog
		}
	}
	// Wait until the server holds them all (or 30 s).
	var held, g1 int64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if held, g1, err = ch.stats(statC); err != nil {
			return nil, err
		}
		if held+failed.Load() >= int64(n) {
			break
		}
	}
	if held == 0 {
		return nil, fmt.Errorf("no request held (%d failed)", failed.Load())
	}
	if f := failed.Load(); f > 0 {
		logf("%d of %d held requests failed", f, n)
	}
	time.Sleep(time.Second)
	rss1, err := procstat.RSS(pid)
	if err != nil {
		return nil, err
	}
	return &heldResult{
		Held: int(held), RSSBefore: rss0, RSSHeld: rss1,
		BytesPerRequest:      float64(rss1-rss0) / float64(held),
		GoroutinesPerRequest: float64(g1-g0) / float64(held),
	}, nil
}

func numCPU() int { return runtime.NumCPU() }

// memTotal returns MemTotal from /proc/meminfo, or 0.
func memTotal() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
