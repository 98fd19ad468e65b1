package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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

func testConn(t *testing.T, url string) *Conn {
	t.Helper()
	d, err := NewDialer(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(context.Background(), d)
	t.Cleanup(c.Close)
	return c
}

// get sends a GET without a body and returns the answer's status and body.
func get(t *testing.T, c *Conn, path string) (int, string) {
	t.Helper()
	c.Start("GET", path, nil)
	c.Finish("tok", nil)
	a, err := c.RoundTrip(5*time.Second, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return a.Status, string(a.Body)
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
	c.Start("GET", "/", nil)
	c.Finish("", nil)
	if _, err := c.RoundTrip(5*time.Second, nil); err == nil {
		t.Fatal("a truncated body was accepted")
	}
}

// A request with a JSON body and a path extended in place goes out as
// net/http reads it; Requests counts what the dialer's connections wrote.
func TestH1_BodyAndRequests(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv, _ := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("Authorization")+" "+string(b))
		mu.Unlock()
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(201)
		io.WriteString(w, `{"ok":true}`)
	})
	d, err := NewDialer(srv.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(context.Background(), d)
	defer c.Close()
	for i := range 3 {
		c.Start("POST", "/x?n=", func(b []byte) []byte { return strconv.AppendInt(b, int64(i), 10) })
		c.Finish("tok", func(b []byte) []byte { return append(b, `{"i":`+strconv.Itoa(i)+`}`...) })
		a, err := c.RoundTrip(5*time.Second, nil)
		if err != nil || a.Status != 201 || a.RetryAfter != "2" || string(a.Body) != `{"ok":true}` {
			t.Fatalf("answer %d: %+v %v", i, a, err)
		}
	}
	if n := d.Requests(); n != 3 {
		t.Fatalf("Requests() = %d, want 3", n)
	}
	if want := `POST /x?n=2 application/json Bearer tok {"i":2}`; seen[2] != want {
		t.Fatalf("request %q, want %q", seen[2], want)
	}
}

// The context's end aborts a request under way at once, and every later one.
func TestH1_ContextAborts(t *testing.T) {
	srv, _ := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	d, _ := NewDialer(srv.URL, 1)
	ctx, cancel := context.WithCancel(context.Background())
	c := NewConn(ctx, d)
	defer c.Close()
	wrote := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		c.Start("GET", "/hold", nil)
		c.Finish("", nil)
		_, err := c.RoundTrip(30*time.Second, func() { close(wrote) })
		done <- err
	}()
	<-wrote
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("request: %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the request was not aborted")
	}
	c.Start("GET", "/hold", nil)
	c.Finish("", nil)
	if _, err := c.RoundTrip(30*time.Second, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("request after the end: %v", err)
	}
}

// With spread > 1, connections to a loopback server come from 127.0.0.2,
// 127.0.0.3...
func TestH1_Spread(t *testing.T) {
	var mu sync.Mutex
	from := map[string]bool{}
	srv, _ := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		from[host] = true
		mu.Unlock()
	})
	d, err := NewDialer(srv.URL, 3)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c := NewConn(context.Background(), d)
		c.Start("GET", "/", nil)
		c.Finish("", nil)
		_, err := c.RoundTrip(5*time.Second, nil)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(from) != 3 || !from["127.0.0.2"] || !from["127.0.0.3"] || !from["127.0.0.4"] {
		t.Fatalf("connections from %v, want 127.0.0.2, .3 and .4", from)
	}
}
