package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	return c
}

// clientFrom is an HTTP client whose connections come from src; one
// connection at most, kept alive, so it holds one slot.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxConnsPerHost: 1}}
}

// closedAtOnce dials addr from src and reports whether the server closed
// the connection without an answer (a reset during connect counts).
func closedAtOnce(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	defer c.Close()
	io.WriteString(c, "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err != nil && !isTimeout(err)
}

var metricLine = regexp.MustCompile(`(?m)^(webim_[a-z_]+) (\d+)$`)

// scrape reads /metrics' plain values.
func scrape(t *testing.T, c *http.Client, addr string) map[string]int64 {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]int64{}
	for _, m := range metricLine.FindAllStringSubmatch(string(b), -1) {
		out[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
	}
	return out
}

// signupLogin makes an account through c and returns its token.
func signupLogin(t *testing.T, c *http.Client, addr, name string) string {
	t.Helper()
	body := fmt.Sprintf(`{"username":%q,"password":"correct horse battery"}`, name)
	for _, path := range []string{"/api/signup", "/api/login"} {
		resp, err := c.Post("http://"+addr+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		var out struct{ Token string }
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s for %s: %d", path, name, resp.StatusCode)
		}
		if path == "/api/login" {
			return out.Token
		}
	}
	return ""
}

// TestConnLimit_ParkedPollsHoldTheirSlot: a parked poll's connection counts
// as open (it is), and so does the connection handed back to the server
// after the poll answered; a slot comes back only when the connection closes.
func TestConnLimit_ParkedPollsHoldTheirSlot(t *testing.T) {
	r := runInProcess(t, "-addr", "127.0.0.1:0", "-max-conns", "4", "-max-conns-per-addr", "4")
	admin := clientFrom("127.0.0.1")
	var tokens []string
	for i := range 3 {
		tokens = append(tokens, signupLogin(t, admin, r.addr, uniqueName(fmt.Sprintf("park%d_", i))))
	}
	polls := make([]net.Conn, 3)
	for i, tok := range tokens {
		polls[i] = dialFrom(t, "127.0.0.1", r.addr)
		defer polls[i].Close()
		fmt.Fprintf(polls[i], "GET /api/poll?timeout=3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", tok)
	}
	eventually(t, 20*time.Second, "three polls parked", func() bool { return scrape(t, admin, r.addr)["webim_parked_polls"] == 3 })
	m := scrape(t, admin, r.addr)
	if m["webim_open_connections"] != 4 || m["webim_max_connections"] != 4 {
		t.Fatalf("with 3 parked polls and the scraper: %v", m)
	}
	refusedAtCap := func(what string) {
		t.Helper()
		before := scrape(t, admin, r.addr)["webim_refused_connections_total"]
		if !closedAtOnce(t, "127.0.0.1", r.addr) {
			t.Fatalf("%s: a fifth connection was answered", what)
		}
		if n := scrape(t, admin, r.addr)["webim_refused_connections_total"]; n != before+1 {
			t.Fatalf("%s: webim_refused_connections_total %d, want %d", what, n, before+1)
		}
	}
	refusedAtCap("parked")

	// The polls answer at their timeout and their connections go back to
	// the server for keep-alive: still open, still counted.
	for i, c := range polls {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("poll %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	eventually(t, 20*time.Second, "no poll parked", func() bool { return scrape(t, admin, r.addr)["webim_parked_polls"] == 0 })
	if n := scrape(t, admin, r.addr)["webim_open_connections"]; n != 4 {
		t.Fatalf("after the polls answered: %d open connections, want 4", n)
	}
	refusedAtCap("answered")

	// Closing one gives its slot back.
	polls[0].Close()
	eventually(t, 20*time.Second, "a slot is free", func() bool { return scrape(t, admin, r.addr)["webim_open_connections"] == 3 })
	resp, err := clientFrom("127.0.0.1").Get("http://" + r.addr + "/api/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health on the freed slot: %v %v", resp, err)
	}
	resp.Body.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestConnLimit_FloodAndSlowLoris: 20,000 connections from two addresses
// and 100 slow-loris connections from a third, against -max-conns 400 and
// -max-conns-per-addr 100: each address gets its 100, every other
// connection is closed at once, and another client's health checks,
// sign-ups and logins are answered throughout. Filling the global cap
// refuses everyone until slots free.
func TestConnLimit_FloodAndSlowLoris(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 20,000-connection flood")
	}
	r := runInProcess(t, "-addr", "127.0.0.1:0", "-max-conns", "400", "-max-conns-per-addr", "100")
	other := "127.0.0.2"
	var held []net.Conn
	var heldMu sync.Mutex
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	hold := func(c net.Conn) {
		heldMu.Lock()
		held = append(held, c)
		heldMu.Unlock()
	}

	// Slow-loris: 100 connections sending half a header, then nothing.
	for range 100 {
		c := dialFrom(t, "127.0.1.3", r.addr)
		hold(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	}
	obs := clientFrom(other)
	before := scrape(t, obs, r.addr)["webim_refused_connections_total"]
	if !closedAtOnce(t, "127.0.1.3", r.addr) {
		t.Fatal("a 101st connection from the slow-loris address was answered")
	}
	if n := scrape(t, obs, r.addr)["webim_refused_connections_total"]; n != before+1 {
		t.Fatalf("webim_refused_connections_total %d, want %d", n, before+1)
	}

	// The flood: each connection asks for /api/health; the first 100 of each
	// address are answered and kept, the rest closed before any answer.
	const flood = 20_000
	var next, admitted, refused atomic.Int64
	var wg sync.WaitGroup
	others := make(chan error, 1)
	stopOthers := make(chan struct{})
	go func() {
		// Another user keeps using the server while the flood runs.
		defer close(others)
		for i := 0; ; i++ {
			select {
			case <-stopOthers:
				return
			default:
			}
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
				DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(other)}}).DialContext}}
			resp, err := c.Get("http://" + r.addr + "/api/health")
			if err != nil || resp.StatusCode != http.StatusOK {
				others <- fmt.Errorf("health during the flood: %v %v", resp, err)
				return
			}
			resp.Body.Close()
			if i%10 == 0 {
				signupLogin(t, c, r.addr, uniqueName("busy"))
			}
		}
	}()
	for w := range 32 {
		src := []string{"127.0.1.1", "127.0.1.2"}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
			for next.Add(1) <= flood {
				c, err := d.Dial("tcp", r.addr)
				if errors.Is(err, syscall.ECONNRESET) {
					refused.Add(1) // reset before connect even returned
					continue
				}
				if err != nil {
					t.Errorf("flood dial: %v", err)
					return
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.WriteString(c, "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err == nil && resp.StatusCode == http.StatusOK {
					resp.Body.Close()
					admitted.Add(1)
					hold(c)
					continue
				}
				if isTimeout(err) {
					t.Errorf("flood connection neither answered nor closed: %v", err)
				}
				refused.Add(1)
				c.Close()
			}
		}()
	}
	wg.Wait()
	close(stopOthers)
	if err := <-others; err != nil {
		t.Fatal(err)
	}
	if admitted.Load() != 200 || refused.Load() != flood-200 {
		t.Fatalf("flood: %d admitted, %d refused; want 200 and %d", admitted.Load(), refused.Load(), flood-200)
	}
	m := scrape(t, obs, r.addr)
	if m["webim_refused_connections_total"] < before+1+flood-200 || m["webim_open_connections"] > 400 {
		t.Fatalf("after the flood: %v", m)
	}

	// Filling what is left of the global cap from more addresses refuses
	// the rest, others included, until connections close.
	var extra []net.Conn
	for i := 4; len(extra) < 400-int(m["webim_open_connections"]); i++ {
		for range 50 {
			extra = append(extra, dialFrom(t, fmt.Sprintf("127.0.1.%d", i), r.addr))
		}
	}
	for _, src := range []string{"127.0.1.99", other} {
		if !closedAtOnce(t, src, r.addr) {
			t.Fatalf("with the global cap full, a connection from %s was answered", src)
		}
	}
	for _, c := range extra {
		c.Close()
	}
	eventually(t, 20*time.Second, "others answered once slots free", func() bool {
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(other)}}).DialContext}}
		resp, err := c.Get("http://" + r.addr + "/api/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func TestConnLimit_DefaultsAndFlags(t *testing.T) {
	for fds, want := range map[int]int{0: 10_000, 1024: 922, 20_000: 18_976, 1 << 20: 1<<20 - 1024, 40: 16} {
		if got := defaultMaxConns(fds); got != want {
			t.Errorf("defaultMaxConns(%d) = %d, want %d", fds, got, want)
		}
	}
	env := func(k string) string { return map[string]string{"WEBIM_MAX_CONNS": "2_000"}[k] }
	cfg, err := parseConfig(nil, env, io.Discard)
	if err != nil || cfg.MaxConns != 2000 || cfg.MaxConnsPerAddr != 500 {
		t.Errorf("WEBIM_MAX_CONNS=2_000: %d/%d, %v", cfg.MaxConns, cfg.MaxConnsPerAddr, err)
	}
	for _, args := range [][]string{{"-max-conns", "0"}, {"-max-conns", "many"}, {"-max-conns-per-addr", "-1"}} {
		if _, err := parseConfig(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	cfg, _ = parseConfig(nil, func(string) string { return "" }, io.Discard)
	if cfg.MaxConns != defaultMaxConns(fdLimit()) {
		t.Errorf("default -max-conns %d, want %d", cfg.MaxConns, defaultMaxConns(fdLimit()))
	}
}

func TestConnLimit_AddrKeys(t *testing.T) {
	l := newConnLimiter(10, 1, loopbackOnly[:0])
	a := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}
	b := &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 2}     // same /64
	c := &net.TCPAddr{IP: net.ParseIP("2001:db8:0:1::1"), Port: 3} // another /64
	ka, ok := l.admit(a)
	if !ok {
		t.Fatal("first connection refused")
	}
	if _, ok := l.admit(b); ok {
		t.Error("a second connection from the same /64 was admitted over -max-conns-per-addr 1")
	}
	if _, ok := l.admit(c); !ok {
		t.Error("another /64 was refused")
	}
	l.release(ka)
	if _, ok := l.admit(b); !ok {
		t.Error("the /64's slot did not come back")
	}
	ex := newConnLimiter(10, 1, loopbackOnly)
	for range 3 {
		if _, ok := ex.admit(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9}); !ok {
			t.Error("an exempt address was capped per address")
		}
	}
}
