package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Benchmarks of the hot paths (issue 5). They make no timing assertions; CI
// runs them with a short -benchtime only to prove they still work:
//
//	go test -run '^$' -bench . -benchtime 100x -short
//
// Every benchmark runs on a real SQLite file (WAL, synchronous=FULL) in the
// benchmark's temp dir, so enqueue figures include the fsync of the commit.

// benchServer starts the real App behind httptest with a queue cap that the
// benchmarks never reach.
func benchServer(b *testing.B) *testServer {
	b.Helper()
	return newTestServer(b, func(c *Config) { c.MaxQueue = 1 << 30 })
}

// benchFriends creates two friends straight in the store, skipping the
// deliberately slow password hash of a sign-up.
func benchFriends(b *testing.B, s Store, prefix string) (from, to User) {
	b.Helper()
	ctx := context.Background()
	var err error
	if from, err = s.CreateUser(ctx, prefix+"-from", "from", "x"); err != nil {
		b.Fatal(err)
	}
	if to, err = s.CreateUser(ctx, prefix+"-to", "to", "x"); err != nil {
		b.Fatal(err)
	}
	if _, _, err := s.RequestFriend(ctx, from, to.Username); err != nil {
		b.Fatal(err)
	}
	if _, err := s.AcceptFriend(ctx, to, from.Username); err != nil {
		b.Fatal(err)
	}
	return from, to
}

// fill enqueues n messages from -> to, 64 senders at a time.
func fill(b *testing.B, s Store, from, to User, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 64 {
				if _, _, err := s.SendMessage(context.Background(), from, to.Username, "fill "+strconv.Itoa(i), "", nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkEnqueue stores messages one at a time: each waits for its own
// commit, so this is one fsync'd transaction per message.
func BenchmarkEnqueue(b *testing.B) {
	ts := benchServer(b)
	from, to := benchFriends(b, ts.app.store, "enq")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := ts.app.store.SendMessage(ctx, from, to.Username, "hello", "", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// benchEnqueueParallel stores messages from 32 senders per CPU at once, so
// the writer commits many in one transaction (group commit).
func benchEnqueueParallel(b *testing.B, ts *testServer, from, to User) {
	b.Helper()
	var mu sync.Mutex
	var firstErr error
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := ts.app.store.SendMessage(context.Background(), from, to.Username, "hello", "", nil); err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
		}
	})
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// BenchmarkEnqueueParallel is enqueue under group-commit pressure, into a
// queue that starts empty.
func BenchmarkEnqueueParallel(b *testing.B) {
	ts := benchServer(b)
	from, to := benchFriends(b, ts.app.store, "par")
	benchEnqueueParallel(b, ts, from, to)
}

// BenchmarkEnqueueDeepQueue is BenchmarkEnqueueParallel into a queue that
// already holds 100,000 uncleaned messages (1,000 with -short): it should
// cost the same.
func BenchmarkEnqueueDeepQueue(b *testing.B) {
	depth := 100_000
	if testing.Short() {
		depth = 1_000
	}
	ts := benchServer(b)
	from, to := benchFriends(b, ts.app.store, "deep")
	fill(b, ts.app.store, from, to, depth)
	benchEnqueueParallel(b, ts, from, to)
}

// BenchmarkEventsAfter reads a full page (100 events) of a queue from the
// store, the database part of a poll answered from the queue.
func BenchmarkEventsAfter(b *testing.B) {
	ts := benchServer(b)
	from, to := benchFriends(b, ts.app.store, "ev")
	fill(b, ts.app.store, from, to, maxPollBatch)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evs, err := ts.app.store.EventsAfter(ctx, to.ID, 0, maxPollBatch)
		if err != nil || len(evs) < maxPollBatch {
			b.Fatalf("EventsAfter: %d events, %v", len(evs), err)
		}
	}
}

// benchPoll runs GET /api/poll with a bearer token and decodes the answer.
func benchPoll(hc *http.Client, base, token string, cursor int64, timeout int) (pollAnswer, error) {
	var out pollAnswer
	req, err := http.NewRequest("GET", fmt.Sprintf("%s/api/poll?cursor=%d&timeout=%d", base, cursor, timeout), nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("poll: status %d: %s", resp.StatusCode, data)
	}
	err = json.Unmarshal(data, &out)
	return out, err
}

// benchUser signs up and logs in a user over HTTP (one password hash each)
// and returns its client and store identity.
func benchUser(b *testing.B, ts *testServer, prefix string) (*client, User) {
	b.Helper()
	c := ts.newUser(prefix)
	acc, err := ts.app.store.AccountByName(context.Background(), c.username)
	if err != nil {
		b.Fatal(err)
	}
	return c, acc.User
}

// BenchmarkPollFromQueue is a whole poll over HTTP (authentication,
// handler, query, JSON) answered at once from a queue holding messages:
// from the start of the queue (cursor=0, as after a login) and caught up
// (the cursor just before the newest message, as a polling page is).
func BenchmarkPollFromQueue(b *testing.B) {
	ts := benchServer(b)
	alice, aliceU := benchUser(b, ts, "pfqa")
	bob, bobU := benchUser(b, ts, "pfqb")
	befriend(alice, bob)
	for i := 0; i < 10; i++ {
		if _, _, err := ts.app.store.SendMessage(context.Background(), aliceU, bobU.Username, "hello", "", nil); err != nil {
			b.Fatal(err)
		}
	}
	hc := ts.srv.Client()
	all, err := benchPoll(hc, ts.srv.URL, bob.token, 0, 0)
	if err != nil || len(all.Events) == 0 {
		b.Fatalf("poll: %d events, %v", len(all.Events), err)
	}
	for _, bc := range []struct {
		name   string
		cursor int64
	}{{"cursor=0", 0}, {"caught-up", all.Cursor - 1}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				ans, err := benchPoll(hc, ts.srv.URL, bob.token, bc.cursor, 0)
				if err != nil || len(ans.Events) == 0 {
					b.Fatalf("poll: %d events, %v", len(ans.Events), err)
				}
			}
		})
	}
}

// BenchmarkPollWokenByNotifier times a waiting poll from the notifier's
// wake-up to the client holding the answer. The message it answers with is
// stored beforehand, with the timer stopped and the commit's own wake-up
// held back, so only the wake-up path is timed: notify, the poll's second
// read of the queue, the JSON answer and its trip over loopback.
func BenchmarkPollWokenByNotifier(b *testing.B) {
	ts := benchServer(b)
	alice, aliceU := benchUser(b, ts, "pwna")
	bob, bobU := benchUser(b, ts, "pwnb")
	befriend(alice, bob)
	store, n := ts.sqlite(), ts.app.notifier
	hc := ts.srv.Client()
	ctx := context.Background()
	// Start after everything bob's queue holds already.
	first, err := benchPoll(hc, ts.srv.URL, bob.token, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	cursor := first.Cursor
	type result struct {
		ans pollAnswer
		err error
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		done := make(chan result, 1)
		go func() {
			ans, err := benchPoll(hc, ts.srv.URL, bob.token, cursor, 30)
			done <- result{ans, err}
		}()
		for deadline := time.Now().Add(10 * time.Second); n.waiting() == 0; time.Sleep(50 * time.Microsecond) {
			if time.Now().After(deadline) {
				b.Fatal("the poll never waited")
			}
		}
		time.Sleep(time.Millisecond) // let it reach its select
		onCommit := store.onCommit
		store.onCommit = func([]int64) {}
		_, _, err := store.SendMessage(ctx, aliceU, bobU.Username, "wake "+strconv.Itoa(i), "", nil)
		store.onCommit = onCommit
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n.notify([]int64{bobU.ID})
		r := <-done
		if r.err != nil || len(r.ans.Events) != 1 {
			b.Fatalf("woken poll: %d events, %v", len(r.ans.Events), r.err)
		}
		cursor = r.ans.Cursor
	}
}

// BenchmarkNotifierWake10000 wakes 10,000 waiting users with one notify and
// waits until every waiter has run. ns/op is per round of 10,000;
// ns/waiter is the cost of each.
func BenchmarkNotifierWake10000(b *testing.B) {
	const waiters = 10_000
	n := newNotifier()
	ids := make([]int64, waiters)
	next := make([]chan struct{}, waiters)
	quit := make(chan struct{})
	var ready, woke, exited sync.WaitGroup
	for i := range ids {
		ids[i] = int64(i + 1)
		next[i] = make(chan struct{}, 1)
		exited.Add(1)
		go func() {
			defer exited.Done()
			for {
				select {
				case <-next[i]:
				case <-quit:
					return
				}
				ch, release := n.wait(ids[i])
				ready.Done()
				<-ch
				release()
				woke.Done()
			}
		}()
	}
	defer func() { close(quit); exited.Wait() }()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ready.Add(waiters)
		woke.Add(waiters)
		for _, c := range next {
			c <- struct{}{}
		}
		ready.Wait()
		b.StartTimer()
		n.notify(ids)
		woke.Wait()
	}
	b.StopTimer()
	if b.N > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/waiters, "ns/waiter")
	}
	if w := n.waiting(); w != 0 {
		b.Fatalf("%d users still waiting after the last round", w)
	}
}
