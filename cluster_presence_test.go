package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"webim/internal/pgtest"
)

// Several webim processes on one PostgreSQL database: presence is the
// cluster's, and failed logins are limited as on one node. These tests make
// their database directly, so they run once, whatever the engine pass.
// Watchers poll with a 1 s timeout, so what they see does not depend on
// cross-node wake-ups: only on the rows the nodes write.

const clusterGrace = 3 * time.Second

// startCluster starts n nodes on one fresh database with the test grace.
func startPresenceCluster(t *testing.T, n int, extra ...string) []*proc {
	t.Helper()
	url := pgtest.NewDatabase(t)
	bin := buildWebim(t)
	nodes := make([]*proc, n)
	for i := range nodes {
		args := append([]string{"-addr", "127.0.0.1:0", "-db", url, "-offline-grace", clusterGrace.String()}, extra...)
		nodes[i] = startWebim(t, bin, args...)
	}
	return nodes
}

// pollLoop polls base as token until ctx ends or a poll is refused, handing
// each answer's events to seen; it returns the refusing status (0 if ctx
// ended).
func pollLoop(ctx context.Context, hc *http.Client, base, token string, timeout int, seen func(pollResult)) int {
	var cursor int64
	for ctx.Err() == nil {
		st, data, err := apiCall(hc, base, token, "GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=%d", cursor, timeout), nil)
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if st != http.StatusOK {
			return st
		}
		var p pollResult
		if err := json.Unmarshal(data, &p); err != nil {
			return -1
		}
		seen(p)
		cursor = p.Cursor
	}
	return 0
}

// presenceLog is what a watcher saw about one user, in order.
type presenceLog struct {
	mu   sync.Mutex
	seen []presenceSeen
}

type presenceSeen struct {
	online bool
	at     time.Time
}

// watch polls as token on base and logs the presence events about name.
func (l *presenceLog) watch(t *testing.T, hc *http.Client, base, token, name string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if st := pollLoop(ctx, hc, base, token, 1, func(p pollResult) {
			now := time.Now()
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, e := range p.Events {
				if e.Type == "presence" && e.User != nil && e.User.Username == name && e.User.Online != nil {
					l.seen = append(l.seen, presenceSeen{*e.User.Online, now})
				}
			}
		}); st != 0 {
			t.Errorf("watcher's poll on %s refused: %d", base, st)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func (l *presenceLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// since returns what was seen after the first n events.
func (l *presenceLog) since(n int) []presenceSeen {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]presenceSeen(nil), l.seen[n:]...)
}

// await waits until an event after the first n says online, and returns it.
func (l *presenceLog) await(t *testing.T, n int, online bool, what string) presenceSeen {
	t.Helper()
	var got presenceSeen
	eventually(t, 30*time.Second, what, func() bool {
		for _, s := range l.since(n) {
			if s.online == online {
				got = s
				return true
			}
		}
		return false
	})
	return got
}

// friendOnlineOn reads token's friend list on base: name's online flag.
func friendOnlineOn(t *testing.T, hc *http.Client, base, token, name string) bool {
	t.Helper()
	st, data, err := apiCall(hc, base, token, "GET", "/api/friends", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("friends on %s: %d %s %v", base, st, data, err)
	}
	var out struct {
		Friends []struct {
			Username string `json:"username"`
			Online   *bool  `json:"online"`
		} `json:"friends"`
	}
	json.Unmarshal(data, &out)
	for _, f := range out.Friends {
		if f.Username == name && f.Online != nil {
			return *f.Online
		}
	}
	t.Fatalf("%s is not a friend with presence: %s", name, data)
	return false
}

func loginOn(t *testing.T, hc *http.Client, base, name string) string {
	t.Helper()
	st, data, err := apiCall(hc, base, "", "POST", "/api/login", map[string]any{"username": name, "password": "correct horse battery"})
	if err != nil || st != http.StatusOK {
		t.Fatalf("login %s on %s: %d %s %v", name, base, st, data, err)
	}
	var out struct{ Token string }
	json.Unmarshal(data, &out)
	return out.Token
}

// activity polls as token on base (timeout s) until stopped; stop returns
// once the last poll has ended.
func activity(hc *http.Client, base, token string, timeout int) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- pollLoop(ctx, hc, base, token, timeout, func(pollResult) {}) }()
	return func() int { cancel(); return <-done }
}

// TestCluster_PresenceAcrossNodes: alice on node 1, bob (her friend) watching
// on node 2. Bob sees her online, then offline the grace after her last poll
// on node 1 ended, and online again with her next poll there; a replacing
// login of hers on node 2 causes no flap; and a logout on node 1 tells bob
// at once although node 2 still holds her for the grace.
func TestCluster_PresenceAcrossNodes(t *testing.T) {
	nodes := startPresenceCluster(t, 2, "-rate-limit-exempt", "127.0.0.0/8")
	hc := &http.Client{Timeout: 30 * time.Second}
	n1, n2 := nodes[0].url(""), nodes[1].url("")
	alice := procUser(t, hc, n1, "alice")
	bob := procUser(t, hc, n2, "bob")
	procBefriend(t, hc, n1, "alice", alice, "bob", bob)

	var log presenceLog
	log.watch(t, hc, n2, bob, "alice")
	stopAlice := activity(hc, n1, alice, 1)
	eventually(t, 10*time.Second, "alice online in bob's list on node 2", func() bool {
		return friendOnlineOn(t, hc, n2, bob, "alice")
	})

	// No poll anywhere: node 1 tells bob, by the grace rule, not before.
	mark := log.count()
	stopAlice()
	ended := time.Now()
	off := log.await(t, mark, false, "bob to see alice offline")
	if gap := off.at.Sub(ended); gap < clusterGrace/2 {
		t.Fatalf("alice went offline %v after her last poll; the grace is %v", gap, clusterGrace)
	}
	// The node that did not announce it learns at its next tick.
	for _, base := range []string{n1, n2} {
		eventually(t, 5*time.Second, "alice offline in bob's list on "+base, func() bool {
			return !friendOnlineOn(t, hc, base, bob, "alice")
		})
	}

	// A poll on node 1 brings her back.
	mark = log.count()
	stopAlice = activity(hc, n1, alice, 1)
	log.await(t, mark, true, "bob to see alice online again")

	// A replacing login on node 2, then polls there: no offline, no second
	// online, for twice the grace (node 1's claim runs out meanwhile).
	mark = log.count()
	alice2 := loginOn(t, hc, n2, "alice")
	if st := stopAlice(); st != 0 && st != http.StatusUnauthorized {
		t.Fatalf("alice's replaced poll on node 1 ended with %d", st)
	}
	stopAlice = activity(hc, n2, alice2, 1)
	time.Sleep(2*clusterGrace + time.Second)
	if flap := log.since(mark); len(flap) != 0 {
		t.Fatalf("a replacing login on another node sent bob %+v", flap)
	}
	if !friendOnlineOn(t, hc, n1, bob, "alice") {
		t.Fatal("alice is offline in bob's list on node 1 while she polls on node 2")
	}

	// Her polls on node 2 stop (it holds her for the grace); she logs in
	// on node 1 again, polls once and logs out there: one offline, at once.
	stopAlice()
	alice3 := loginOn(t, hc, n1, "alice")
	if st, data, err := apiCall(hc, n1, alice3, "GET", "/api/poll?cursor=0&timeout=0", nil); err != nil || st != http.StatusOK {
		t.Fatalf("poll: %d %s %v", st, data, err)
	}
	if st, data, err := apiCall(hc, n1, alice3, "POST", "/api/logout", nil); err != nil || st != http.StatusNoContent {
		t.Fatalf("logout: %d %s %v", st, data, err)
	}
	loggedOut := time.Now()
	off = log.await(t, mark, false, "bob to see alice logged out")
	if gap := off.at.Sub(loggedOut); gap > clusterGrace {
		t.Errorf("the logout reached bob after %v, no sooner than the grace", gap)
	}
	time.Sleep(clusterGrace + time.Second) // node 2's grace ends: nothing more
	if got := log.since(mark); len(got) != 1 {
		t.Fatalf("after the replacing logins and the logout bob saw %+v, want one offline", got)
	}
}

// TestCluster_PresenceNodeDies: kill -9 of a node with open polls. alice,
// who polled only there, goes offline by the grace rule; carol, who moves
// to node 3 at once, never goes offline. bob watches on node 2.
func TestCluster_PresenceNodeDies(t *testing.T) {
	nodes := startPresenceCluster(t, 3, "-rate-limit-exempt", "127.0.0.0/8")
	hc := &http.Client{Timeout: 40 * time.Second}
	n1, n2, n3 := nodes[0].url(""), nodes[1].url(""), nodes[2].url("")
	alice := procUser(t, hc, n1, "alice")
	bob := procUser(t, hc, n2, "bob")
	carol := procUser(t, hc, n1, "carol")
	procBefriend(t, hc, n1, "alice", alice, "bob", bob)
	procBefriend(t, hc, n3, "carol", carol, "bob", bob)

	var aliceLog, carolLog presenceLog
	aliceLog.watch(t, hc, n2, bob, "alice")
	carolLog.watch(t, hc, n2, bob, "carol")
	// Long polls, open when the node dies.
	stopA := activity(hc, n1, alice, 30)
	stopC := activity(hc, n1, carol, 30)
	eventually(t, 10*time.Second, "alice and carol online for bob", func() bool {
		return friendOnlineOn(t, hc, n2, bob, "alice") && friendOnlineOn(t, hc, n2, bob, "carol")
	})
	time.Sleep(clusterGrace) // their logins' grace is over: only the polls hold them

	a, c := aliceLog.count(), carolLog.count()
	nodes[0].kill()
	died := time.Now()
	stopA()
	stopC()
	stopC = activity(hc, n3, carol, 1)
	defer stopC()

	off := aliceLog.await(t, a, false, "bob to see alice offline after her node died")
	if gap := off.at.Sub(died); gap < clusterGrace/2 {
		t.Fatalf("alice went offline %v after her node died; the grace is %v", gap, clusterGrace)
	}
	time.Sleep(clusterGrace)
	if got := carolLog.since(c); len(got) != 0 {
		t.Fatalf("carol, polling on node 3, flapped: %+v", got)
	}
	eventually(t, 5*time.Second, "bob's list on node 3: alice offline, carol online", func() bool {
		return !friendOnlineOn(t, hc, n3, bob, "alice") && friendOnlineOn(t, hc, n3, bob, "carol")
	})
}

// TestCluster_FailedLoginsAcrossNodes: wrong passwords spread over three
// nodes are limited as on one: five per name, twenty per address.
func TestCluster_FailedLoginsAcrossNodes(t *testing.T) {
	nodes := startPresenceCluster(t, 3)
	hc := &http.Client{Timeout: 30 * time.Second}
	procUser(t, hc, nodes[0].url(""), "victim")
	try := func(i int, name, password string) int {
		t.Helper()
		st, data, err := apiCall(hc, nodes[i%3].url(""), "", "POST", "/api/login", map[string]any{"username": name, "password": password})
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		if st != http.StatusUnauthorized && st != http.StatusTooManyRequests && st != http.StatusOK {
			t.Fatalf("login %d on node %d: %d %s", i, i%3+1, st, data)
		}
		return st
	}
	for i := range 5 {
		if st := try(i, "victim", "wrong password "); st != http.StatusUnauthorized {
			t.Fatalf("failed login %d: %d, want 401", i+1, st)
		}
	}
	for i := 5; i < 8; i++ {
		if st := try(i, "victim", "wrong password "); st != http.StatusTooManyRequests {
			t.Fatalf("failed login %d, on node %d: %d, want 429", i+1, i%3+1, st)
		}
	}
	for i := range 3 {
		if st := try(i, "victim", "correct horse battery"); st != http.StatusTooManyRequests {
			t.Fatalf("the right password on node %d after five failures: %d, want 429", i+1, st)
		}
	}
	// Per address: five failures are counted already; fifteen more names,
	// then every node refuses this address.
	for i := range 15 {
		if st := try(i, fmt.Sprintf("nobody%d", i), "wrong password"); st != http.StatusUnauthorized {
			t.Fatalf("failure %d of the address: %d, want 401", 6+i, st)
		}
	}
	for i := range 3 {
		if st := try(i, "someone_else", "wrong password"); st != http.StatusTooManyRequests {
			t.Fatalf("21st failure of the address, on node %d: %d, want 429", i+1, st)
		}
	}
}
