package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestConcurrency_ManySendersAndPollers has every user send to every other
// while all of them long-poll and clean: each message must reach its
// recipient exactly once, in the order its sender sent it, and every
// sender's own copies likewise.
func TestConcurrency_ManySendersAndPollers(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	users, perPair := 6, 40
	if raceEnabled {
		users, perPair = 5, 10
	}
	names := make([]string, users)
	for i := range names {
		names[i] = "conc"
	}
	cs := ts.friends(names...)
	index := map[string]int{}
	for i, c := range cs {
		index[c.username] = i
	}
	want := users * (users - 1) * perPair // each receives (users-1)*perPair; each holds as many own copies

	type got struct {
		mu   sync.Mutex
		next map[string]int // "from>to" → next expected number
		n    int
		err  error
	}
	results := make([]*got, users)
	for i := range results {
		results[i] = &got{next: map[string]int{}}
	}
	stop := make(chan struct{})
	var pollers sync.WaitGroup
	for i, c := range cs {
		pollers.Add(1)
		go func() {
			defer pollers.Done()
			r := results[i]
			var cursor int64
			cleaned := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, data := c.do("GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=1", cursor), nil)
				if resp.StatusCode != http.StatusOK {
					r.err = fmt.Errorf("poll: %d %s", resp.StatusCode, data)
					return
				}
				var p pollResult
				if err := json.Unmarshal(data, &p); err != nil {
					r.err = err
					return
				}
				r.mu.Lock()
				for _, e := range p.Events {
					if e.Seq <= cursor {
						r.err = fmt.Errorf("seq %d at cursor %d", e.Seq, cursor)
					}
					if e.Type != "message" {
						continue
					}
					m := e.Message
					var k int
					fmt.Sscanf(m.Body, "%d", &k)
					key := m.From + ">" + m.To
					if k != r.next[key] {
						r.err = fmt.Errorf("%s: got message %d, want %d", key, k, r.next[key])
					}
					r.next[key] = k + 1
					r.n++
				}
				r.mu.Unlock()
				if len(p.Events) > 0 {
					cursor = p.Cursor
					// Clean now and then, as a client would.
					if cleaned++; cleaned%3 == 0 {
						resp, data := c.do("POST", "/api/clean", map[string]any{"upto": cursor})
						if resp.StatusCode != http.StatusOK {
							r.err = fmt.Errorf("clean: %d %s", resp.StatusCode, data)
							return
						}
					}
				}
			}
		}()
	}

	// Every sender sends to every other, one goroutine per pair, in order.
	var senders sync.WaitGroup
	for _, from := range cs {
		for _, to := range cs {
			if from == to {
				continue
			}
			senders.Add(1)
			go func() {
				defer senders.Done()
				for k := range perPair {
					resp, data := from.do("POST", "/api/messages", map[string]any{"to": to.username, "body": fmt.Sprint(k)})
					if resp.StatusCode != http.StatusCreated {
						t.Errorf("%s→%s %d: %d %s", from.username, to.username, k, resp.StatusCode, data)
						return
					}
				}
			}()
		}
	}
	sendStart := time.Now()
	senders.Wait()
	t.Logf("sends took %v", time.Since(sendStart))

	// Each user sees the messages sent to them and their own copies.
	perUser := 2 * (users - 1) * perPair
	deadline := time.Now().Add(60 * time.Second)
	for i := range cs {
		for {
			r := results[i]
			r.mu.Lock()
			n, err := r.n, r.err
			r.mu.Unlock()
			if err != nil {
				close(stop)
				pollers.Wait()
				t.Fatalf("%s: %v", cs[i].username, err)
			}
			if n >= perUser {
				break
			}
			if time.Now().After(deadline) {
				close(stop)
				pollers.Wait()
				t.Fatalf("%s got %d of %d message events", cs[i].username, n, perUser)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(stop)
	pollers.Wait()
	total := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", cs[i].username, r.err)
		}
		if r.n != perUser {
			t.Fatalf("%s got %d message events, want exactly %d", cs[i].username, r.n, perUser)
		}
		for key, next := range r.next {
			if next != perPair {
				t.Fatalf("%s: %s ended at %d, want %d", cs[i].username, key, next, perPair)
			}
		}
		total += r.n
	}
	if total != 2*want {
		t.Fatalf("%d message events in all, want %d", total, 2*want)
	}
}
