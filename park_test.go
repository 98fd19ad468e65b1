package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// withParkAfter parks idle polls sooner than in production.
func withParkAfter(d time.Duration) func(*App) {
	return func(a *App) { a.parker.after = d }
}

// liveUserID is the id of c's user, from its live session.
func (ts *testServer) liveUserID(c *client) int64 {
	ts.app.sessions.mu.Lock()
	defer ts.app.sessions.mu.Unlock()
	for _, s := range ts.app.sessions.byUser {
		if s.User.Username == c.username {
			return s.User.ID
		}
	}
	ts.t.Fatalf("%s has no live session", c.username)
	return 0
}

func (ts *testServer) waitParked(n int) {
	ts.t.Helper()
	eventually(ts.t, 10*time.Second, fmt.Sprintf("%d parked polls", n), func() bool { return ts.app.parker.parked() == n })
}

// rawPoll is one poll on its own client, answered with the whole response;
// reused says whether the request went over a connection used before.
type rawPoll struct {
	resp   *http.Response
	body   string
	reused bool
}

func pollOn(t *testing.T, hc *http.Client, c *client, query string) rawPoll {
	t.Helper()
	var reused atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused.Store(i.Reused) }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", c.ts.url("/api/poll?"+query), nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Errorf("poll %s: %v", query, err)
		return rawPoll{}
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return rawPoll{resp: resp, body: string(data), reused: reused.Load()}
}

func pollOnAsync(t *testing.T, hc *http.Client, c *client, query string) <-chan rawPoll {
	ch := make(chan rawPoll, 1)
	go func() { ch <- pollOn(t, hc, c, query) }()
	return ch
}

func receiveRaw(t *testing.T, ch <-chan rawPoll, what string) rawPoll {
	t.Helper()
	select {
	case p := <-ch:
		if p.resp == nil {
			t.Fatalf("%s: no answer", what)
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the poll did not answer", what)
		return rawPoll{}
	}
}

// sameHeaders fails unless the parked answer's header is the waiting one's,
// the date aside.
func sameHeaders(t *testing.T, what string, parked, waiting http.Header) {
	t.Helper()
	p, w := parked.Clone(), waiting.Clone()
	for _, h := range []http.Header{p, w} {
		if h.Get("Date") == "" {
			t.Errorf("%s: no Date header", what)
		}
		h.Del("Date")
	}
	if !headersEqual(p, w) {
		t.Errorf("%s: parked answer header %v, the waiting answer's %v", what, p, w)
	}
}

func TestPark_AnswersAsTheWaitingPollWould(t *testing.T) {
	t.Parallel()
	ts := newTestServerHooked(t, withParkAfter(50*time.Millisecond))
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	_, cursor := bob.drain(0)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	// The reference: a poll that never waits, on the plain path.
	ref := pollOn(t, hc, bob, fmt.Sprintf("cursor=%d&timeout=0", cursor))

	// Nothing comes: the parked poll answers at its deadline, as the
	// waiting one would, and the connection serves the next request.
	ch := pollOnAsync(t, hc, bob, fmt.Sprintf("cursor=%d&timeout=1", cursor))
	ts.waitParked(1)
	if n := ts.app.metrics.openPolls.Load(); n != 1 {
		t.Errorf("open polls while parked: %d", n)
	}
	if !ts.app.presence.IsOnline(ts.liveUserID(bob)) {
		t.Error("bob is offline while his poll is parked")
	}
	p := receiveRaw(t, ch, "the parked poll at its deadline")
	if p.resp.StatusCode != http.StatusOK || p.body != ref.body {
		t.Errorf("parked poll at its deadline answered %d %q, the waiting path %q", p.resp.StatusCode, p.body, ref.body)
	}
	if !p.reused {
		t.Error("the parked poll did not go over the connection of the previous request")
	}
	sameHeaders(t, "deadline", p.resp.Header, ref.resp.Header)

	// A send wakes it at once, with the same bytes a plain poll reads.
	ch = pollOnAsync(t, hc, bob, fmt.Sprintf("cursor=%d&timeout=30", cursor))
	ts.waitParked(1)
	t0 := time.Now()
	alice.send(bob, "wake up")
	p = receiveRaw(t, ch, "the parked poll woken by a send")
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("the parked poll answered %v after the send", d)
	}
	ref = pollOn(t, hc, bob, fmt.Sprintf("cursor=%d&timeout=0", cursor))
	if !strings.Contains(p.body, "wake up") || p.body != ref.body {
		t.Errorf("woken parked poll answered %q, a plain poll %q", p.body, ref.body)
	}
	sameHeaders(t, "woken", p.resp.Header, ref.resp.Header)
	// The connection went back to the server: the reference came over it.
	if !ref.reused {
		t.Error("the connection of the answered parked poll was not served again")
	}
	if n := ts.app.metrics.openPolls.Load(); n != 0 {
		t.Errorf("open polls after the answers: %d", n)
	}
	if n := ts.app.notifier.waiting(); n != 0 {
		t.Errorf("notifier waiters after the answers: %d", n)
	}
}

func TestPark_NewerPollLoginAndLogoutAnswerIt(t *testing.T) {
	t.Parallel()
	ts := newTestServerHooked(t, withParkAfter(50*time.Millisecond))
	bob := ts.user("bob")
	_, cursor := bob.drain(0)

	// A newer poll of the session answers the parked one, empty.
	first := bob.pollAsync(cursor, 30)
	ts.waitParked(1)
	second := bob.pollAsync(cursor, 30)
	if p := receive(t, first, "the parked older poll"); p.Cursor != cursor || len(p.Events) != 0 {
		t.Fatalf("older parked poll answered %+v", p)
	}
	ts.waitParked(1) // the newer one parks in turn

	// A new login answers it with session_replaced.
	old := *bob.as(t)
	bob.login()
	p := receive(t, second, "the parked poll of the replaced session")
	if len(p.Events) != 1 || p.Events[0].Type != "session_replaced" || p.Cursor != p.Events[0].Seq {
		t.Fatalf("replaced session's parked poll answered %+v", p)
	}
	resp, data := old.do("GET", "/api/me", nil)
	checkError(t, resp, data, http.StatusUnauthorized, "session_replaced")

	// Logout answers it empty.
	_, cursor = bob.drain(0)
	third := bob.pollAsync(cursor, 30)
	ts.waitParked(1)
	bob.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	if p := receive(t, third, "the parked poll of the logged-out session"); p.Cursor != cursor || len(p.Events) != 0 {
		t.Fatalf("logged-out session's parked poll answered %+v", p)
	}
	ts.waitParked(0)
}

// A parked poll whose client vanished holds its connection until its
// deadline at the latest, and no goroutine meanwhile.
func TestPark_AbandonedReleasedByItsDeadline(t *testing.T) {
	ts := newTestServerHooked(t, withParkAfter(50*time.Millisecond))
	users := make([]*client, 20)
	for i := range users {
		users[i] = ts.quickUser("gone")
	}
	runtime.GC()
	baseline := runtime.NumGoroutine()
	addr := strings.TrimPrefix(ts.srv.URL, "http://")
	conns := make([]net.Conn, len(users))
	for i, u := range users {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		fmt.Fprintf(c, "GET /api/poll?cursor=0&timeout=3 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", addr, u.token)
	}
	ts.waitParked(len(users))
	t0 := time.Now()
	if n := runtime.NumGoroutine(); n > baseline+5 {
		t.Errorf("%d goroutines with %d polls parked, %d before", n, len(users), baseline)
	}
	for _, c := range conns {
		c.Close()
	}
	eventually(t, 10*time.Second, "the abandoned parked polls to end", func() bool {
		return ts.app.parker.parked() == 0 && ts.app.metrics.openPolls.Load() == 0 && ts.app.notifier.waiting() == 0
	})
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("abandoned parked polls released %v after parking, beyond their 3 s deadline", d)
	}
	eventually(t, 10*time.Second, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseline+3 })
}

// Pipelined bytes behind a parked poll's request: the answer says
// Connection: close and the next request is the client's to send again.
func TestPark_BytesAfterTheRequestCloseTheConnection(t *testing.T) {
	t.Parallel()
	ts := newTestServerHooked(t, withParkAfter(50*time.Millisecond))
	bob := ts.user("bob")
	addr := strings.TrimPrefix(ts.srv.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := fmt.Sprintf("GET /api/poll?cursor=0&timeout=1 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", addr, bob.token)
	// Two requests in one write: the server reads the second with the first.
	if _, err := io.WriteString(c, req+"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != `{"cursor":0,"events":[]}`+"\n" {
		t.Fatalf("poll answered %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("Connection") != "close" && !resp.Close {
		t.Errorf("answer with bytes pending has no Connection: close: %v", resp.Header)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection was served on after the parked answer")
	}
}

func TestPark_ShutdownAnswersParkedPolls(t *testing.T) {
	t.Parallel()
	ts := newTestServerHooked(t, withParkAfter(50*time.Millisecond))
	users := []*client{ts.user("a"), ts.user("b"), ts.user("c")}
	chs := make([]<-chan pollResult, len(users))
	for i, u := range users {
		chs[i] = u.pollAsync(0, 60)
	}
	ts.waitParked(len(users))
	t0 := time.Now()
	ts.close()
	for i, ch := range chs {
		if p := receive(t, ch, fmt.Sprintf("parked poll %d at shutdown", i)); len(p.Events) != 0 {
			t.Errorf("parked poll %d answered %+v at shutdown", i, p)
		}
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("shutdown with parked polls took %v", d)
	}
}

// Over HTTPS the hijacked *tls.Conn goes back to the server as such; an
// HTTP/2 poll does not park and waits as before.
func TestPark_HTTPSConnectionsGoBackAndHTTP2Waits(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeSelfSigned(t, "127.0.0.1")
	r := runInProcess(t, "-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	base := "https://" + r.addr
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}}
	h2 := httpsClient(pool)
	token := procUser(t, h1, base, uniqueName("tlspark"))
	parked := func() int {
		resp, err := h1.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var n int
		for _, line := range strings.Split(string(data), "\n") {
			if _, err := fmt.Sscanf(line, "webim_parked_polls %d", &n); err == nil {
				return n
			}
		}
		t.Fatalf("no webim_parked_polls in /metrics")
		return 0
	}
	poll := func(hc *http.Client, reused *bool) *http.Response {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if reused != nil {
				*reused = i.Reused
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/api/poll?cursor=0&timeout=3", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		name   string
		hc     *http.Client
		proto  int
		parked int
	}{{"HTTP/1.1", h1, 1, 1}, {"HTTP/2", h2, 2, 0}} {
		done := make(chan *http.Response, 1)
		go func() { done <- poll(tc.hc, nil) }()
		time.Sleep(2 * time.Second) // past parkAfter, before the deadline
		if n := parked(); n != tc.parked {
			t.Errorf("%s: %d parked polls, want %d", tc.name, n, tc.parked)
		}
		resp := <-done
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tc.proto || resp.TLS == nil {
			t.Errorf("%s poll: %d over %s", tc.name, resp.StatusCode, resp.Proto)
		}
	}
	// The parked poll's connection serves the next request, over TLS.
	var reused bool
	if resp := poll(h1, &reused); resp.TLS == nil || !reused {
		t.Errorf("after a parked answer: TLS %v, connection reused %v", resp.TLS != nil, reused)
	}
}

// A HEAD poll is answered without a body, so it never parks.
func TestPark_HeadPollWaitsOnItsGoroutine(t *testing.T) {
	t.Parallel()
	ts := newTestServerHooked(t, withParkAfter(50*time.Millisecond))
	bob := ts.user("bob")
	req, _ := http.NewRequest("HEAD", ts.url("/api/poll?cursor=0&timeout=1"), nil)
	req.Header.Set("Authorization", "Bearer "+bob.token)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	time.Sleep(500 * time.Millisecond)
	if n := ts.app.parker.parked(); n != 0 {
		t.Errorf("a HEAD poll parked (%d parked)", n)
	}
	if resp := <-done; resp != nil && resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD poll: %d", resp.StatusCode)
	}
}
