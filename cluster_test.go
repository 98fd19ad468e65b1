package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"webim/internal/pgtest"
)

// Several real webim processes on one PostgreSQL database (issue 13): what
// one node commits wakes polls on the others, sessions end everywhere, and
// the cluster rides out a node killed, a node stopped and Postgres restarted.
// These tests only make sense on Postgres, so they ask pgtest for a database
// themselves and run once, in the first pass; pgtest skips them where
// Postgres is missing (and fails them under CI=true).
//
// Timing: the issue wants wake-ups "at once" and session_replaced within a
// second. On the shared 2-core box a child process can stall for a second
// or two, so the tests allow crossWithin: far below the 20 s a missed hint
// would cost a waiting poll, far above a real wake-up.

const crossWithin = 5 * time.Second

type cluster struct {
	t     *testing.T
	bin   string
	db    string
	nodes []*proc
	addrs []string
	hc    *http.Client
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts several webim processes; skipped with -short")
	}
	db := pgtest.NewDatabase(t)
	c := &cluster{t: t, bin: buildWebim(t), db: db,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
	t.Cleanup(c.hc.CloseIdleConnections)
	for range n {
		p := c.start("127.0.0.1:0")
		c.nodes = append(c.nodes, p)
		c.addrs = append(c.addrs, p.addr)
	}
	return c
}

func (c *cluster) start(addr string) *proc {
	return startWebim(c.t, c.bin, "-addr", addr, "-db", c.db, "-rate-limit-exempt", "127.0.0.0/8")
}

// restart starts node i again on its address (after it died or stopped).
func (c *cluster) restart(i int) { c.nodes[i] = c.start(c.addrs[i]) }

func (c *cluster) base(i int) string { return "http://" + c.addrs[i] }

type clusterPoll struct {
	status int
	Cursor int64   `json:"cursor"`
	Events []Event `json:"events"`
	took   time.Duration
	err    error
}

func (c *cluster) poll(node int, tok string, cursor int64, timeout int) clusterPoll {
	start := time.Now()
	st, data, err := apiCall(c.hc, c.base(node), tok, "GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=%d", cursor, timeout), nil)
	p := clusterPoll{status: st, err: err}
	if err == nil && st == http.StatusOK {
		p.err = json.Unmarshal(data, &p)
	} else if err == nil {
		p.err = fmt.Errorf("poll: %d %s", st, data)
	}
	p.took = time.Since(start)
	return p
}

// goPoll polls in the background; the poll is sure to be waiting once the
// returned channel has not answered for a moment.
func (c *cluster) goPoll(node int, tok string, cursor int64, timeout int) <-chan clusterPoll {
	ch := make(chan clusterPoll, 1)
	go func() { ch <- c.poll(node, tok, cursor, timeout) }()
	return ch
}

// drain reads tok's queue to its end on node and returns the cursor.
func (c *cluster) drain(node int, tok string, cursor int64) int64 {
	c.t.Helper()
	for range 1000 {
		p := c.poll(node, tok, cursor, 0)
		if p.err != nil {
			c.t.Fatalf("drain: %v", p.err)
		}
		if len(p.Events) == 0 {
			return cursor
		}
		cursor = p.Cursor
	}
	c.t.Fatal("drain: the queue did not end")
	return 0
}

func (c *cluster) send(node int, tok, to, body, cid string) (int, []byte, error) {
	return apiCall(c.hc, c.base(node), tok, "POST", "/api/messages", map[string]any{"to": to, "body": body, "client_msg_id": cid})
}

func (c *cluster) login(node int, name string) string {
	c.t.Helper()
	st, data, err := apiCall(c.hc, c.base(node), "", "POST", "/api/login", map[string]any{"username": name, "password": "correct horse battery"})
	if err != nil || st != http.StatusOK {
		c.t.Fatalf("login %s on node %d: %d %s %v", name, node, st, data, err)
	}
	var out struct{ Token string }
	json.Unmarshal(data, &out)
	return out.Token
}

// errCode is the error code of an error answer.
func errCode(data []byte) string {
	var b errorBody
	json.Unmarshal(data, &b)
	return b.Error.Code
}

// within waits for ch up to d.
func within(t *testing.T, ch <-chan clusterPoll, d time.Duration, what string) clusterPoll {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(d):
		t.Fatalf("%s: no answer in %v", what, d)
		return clusterPoll{}
	}
}

// waiting makes sure a background poll has not answered yet (it waits).
func waiting(t *testing.T, ch <-chan clusterPoll, d time.Duration, what string) {
	t.Helper()
	select {
	case p := <-ch:
		t.Fatalf("%s answered before it should: %+v", what, p)
	case <-time.After(d):
	}
}

// TestCluster_WakeupsSessionsAdmin: three nodes on one database. A send on
// node 0 wakes a poll on node 1 at once, waiting on its goroutine and
// parked; a login on node 2 replaces the session whose poll waits on node 1
// (session_replaced) and the old token is refused on every node; a newer
// poll of a session on another node ends the older one; a logout and "webim
// user disable" on one node end the session on the others; /metrics names
// each node.
func TestCluster_WakeupsSessionsAdmin(t *testing.T) {
	c := startCluster(t, 3)
	alice, bob, carol := uniqueName("alice"), uniqueName("bob"), uniqueName("carol")
	aTok := procUser(t, c.hc, c.base(0), alice)
	bTok := procUser(t, c.hc, c.base(1), bob)
	cTok := procUser(t, c.hc, c.base(2), carol)
	procBefriend(t, c.hc, c.base(2), alice, aTok, bob, bTok)
	cursor := c.drain(1, bTok, 0)

	// Wake-ups: a poll waiting on its goroutine (sent after 300 ms) and a
	// parked one (after parkAfter).
	for i, pause := range []time.Duration{300 * time.Millisecond, parkAfter + 700*time.Millisecond} {
		ch := c.goPoll(1, bTok, cursor, 20)
		waiting(t, ch, pause, "bob's poll")
		sent := time.Now()
		if st, data, err := c.send(0, aTok, bob, fmt.Sprint("cross ", i), fmt.Sprint("cross-", i)); err != nil || st != http.StatusCreated {
			t.Fatalf("send: %d %s %v", st, data, err)
		}
		p := within(t, ch, crossWithin, "bob's poll after a send on another node")
		if p.err != nil || len(p.Events) != 1 || p.Events[0].Message == nil || p.Events[0].Message.Body != fmt.Sprint("cross ", i) {
			t.Fatalf("poll %d: %+v", i, p)
		}
		t.Logf("cross-node wake-up %d (waited %v before the send): %v after the send", i, pause, time.Since(sent))
		cursor = p.Cursor
	}

	// A login elsewhere replaces the session: its poll on node 1 ends with
	// session_replaced, and the token is refused everywhere.
	ch := c.goPoll(1, bTok, cursor, 20)
	waiting(t, ch, 300*time.Millisecond, "bob's poll")
	bTok2 := c.login(2, bob)
	p := within(t, ch, crossWithin, "the replaced session's poll")
	if p.err != nil || len(p.Events) != 1 || p.Events[0].Type != "session_replaced" {
		t.Fatalf("the replaced session's poll: %+v", p)
	}
	t.Logf("session_replaced across nodes after %v", p.took)
	for node := range c.nodes {
		st, data, err := apiCall(c.hc, c.base(node), bTok, "GET", "/api/me", nil)
		if err != nil || st != http.StatusUnauthorized || errCode(data) != "session_replaced" {
			t.Errorf("old token on node %d: %d %s %v, want 401 session_replaced", node, st, data, err)
		}
		if st, data, err := apiCall(c.hc, c.base(node), bTok2, "GET", "/api/me", nil); err != nil || st != http.StatusOK {
			t.Errorf("new token on node %d: %d %s %v", node, st, data, err)
		}
	}

	// One poll per session across nodes.
	older := c.goPoll(0, bTok2, cursor, 20)
	waiting(t, older, 300*time.Millisecond, "the older poll")
	newer := c.goPoll(2, bTok2, cursor, 20)
	p = within(t, older, crossWithin, "the older poll of the session")
	if p.err != nil || len(p.Events) != 0 {
		t.Fatalf("the older poll: %+v, want an empty answer", p)
	}
	waiting(t, newer, 200*time.Millisecond, "the newer poll")
	c.send(1, aTok, bob, "to the newer poll", "newer")
	if p := within(t, newer, crossWithin, "the newer poll"); p.err != nil || len(p.Events) != 1 {
		t.Fatalf("the newer poll: %+v", p)
	}

	// A logout on node 1 ends the session on nodes 0 and 2, where it is live.
	if st, data, err := apiCall(c.hc, c.base(1), bTok2, "POST", "/api/logout", nil); err != nil || st/100 != 2 {
		t.Fatalf("logout: %d %s %v", st, data, err)
	}
	// The hint takes a moment to cross.
	for _, node := range []int{0, 2} {
		eventually(t, crossWithin, fmt.Sprintf("the logged-out token refused on node %d", node), func() bool {
			st, _, err := apiCall(c.hc, c.base(node), bTok2, "GET", "/api/me", nil)
			return err == nil && st == http.StatusUnauthorized
		})
	}

	// webim user disable, a separate process, ends carol's poll on node 0.
	cc := c.drain(0, cTok, 0)
	ch = c.goPoll(0, cTok, cc, 20)
	waiting(t, ch, 300*time.Millisecond, "carol's poll")
	start := time.Now()
	if out, err := exec.Command(c.bin, "user", "disable", "-db", c.db, carol).CombinedOutput(); err != nil {
		t.Fatalf("webim user disable: %v\n%s", err, out)
	}
	p = within(t, ch, crossWithin, "carol's poll after webim user disable")
	if p.err != nil || len(p.Events) != 0 {
		t.Fatalf("carol's poll: %+v", p)
	}
	t.Logf("disable ended the poll on another node %v after the command", time.Since(start))
	for node := range c.nodes {
		if st, data, _ := apiCall(c.hc, c.base(node), cTok, "GET", "/api/me", nil); st != http.StatusUnauthorized {
			t.Errorf("disabled carol on node %d: %d %s", node, st, data)
		}
	}

	// Each node's /metrics names it.
	ids := map[string]bool{}
	infoLine := regexp.MustCompile(`webim_node_info\{node="([0-9a-f]+)",addr="([^"]+)"\} 1`)
	for node, p := range c.nodes {
		_, data, err := apiCall(c.hc, c.base(node), "", "GET", "/metrics", nil)
		m := infoLine.FindSubmatch(data)
		if err != nil || m == nil || string(m[2]) != c.addrs[node] {
			t.Fatalf("node %d /metrics: no webim_node_info for %s (%v)", node, c.addrs[node], err)
		}
		ids[string(m[1])] = true
		if !strings.Contains(p.log(), "node="+string(m[1])) {
			t.Errorf("node %d does not log its id %s", node, m[1])
		}
	}
	if len(ids) != len(c.nodes) {
		t.Errorf("node ids %v: not one each", ids)
	}
}

// clusterLoad is a few senders, each to a recipient polling on another node,
// every client retrying on another node when its node fails it: what an
// acknowledged send was, and what the queues hold, tell whether anything was
// lost or stored twice.
type clusterLoad struct {
	c      *cluster
	names  []string // senders, then recipients
	toks   []string
	n      int // pairs
	stop   atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  map[string]bool // client_msg_ids with a 200 or 201
	status map[int]int
	moves  atomic.Int64 // clients that moved to another node
	hangs  atomic.Int64 // requests that failed for want of an answer in time
}

func newClusterLoad(c *cluster, pairs int) *clusterLoad {
	l := &clusterLoad{c: c, n: pairs, acked: map[string]bool{}, status: map[int]int{}}
	for i := range 2 * pairs {
		name := uniqueName(fmt.Sprintf("load%d", i))
		l.names = append(l.names, name)
		l.toks = append(l.toks, procUser(c.t, c.hc, c.base(i%len(c.nodes)), name))
	}
	for i := range pairs {
		procBefriend(c.t, c.hc, c.base(0), l.names[i], l.toks[i], l.names[pairs+i], l.toks[pairs+i])
	}
	return l
}

func (l *clusterLoad) count(st int) {
	l.mu.Lock()
	l.status[st]++
	l.mu.Unlock()
}

// run starts the clients: sender i on node i, its recipient on node i+1.
// A transport error moves a client to the next node (its node died); a 503
// is retried where it is, a moment later.
func (l *clusterLoad) run() {
	nodes := len(l.c.nodes)
	for i := range l.n {
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			node := i % nodes
			for k := 0; k < 2000 && !l.stop.Load(); k++ {
				cid := fmt.Sprintf("m%d-%d", i, k)
				for attempt := 0; attempt < 100; attempt++ {
					st, _, err := l.c.send(node, l.toks[i], l.names[l.n+i], cid, cid)
					if err != nil {
						if isTimeout(err) {
							l.hangs.Add(1)
						}
						node = (node + 1) % nodes
						l.moves.Add(1)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					l.count(st)
					if st == http.StatusOK || st == http.StatusCreated {
						l.mu.Lock()
						l.acked[cid] = true
						l.mu.Unlock()
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		go func() {
			defer l.wg.Done()
			node := (i + 1) % nodes
			var cursor int64
			for k := 0; k < 2000 && !l.stop.Load(); k++ {
				p := l.c.poll(node, l.toks[l.n+i], cursor, 2)
				if p.err != nil {
					if p.status == 0 {
						if isTimeout(p.err) {
							l.hangs.Add(1)
						}
						node = (node + 1) % nodes
						l.moves.Add(1)
					} else {
						l.count(p.status)
					}
					time.Sleep(50 * time.Millisecond)
					continue
				}
				l.count(p.status)
				cursor = p.Cursor
			}
		}()
	}
}

func (l *clusterLoad) finish() {
	l.stop.Store(true)
	l.wg.Wait()
}

// verify pages every recipient's queue from cursor 0 on node: every
// acknowledged send is there, none twice.
func (l *clusterLoad) verify(node int) {
	t := l.c.t
	t.Helper()
	seen := map[string]int{}
	for i := range l.n {
		var cursor int64
		for range 10000 {
			p := l.c.poll(node, l.toks[l.n+i], cursor, 0)
			if p.err != nil {
				t.Fatalf("paging recipient %d: %v", i, p.err)
			}
			if len(p.Events) == 0 {
				break
			}
			for _, e := range p.Events {
				if e.Message != nil {
					seen[e.Message.ClientMsgID]++
				}
			}
			cursor = p.Cursor
		}
	}
	lost, dup := 0, 0
	for cid := range l.acked {
		if seen[cid] == 0 {
			lost++
		}
	}
	for cid, n := range seen {
		if n > 1 {
			dup++
			t.Errorf("%s stored %d times", cid, n)
		}
	}
	t.Logf("%d acknowledged, %d stored, %d lost, %d duplicated; answers%s; %d moves to another node",
		len(l.acked), len(seen), lost, dup, fmtCounts(l.status), l.moves.Load())
	if lost > 0 {
		t.Errorf("%d acknowledged messages lost", lost)
	}
	if len(l.acked) == 0 {
		t.Error("no send was acknowledged")
	}
	for st, n := range l.status {
		if st >= 500 && st != http.StatusServiceUnavailable {
			t.Errorf("%d answers %d", n, st)
		}
	}
	if h := l.hangs.Load(); h > 0 {
		t.Errorf("%d requests got no answer within %v", h, l.c.hc.Timeout)
	}
}

// wakeAcross checks that a send on node from wakes a poll on node to.
func (c *cluster) wakeAcross(from, to int, aTok, bTok, bob string, cursor int64, tag string) int64 {
	c.t.Helper()
	ch := c.goPoll(to, bTok, cursor, 20)
	waiting(c.t, ch, 300*time.Millisecond, "the poll")
	if st, data, err := c.send(from, aTok, bob, tag, tag); err != nil || st != http.StatusCreated {
		c.t.Fatalf("send %s: %d %s %v", tag, st, data, err)
	}
	p := within(c.t, ch, crossWithin, "a poll woken from another node ("+tag+")")
	if p.err != nil || len(p.Events) == 0 {
		c.t.Fatalf("poll woken from another node (%s): %+v", tag, p)
	}
	return p.Cursor
}

// TestCluster_KillNineUnderLoad kills one of three nodes under load; its
// clients carry on through the others with the same token, retrying
// unacknowledged sends with their client_msg_id. No acknowledged message is
// lost or stored twice, and the node started again serves and wakes.
func TestCluster_KillNineUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	l := newClusterLoad(c, 3)
	l.run()
	time.Sleep(1500 * time.Millisecond)
	c.nodes[0].kill()
	t.Logf("node 0 killed")
	time.Sleep(1500 * time.Millisecond)
	c.restart(0)
	t.Logf("node 0 restarted")
	time.Sleep(time.Second)
	l.finish()
	for node := range c.nodes {
		l.verify(node)
	}

	// The restarted node takes part in wake-ups both ways.
	a, b := uniqueName("alice"), uniqueName("bob")
	aTok, bTok := procUser(t, c.hc, c.base(0), a), procUser(t, c.hc, c.base(1), b)
	procBefriend(t, c.hc, c.base(2), a, aTok, b, bTok)
	cursor := c.drain(0, bTok, 0)
	cursor = c.wakeAcross(2, 0, aTok, bTok, b, cursor, "to the restarted node")
	c.wakeAcross(0, 1, aTok, bTok, b, cursor, "from the restarted node")
}

// TestCluster_PostgresRestart restarts Postgres (fast shutdown) under load:
// meanwhile requests get 503, never a 500 or a hang; within 15 s every node
// is healthy again and hears the others, without being restarted; nothing
// acknowledged is lost. Not parallel: it restarts the cluster that every
// test of the process shares.
func TestCluster_PostgresRestart(t *testing.T) {
	c := startCluster(t, 3)
	a, b := uniqueName("alice"), uniqueName("bob")
	aTok, bTok := procUser(t, c.hc, c.base(0), a), procUser(t, c.hc, c.base(1), b)
	procBefriend(t, c.hc, c.base(2), a, aTok, b, bTok)
	cursor := c.drain(1, bTok, 0)

	l := newClusterLoad(c, 2)
	l.run()
	time.Sleep(time.Second)
	restarted := time.Now()
	pgtest.Restart(t, "fast")
	t.Logf("Postgres restarted in %v", time.Since(restarted))
	listening := regexp.MustCompile(`(?m)^webim_pg_listening 1$`)
	deadline := restarted.Add(15 * time.Second)
	for node := range c.nodes {
		for {
			st, _, err := apiCall(c.hc, c.base(node), "", "GET", "/api/health", nil)
			_, m, _ := apiCall(c.hc, c.base(node), "", "GET", "/metrics", nil)
			if err == nil && st == http.StatusOK && listening.Match(m) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d not healthy and listening 15 s after the restart (health %d %v)", node, st, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("every node healthy and listening %v after the restart began", time.Since(restarted))
	time.Sleep(time.Second)
	l.finish()
	l.verify(2)

	cursor = c.drain(1, bTok, cursor)
	cursor = c.wakeAcross(0, 1, aTok, bTok, b, cursor, "after the restart, 0 to 1")
	c.wakeAcross(2, 1, aTok, bTok, b, cursor, "after the restart, 2 to 1")
}

// TestCluster_SIGTERM stops one node with SIGTERM: its open poll is
// answered, and its client carries on through another node with the same
// token.
func TestCluster_SIGTERM(t *testing.T) {
	c := startCluster(t, 3)
	a, b := uniqueName("alice"), uniqueName("bob")
	aTok, bTok := procUser(t, c.hc, c.base(2), a), procUser(t, c.hc, c.base(0), b)
	procBefriend(t, c.hc, c.base(2), a, aTok, b, bTok)
	cursor := c.drain(0, bTok, 0)

	ch := c.goPoll(0, bTok, cursor, 20)
	waiting(t, ch, parkAfter+500*time.Millisecond, "bob's poll") // parked by now
	c.nodes[0].cmd.Process.Signal(syscall.SIGTERM)
	p := within(t, ch, crossWithin, "the stopping node's poll")
	if p.err != nil || len(p.Events) != 0 {
		t.Fatalf("the stopping node's poll: %+v", p)
	}
	if code := c.nodes[0].wait(20 * time.Second); code != 0 {
		t.Fatalf("node 0 exited with %d\n%s", code, c.nodes[0].log())
	}
	c.wakeAcross(2, 1, aTok, bTok, b, cursor, "after node 0 stopped")
}

// Typing events live in memory only, on the node that took them; they reach
// a recipient polling on another node inside the notification, with a seq
// taken under the cursor's lock, so a message stored next on a third node
// comes after it and is not skipped.
func TestCluster_TypingCrossesNodes(t *testing.T) {
	c := startCluster(t, 3)
	alice, bob := uniqueName("alice"), uniqueName("bob")
	aTok := procUser(t, c.hc, c.base(0), alice)
	bTok := procUser(t, c.hc, c.base(1), bob)
	procBefriend(t, c.hc, c.base(0), alice, aTok, bob, bTok)
	cursor := c.drain(1, bTok, 0)
	// Node 0 writes typing only for users it sees online: bob's poll on
	// node 1 shows there within a presence tick. Typing is throttled per
	// 2 s, so each try waits that long.
	var typing Event
	deadline := time.Now().Add(20 * time.Second)
	for typing.Type == "" && time.Now().Before(deadline) {
		ch := c.goPoll(1, bTok, cursor, 3)
		waiting(t, ch, 300*time.Millisecond, "bob's poll")
		if st, data, err := apiCall(c.hc, c.base(0), aTok, "POST", "/api/typing", map[string]any{"to": bob}); err != nil || st != http.StatusNoContent {
			t.Fatalf("typing: %d %s %v", st, data, err)
		}
		p := within(t, ch, 10*time.Second, "bob's poll")
		if p.err != nil {
			t.Fatal(p.err)
		}
		for _, e := range p.Events {
			if e.Type == "typing" {
				typing = e
			}
		}
		cursor = max(cursor, p.Cursor)
		time.Sleep(2100 * time.Millisecond)
	}
	if typing.Type == "" || !strings.Contains(string(typing.User), alice) {
		t.Fatalf("no typing event from %s reached bob on another node: %+v", alice, typing)
	}
	if st, data, err := c.send(2, aTok, bob, "after typing", "after-typing"); err != nil || st != http.StatusCreated {
		t.Fatalf("send: %d %s %v", st, data, err)
	}
	p := c.poll(1, bTok, cursor, 5)
	if p.err != nil || len(p.Events) == 0 || p.Events[len(p.Events)-1].Message == nil || p.Events[len(p.Events)-1].Seq <= typing.Seq {
		t.Fatalf("the message after the typing event: %+v (typing seq %d)", p, typing.Seq)
	}
}
