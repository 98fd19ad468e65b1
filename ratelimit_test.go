package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

// checkRateLimited checks a 429 rate_limited with a Retry-After of at most
// max seconds.
func checkRateLimited(t testing.TB, resp *http.Response, data []byte, max int) {
	t.Helper()
	checkError(t, resp, data, http.StatusTooManyRequests, "rate_limited")
	n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || n < 1 || n > max {
		t.Fatalf("Retry-After %q, want whole seconds from 1 to %d", resp.Header.Get("Retry-After"), max)
	}
}

func login(c *client, username, password string, edit func(*http.Request)) (*http.Response, []byte) {
	c.t.Helper()
	return c.doWith("POST", "/api/login", map[string]any{"username": username, "password": password}, edit)
}

func TestRateLimit_FailedLoginsPerUsername(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, noExemption)
	alice := ts.user("alice")
	bob := ts.user("bob")
	anon := ts.anon()
	for i := range 5 {
		resp, data := login(anon, alice.username, "wrong password", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failed login %d: %d %s", i+1, resp.StatusCode, data)
		}
	}
	// The right password is refused too, whatever the case of the name.
	resp, data := login(anon, alice.username, alice.password, nil)
	checkRateLimited(t, resp, data, 15*60)
	resp, data = login(anon, "ALICE"+alice.username[5:], alice.password, nil)
	checkRateLimited(t, resp, data, 15*60)
	// Other users from the same address are not affected.
	resp, data = login(anon, bob.username, bob.password, nil)
	checkJSON(t, resp, data, http.StatusOK)
	// alice's live session is untouched by all this.
	alice.mustDo("GET", "/api/me", nil, http.StatusOK)
}

func TestRateLimit_FailedLoginsPerAddress(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, noExemption)
	anon := ts.anon()
	var users []*client
	for range 5 {
		users = append(users, ts.user("addr"))
	}
	// 20 failures over 4 names (5 each, within the per-name limit's reach
	// only on the 6th); successes do not count.
	for i := range 20 {
		u := users[i%4]
		resp, data := login(anon, u.username, "wrong password", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failed login %d: %d %s", i+1, resp.StatusCode, data)
		}
		if i == 10 {
			login(anon, users[4].username, users[4].password, nil) // a success in between
		}
	}
	resp, data := login(anon, users[4].username, users[4].password, nil)
	checkRateLimited(t, resp, data, 60)
	resp, data = login(anon, "nobody-here", "whatever1", nil)
	checkRateLimited(t, resp, data, 60)
	// Sign-ups are another limit.
	resp, data = anon.do("POST", "/api/signup", map[string]any{"username": "stillfine", "password": "12345678"})
	checkJSON(t, resp, data, http.StatusCreated)
}

func TestRateLimit_PerClientAddressBehindProxy(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, noExemption, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.RateLimitExempt = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	})
	u := ts.user("proxied")
	var others []*client
	for range 4 {
		others = append(others, ts.user("other"))
	}
	anon := ts.anon()
	from := func(addr string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("X-Forwarded-For", "192.0.2.1, "+addr) }
	}
	for i := range 20 {
		resp, _ := login(anon, others[i%4].username, "wrong password", from("203.0.113.5"))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failed login %d: %d", i+1, resp.StatusCode)
		}
	}
	resp, data := login(anon, u.username, u.password, from("203.0.113.5"))
	checkRateLimited(t, resp, data, 60)
	resp, data = login(anon, u.username, u.password, from("203.0.113.6"))
	checkJSON(t, resp, data, http.StatusOK)
	// An exempt client address is never limited.
	for range 25 {
		login(anon, u.username, "wrong password", from("198.51.100.7"))
	}
	resp, data = login(anon, u.username, u.password, from("198.51.100.7"))
	checkJSON(t, resp, data, http.StatusOK)
	// others[0] has had 5 failures: limited elsewhere, not from there.
	resp, data = login(anon, others[0].username, others[0].password, from("203.0.113.9"))
	checkRateLimited(t, resp, data, 15*60)
	resp, data = login(anon, others[0].username, others[0].password, from("198.51.100.7"))
	checkJSON(t, resp, data, http.StatusOK)
}

func TestRateLimit_Signups(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, noExemption)
	anon := ts.anon()
	// 99 sign-ups from this address already this hour (recorded directly:
	// 99 real ones would cost 99 password hashes).
	now := time.Now()
	for range 99 {
		ts.app.limits.signupsByAddr.record("127.0.0.1", now)
	}
	resp, data := anon.do("POST", "/api/signup", map[string]any{"username": "hundredth", "password": "12345678"})
	checkJSON(t, resp, data, http.StatusCreated)
	resp, data = anon.do("POST", "/api/signup", map[string]any{"username": "toomany", "password": "12345678"})
	checkRateLimited(t, resp, data, 3600)
	// Nothing was stored: the name is free for a later sign-up.
	ts.restart()
	resp, data = anon.do("POST", "/api/signup", map[string]any{"username": "toomany", "password": "12345678"})
	checkJSON(t, resp, data, http.StatusCreated)
}

func TestRateLimit_MessagesAndUploads(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, noExemption)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]

	// The burst: the first 100 all pass.
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				resp, _ := alice.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": fmt.Sprint(w, "-", i)})
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if statuses[http.StatusCreated] != 100 {
		t.Fatalf("the burst of 100 answered %v", statuses)
	}
	// Then, faster than 20 per second, a 429 comes (the guard allows for
	// the refill during the test).
	start := time.Now()
	limited := false
	for i := 0; !limited; i++ {
		resp, data := alice.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": "more"})
		switch resp.StatusCode {
		case http.StatusCreated:
		case http.StatusTooManyRequests:
			checkRateLimited(t, resp, data, 5)
			limited = true
		default:
			t.Fatalf("send: %d %s", resp.StatusCode, data)
		}
		if float64(i) > 50+40*time.Since(start).Seconds() {
			t.Fatalf("%d sends after the burst and no 429", i)
		}
	}
	// Uploads share the limit: a burst of them right now meets a 429.
	var up sync.Map
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := alice.upload([][2]string{{"to", bob.username}, {"file", ""}}, "f.txt", "", []byte("x"))
			up.Store(resp.StatusCode, true)
		}()
	}
	wg.Wait()
	if _, ok := up.Load(http.StatusTooManyRequests); !ok {
		t.Fatal("20 uploads right after the message limit was reached met no 429")
	}
	// The limit is per user: bob may send.
	bob.send(alice, "my own bucket")
}

func TestRateLimit_ExemptAddresses(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t) // loopback exempt
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	anon := ts.anon()
	for range 25 {
		resp, _ := login(anon, alice.username, "wrong password", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("exempt failed login: %d", resp.StatusCode)
		}
	}
	alice.login()
	now := time.Now()
	for range 150 {
		ts.app.limits.signupsByAddr.record("127.0.0.1", now)
	}
	anon.mustDo("POST", "/api/signup", map[string]any{"username": "exempt", "password": "12345678"}, http.StatusCreated)
	sendMany(alice, bob, 250, 8)
}

// TestRateLimit_ConcurrentGoodLoginsAreNotLimited: only failed logins (401s)
// count, so logins with the right password, however many run at once from
// one address or for one name, are never refused.
func TestRateLimit_ConcurrentGoodLoginsAreNotLimited(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, noExemption)
	var users []*client
	for range 25 {
		users = append(users, ts.user("many"))
	}
	same := users[0]
	// Hold every password-hashing slot, so the logins below are all in
	// flight at once before any of them is decided.
	slots := ts.app.hasher.slots
	for range cap(slots) {
		slots <- struct{}{}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	login1 := func(c *client) {
		defer wg.Done()
		resp, _ := login(ts.anon(), c.username, c.password, nil)
		mu.Lock()
		codes[resp.StatusCode]++
		mu.Unlock()
	}
	for _, u := range users { // 25 names from one address (limit 20 failures)
		wg.Add(1)
		go login1(u)
	}
	for range 8 { // one name 8 times (limit 5 failures)
		wg.Add(1)
		go login1(same)
	}
	time.Sleep(300 * time.Millisecond) // let them all arrive; they wait for a slot
	for range cap(slots) {
		<-slots
	}
	wg.Wait()
	if codes[http.StatusOK] != 33 {
		t.Fatalf("33 logins with the right password answered %v", codes)
	}
	// Failures still count as before.
	for range 5 {
		login(ts.anon(), same.username, "wrong password", nil)
	}
	resp, data := login(ts.anon(), same.username, same.password, nil)
	checkRateLimited(t, resp, data, 15*60)
}

func TestWindowLimiter_ReservationsWaitForTheUndecided(t *testing.T) {
	t.Parallel()
	l := newWindowLimiter(2, time.Hour)
	ctx := context.Background()
	_, settleA, _ := l.reserve(ctx, "k")
	_, settleB, _ := l.reserve(ctx, "k")
	// Both places are held by undecided attempts: a third waits.
	got := make(chan func(bool), 1)
	go func() {
		wait, settle, err := l.reserve(ctx, "k")
		if err != nil || wait != 0 {
			t.Errorf("third reserve: %v %v", wait, err)
		}
		got <- settle
	}()
	select {
	case <-got:
		t.Fatal("a third attempt passed while two were undecided")
	case <-time.After(50 * time.Millisecond):
	}
	settleA(false) // a success: leaves no trace, frees its place
	settleC := <-got
	settleB(true)
	settleC(true)
	settleC(true) // settling twice changes nothing
	if wait, _, _ := l.reserve(ctx, "k"); wait <= 0 || wait > time.Hour {
		t.Fatalf("two counted events of two: wait %v", wait)
	}
	if w := l.retryAfter("k", time.Now()); w <= 0 {
		t.Fatalf("retryAfter %v", w)
	}
	// A waiting reservation gives up with its context.
	l2 := newWindowLimiter(1, time.Hour)
	_, settle, _ := l2.reserve(ctx, "k")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := l2.reserve(cctx, "k"); err == nil {
		t.Fatal("a cancelled wait did not end")
	}
	settle(false)
	if wait, _, err := l2.reserve(ctx, "k"); wait != 0 || err != nil {
		t.Fatalf("after the only attempt succeeded: %v %v", wait, err)
	}
	// Events that left the window free their places.
	l3 := newWindowLimiter(1, time.Hour)
	l3.record("k", time.Now().Add(-2*time.Hour))
	if wait, _, _ := l3.reserve(ctx, "k"); wait != 0 {
		t.Fatalf("an expired event still counts: %v", wait)
	}
}
