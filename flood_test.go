package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// behindProxy makes loopback a trusted proxy and exempts nobody, so tests
// can speak for many client addresses with X-Forwarded-For.
func behindProxy(c *Config) {
	c.RateLimitExempt = nil
	c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// doFrom is c.do with a client address claimed through the trusted proxy.
func (c *client) doFrom(addr, method, path string, body any) (*http.Response, []byte) {
	c.t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequest(method, c.ts.url(path), bytesReader(data, body != nil))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("X-Forwarded-For", addr)
	return c.roundTrip(req)
}

// tally counts answers by status and checks every 429 on the way.
type tally struct {
	mu     sync.Mutex
	counts map[int]int
}

func (ta *tally) add(t testing.TB, resp *http.Response, data []byte) {
	t.Helper()
	if resp.StatusCode == http.StatusTooManyRequests {
		checkError(t, resp, data, http.StatusTooManyRequests, "rate_limited")
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
		}
	}
	ta.mu.Lock()
	if ta.counts == nil {
		ta.counts = map[int]int{}
	}
	ta.counts[resp.StatusCode]++
	ta.mu.Unlock()
}

// flood runs n goroutines, each calling f times times.
func flood(n, times int, f func(g, i int)) {
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range times {
				f(g, i)
			}
		}()
	}
	wg.Wait()
}

func TestFlood_FailedLoginsPerName(t *testing.T) {
	ts := newTestServer(t, behindProxy)
	victim, other := ts.user("victim"), ts.user("other")
	befriend(victim, other)
	var ta tally
	// 40 attackers at 40 addresses guess one password each at a time.
	flood(40, 3, func(g, i int) {
		resp, data := ts.anon().doFrom(fmt.Sprintf("10.1.%d.%d", g, i), "POST", "/api/login",
			map[string]any{"username": victim.username, "password": fmt.Sprintf("guess %d %d", g, i)})
		ta.add(t, resp, data)
	})
	if ta.counts[http.StatusUnauthorized] > 5 {
		t.Errorf("%d wrong passwords were checked for one name; the limit is 5 per 15 minutes", ta.counts[http.StatusUnauthorized])
	}
	if ta.counts[http.StatusUnauthorized]+ta.counts[http.StatusTooManyRequests] != 120 {
		t.Errorf("answers: %v", ta.counts)
	}
	// Other users are served: existing sessions, and logins for other names.
	victim.send(other, "still here")
	resp, data := other.doFrom("10.9.9.9", "POST", "/api/login", map[string]any{"username": other.username, "password": other.password})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("another user's login during the flood: %d %s", resp.StatusCode, data)
	}
	t.Logf("one name from 40 addresses:%s", fmtCounts(ta.counts)+fmt.Sprintf(" %d×401", ta.counts[401]))
}

func TestFlood_FailedLoginsPerAddress(t *testing.T) {
	ts := newTestServer(t, behindProxy)
	other := ts.user("other")
	targets := make([]string, 30)
	for i := range targets {
		targets[i] = uniqueName("target")
		ts.account(targets[i], targets[i])
	}
	var ta tally
	// One address tries 30 names, 4 guesses each, from 30 goroutines.
	flood(30, 4, func(g, i int) {
		resp, data := ts.anon().doFrom("10.2.0.1", "POST", "/api/login",
			map[string]any{"username": targets[g], "password": fmt.Sprintf("guess %d", i)})
		ta.add(t, resp, data)
	})
	if ta.counts[http.StatusUnauthorized] > 20 {
		t.Errorf("%d failed logins were checked from one address; the limit is 20 a minute", ta.counts[http.StatusUnauthorized])
	}
	resp, data := other.doFrom("10.2.0.2", "POST", "/api/login", map[string]any{"username": other.username, "password": other.password})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a login from another address during the flood: %d %s", resp.StatusCode, data)
	}
	t.Logf("30 names from one address: %d×401%s", ta.counts[401], fmtCounts(ta.counts))
}

func TestFlood_SignupsPerAddress(t *testing.T) {
	ts := newTestServer(t, behindProxy)
	// 95 sign-ups this hour already (hashing 100 passwords would make the
	// test slow, not stronger); 40 more arrive at once.
	now := time.Now()
	for range 95 {
		ts.app.limits.signupsByAddr.record("10.3.0.1", now)
	}
	var ta tally
	flood(40, 1, func(g, i int) {
		resp, data := ts.anon().doFrom("10.3.0.1", "POST", "/api/signup",
			map[string]any{"username": fmt.Sprintf("bot%d", g), "password": "correct horse battery"})
		ta.add(t, resp, data)
	})
	if ta.counts[http.StatusCreated] > 5 {
		t.Errorf("%d sign-ups went through; only 5 were left of the 100 an hour", ta.counts[http.StatusCreated])
	}
	if n := countRows(t, ts, `SELECT count(*) FROM users WHERE username LIKE 'bot%'`); n != ta.counts[http.StatusCreated] {
		t.Errorf("%d bot accounts stored, %d answered 201", n, ta.counts[http.StatusCreated])
	}
	resp, data := ts.anon().doFrom("10.3.0.2", "POST", "/api/signup", map[string]any{"username": uniqueName("human"), "password": "correct horse battery"})
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("a sign-up from another address during the flood: %d %s", resp.StatusCode, data)
	}
	t.Logf("40 sign-ups with 5 left:%s", fmtCounts(ta.counts))
}

func TestFlood_MessagesPerUser(t *testing.T) {
	ts := newTestServer(t, behindProxy)
	spammer, bob, alice, carol := ts.user("spam"), ts.user("bob"), ts.user("alice"), ts.user("carol")
	befriend(spammer, bob)
	befriend(alice, carol)
	start := time.Now()
	var ta tally
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		flood(20, 20, func(g, i int) {
			resp, data := spammer.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": fmt.Sprint(g, i)})
			ta.add(t, resp, data)
		})
	}()
	// Alice, sending at a human pace meanwhile, is never limited.
	for i := range 10 {
		alice.send(carol, fmt.Sprint("hello ", i))
	}
	wg.Wait()
	allowed := 100 + int(20*time.Since(start).Seconds()) + 1
	if got := ta.counts[http.StatusCreated]; got > allowed || got < 100 {
		t.Errorf("%d sends of 400 went through; the bucket allows 100 then 20/s (%d here)", got, allowed)
	}
	if ta.counts[http.StatusTooManyRequests] == 0 {
		t.Error("the flood was never limited")
	}
	t.Logf("400 sends from 20 goroutines in %v:%s", time.Since(start).Round(time.Millisecond), fmtCounts(ta.counts))
}

func TestFlood_FullQueueStopsGrowing(t *testing.T) {
	const maxQueue = 50
	ts := newTestServer(t, func(c *Config) { c.MaxQueue = maxQueue })
	bob := ts.user("bob")
	senders := make([]*client, 5)
	for i := range senders {
		senders[i] = ts.user("fill")
		befriend(senders[i], bob)
	}
	sendAll := func(n int) *tally {
		var ta tally
		flood(len(senders), n, func(g, i int) {
			resp, data := senders[g].do("POST", "/api/messages", map[string]any{"to": bob.username, "body": fmt.Sprintf("%d-%d %0400d", g, i, 0)})
			if resp.StatusCode == http.StatusConflict {
				checkError(t, resp, data, http.StatusConflict, "queue_full")
			}
			ta.add(t, resp, data)
		})
		return &ta
	}
	first := sendAll(20)
	if first.counts[http.StatusCreated] != maxQueue || first.counts[http.StatusConflict] != 100-maxQueue {
		t.Fatalf("100 sends into a queue of %d: %v", maxQueue, first.counts)
	}
	size := func() int64 {
		var n int64
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(ts.cfg.DBPath + suffix); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	// The checkpointer copies committed pages into the main file whenever
	// it runs; after this it has nothing left to copy.
	if err := ts.sqlite().ckpt.now(); err != nil {
		t.Fatal(err)
	}
	before := size()
	second := sendAll(100)
	if second.counts[http.StatusConflict] != 500 {
		t.Fatalf("500 sends into a full queue: %v", second.counts)
	}
	if after := size(); after != before {
		t.Errorf("500 refused sends grew the database files from %d to %d bytes", before, after)
	}
	if got := len(bob.messages()); got != maxQueue {
		t.Errorf("bob's queue holds %d messages, cap %d", got, maxQueue)
	}
	// Cleaning makes room again.
	bob.mustDo("POST", "/api/clean", map[string]any{"upto": 1 << 40}, http.StatusOK)
	senders[0].send(bob, "room again")
	ts.checkInvariants()
}

func bytesReader(data []byte, ok bool) io.Reader {
	if !ok {
		return nil
	}
	return bytes.NewReader(data)
}
