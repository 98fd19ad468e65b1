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
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testServer serves h on httptest and counts the connections it accepted.
func testServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func testConn(t *testing.T, url string) *h1Conn {
	t.Helper()
	d, err := newH1Dialer(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := newH1Conn(context.Background(), d)
	t.Cleanup(c.Close)
	return c
}

// get sends a GET without a body and returns the answer's status and body.
func get(t *testing.T, c *h1Conn, path string) (int, string) {
	t.Helper()
	c.requestLine("GET", path)
	c.headers("tok")
	c.end()
	a, err := c.roundTrip(5*time.Second, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return a.status, string(a.body)
}

func TestH1_ContentLengthAndKeepAlive(t *testing.T) {
	srv, conns := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.Host == "" {
			w.WriteHeader(400)
			return
		}
		body := "hello " + r.URL.Query().Get("n")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		io.WriteString(w, body)
	})
	c := testConn(t, srv.URL)
	for i := 0; i < 5; i++ {
		st, body := get(t, c, fmt.Sprintf("/x?n=%d", i))
		if st != 200 || body != fmt.Sprintf("hello %d", i) {
			t.Fatalf("answer %d: %d %q", i, st, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 requests, want 1 (keep-alive)", n)
	}
}

func TestH1_Chunked(t *testing.T) {
	big := strings.Repeat("0123456789", 1000) // beyond net/http's buffer: chunked
	srv, conns := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, big[:10])
		w.(http.Flusher).Flush() // forces chunking
		io.WriteString(w, big[10:])
		w.Header().Set("X-Sum", "1")
	})
	c := testConn(t, srv.URL)
	for i := 0; i < 3; i++ {
		st, body := get(t, c, "/")
		if st != 200 || body != big {
			t.Fatalf("answer %d: %d, %d bytes", i, st, len(body))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestH1_ConnectionClose(t *testing.T) {
	srv, conns := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	c := testConn(t, srv.URL)
	for i := 0; i < 3; i++ {
		if st, body := get(t, c, "/"); st != 200 || body != "bye" {
			t.Fatalf("answer %d: %d %q", i, st, body)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3: each answer closed its own", n)
	}
}

// After the server closed an idle kept-alive connection, the next request
// goes out again on a new one.
func TestH1_ServerClosedIdleConnection(t *testing.T) {
	srv, conns := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	c := testConn(t, srv.URL)
	get(t, c, "/")
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	if st, body := get(t, c, "/"); st != 200 || body != "ok" {
		t.Fatalf("after the close: %d %q", st, body)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestH1_ErrorAnswer(t *testing.T) {
	srv, _ := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(429)
		io.WriteString(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
	})
	c := testConn(t, srv.URL)
	_, err := c.send("tok", "bob", "hi", "m-1")
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "rate_limited" || ae.RetryAfter != 3*time.Second {
		t.Fatalf("send: %v (%#v)", err, ae)
	}
}

// The requests the hot path sends are what the server expects.
func TestH1_SendPollClean(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv, _ := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Content-Type")+" "+string(b))
		mu.Unlock()
		switch r.URL.Path {
		case "/api/messages":
			var m map[string]string
			if json.Unmarshal(b, &m) != nil || m["to"] != "bob" || m["body"] != "a \"q\" \\ \n\tb\x01é" || m["client_msg_id"] != "c1" {
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(201)
			io.WriteString(w, `{"id":1}`)
		case "/api/poll":
			io.WriteString(w, `{"cursor":7,"events":[{"seq":7,"type":"message","at":"x","message":{"id":1,"from":"al","to":"bob","body":"lg r 0","sent_at":"x","client_msg_id":"c1"}}]}`+"\n")
		case "/api/clean":
			io.WriteString(w, `{"removed":4}`+"\n")
		}
	})
	c := testConn(t, srv.URL)
	created, err := c.send("tok", "bob", "a \"q\" \\ \n\tb\x01é", "c1")
	if err != nil || !created {
		t.Fatalf("send: %v %v", created, err)
	}
	var ans pollAnswer
	wrote := 0
	if err := c.poll("tok", 3, 25, func() { wrote++ }, &ans, map[string]string{"bob": "bob"}); err != nil {
		t.Fatal(err)
	}
	if wrote != 1 || ans.Cursor != 7 || len(ans.Events) != 1 || ans.Events[0].Message.Body != "lg r 0" || ans.Events[0].Message.From != "al" {
		t.Fatalf("poll: wrote %d, %+v", wrote, ans)
	}
	if n, err := c.clean("tok", 7); err != nil || n != 4 {
		t.Fatalf("clean: %d %v", n, err)
	}
	if seen[1] != "GET /api/poll?cursor=3&timeout=25  " || seen[2] != `POST /api/clean application/json {"upto":7}` {
		t.Fatalf("requests %q", seen)
	}
}

// rawServer answers every request on a connection with the next of answers,
// written as they are; an empty answer closes the connection.
func rawServer(t *testing.T, answers ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for _, a := range answers {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if a == "" {
						return
					}
					io.WriteString(nc, a)
					if strings.HasPrefix(a, "HTTP/1.0") && !strings.Contains(a, "keep-alive") {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestH1_RawAnswers(t *testing.T) {
	url := rawServer(t,
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nab",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\ncde\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 1\n\nf", // bare LFs
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
	)
	c := testConn(t, url)
	want := []string{"ab", "", "cde", "f", "until close"}
	for i, w := range want {
		if st, body := get(t, c, "/"); body != w || (st != 200 && st != 204) {
			t.Fatalf("answer %d: %d %q, want %q", i, st, body, w)
		}
	}
}

func TestH1_TruncatedAnswerIsAnError(t *testing.T) {
	url := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") // then closes
	c := testConn(t, url)
	c.requestLine("GET", "/")
	c.headers("")
	c.end()
	if _, err := c.roundTrip(5*time.Second, nil); err == nil {
		t.Fatal("a truncated body was accepted")
	}
}

// The context's end aborts a held poll at once.
func TestH1_ContextAbortsPoll(t *testing.T) {
	srv, _ := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	d, _ := newH1Dialer(srv.URL, 1)
	ctx, cancel := context.WithCancel(context.Background())
	c := newH1Conn(ctx, d)
	defer c.Close()
	wrote := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var ans pollAnswer
		done <- c.poll("tok", 0, 25, func() { close(wrote) }, &ans, nil)
	}()
	<-wrote
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("poll: %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the poll was not aborted")
	}
	if err := c.poll("tok", 0, 25, nil, &pollAnswer{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("poll after the end: %v", err)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s", "\n\r\t\x00\x1f\x7f", "é ü 日本", "\xff invalid", "</script>&"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q → %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if got != want {
			t.Fatalf("%q → %s → %q", s, b, got)
		}
	}
}
