package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"webim/internal/h1"
)

func testServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func testConn(t *testing.T, url string) *h1.Conn {
	t.Helper()
	d, err := h1.NewDialer(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := h1.NewConn(context.Background(), d)
	t.Cleanup(c.Close)
	return c
}

func TestH1_ErrorAnswer(t *testing.T) {
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(429)
		io.WriteString(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
	})
	c := testConn(t, srv.URL)
	_, err := send(c, "tok", "bob", "hi", "m-1")
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "rate_limited" || ae.RetryAfter != 3*time.Second {
		t.Fatalf("send: %v (%#v)", err, ae)
	}
}

// The requests the hot path sends are what the server expects.
func TestH1_SendPollClean(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
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
	created, err := send(c, "tok", "bob", "a \"q\" \\ \n\tb\x01é", "c1")
	if err != nil || !created {
		t.Fatalf("send: %v %v", created, err)
	}
	var ans pollAnswer
	wrote := 0
	if err := poll(c, "tok", 3, 25, func() { wrote++ }, &ans, map[string]string{"bob": "bob"}); err != nil {
		t.Fatal(err)
	}
	if wrote != 1 || ans.Cursor != 7 || len(ans.Events) != 1 || ans.Events[0].Message.Body != "lg r 0" || ans.Events[0].Message.From != "al" {
		t.Fatalf("poll: wrote %d, %+v", wrote, ans)
	}
	if n, err := clean(c, "tok", 7); err != nil || n != 4 {
		t.Fatalf("clean: %d %v", n, err)
	}
	if seen[1] != "GET /api/poll?cursor=3&timeout=25  " || seen[2] != `POST /api/clean application/json {"upto":7}` {
		t.Fatalf("requests %q", seen)
	}
}

// The context's end aborts a held poll at once.
func TestH1_ContextAbortsPoll(t *testing.T) {
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	d, _ := h1.NewDialer(srv.URL, 1)
	ctx, cancel := context.WithCancel(context.Background())
	c := h1.NewConn(ctx, d)
	defer c.Close()
	wrote := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var ans pollAnswer
		done <- poll(c, "tok", 0, 25, func() { close(wrote) }, &ans, nil)
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
	if err := poll(c, "tok", 0, 25, nil, &pollAnswer{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("poll after the end: %v", err)
	}
}
