package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Benchmarks of group fan-out and of GET /api/conversations (issue 14).
// Like bench_test.go's, they assert no timings.
//
//	go test -run '^$' -bench 'Group|Conversations' -benchtime 200x .

// benchGroup makes a group of n members (the owner included) straight in
// the store; members are logged-in clients, the owner first.
func benchGroup(b *testing.B, ts *testServer, n int) (owner User, members []*client, gid int64) {
	b.Helper()
	ctx := context.Background()
	s := ts.app.store
	cs := make([]*client, n)
	users := make([]User, n)
	for i := range cs {
		cs[i] = ts.user("gb")
		acc, err := s.AccountByName(ctx, cs[i].username)
		if err != nil {
			b.Fatal(err)
		}
		users[i] = acc.User
	}
	names := []string{}
	for _, u := range users[1:] {
		if _, _, err := s.RequestFriend(ctx, users[0], u.Username); err != nil {
			b.Fatal(err)
		}
		if _, err := s.AcceptFriend(ctx, u, users[0].Username); err != nil {
			b.Fatal(err)
		}
		names = append(names, u.Username)
	}
	g, err := s.CreateGroup(ctx, users[0], "bench", names, n)
	if err != nil {
		b.Fatal(err)
	}
	return users[0], cs, g.ID
}

// BenchmarkGroupSend stores group messages one at a time, each waiting for
// its own commit: the cost of one fan-out transaction (one message row, a
// queue row per member) with its fsync.
func BenchmarkGroupSend(b *testing.B) {
	for _, n := range []int{10, 100, 256} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ts := newTestServer(b, func(c *Config) { c.MaxQueue = 1 << 30; c.MaxGroupMembers = n })
			owner, _, gid := benchGroup(b, ts, n)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, _, err := ts.app.store.SendGroupMessage(ctx, owner, gid, "hello", "", nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/queue-row")
		})
	}
}

// BenchmarkGroupSendParallel is BenchmarkGroupSend with 16 senders per CPU
// at once, all members of one group: many fan-outs share a commit.
func BenchmarkGroupSendParallel(b *testing.B) {
	for _, n := range []int{10, 100, 256} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ts := newTestServer(b, func(c *Config) { c.MaxQueue = 1 << 30; c.MaxGroupMembers = n })
			owner, _, gid := benchGroup(b, ts, n)
			var mu sync.Mutex
			var firstErr error
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, _, err := ts.app.store.SendGroupMessage(context.Background(), owner, gid, "hello", "", nil); err != nil {
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
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

// BenchmarkGroupSendDeliver sends over HTTP to a group whose every other
// member is long-polling over HTTP, one message at a time, and times each
// member's delivery from the send's start: p50 and p99 over all deliveries,
// and sends/s (each send waits until every member has it).
func BenchmarkGroupSendDeliver(b *testing.B) {
	for _, n := range []int{10, 100, 256} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ts := newTestServer(b, func(c *Config) { c.MaxQueue = 1 << 30; c.MaxGroupMembers = n })
			_, cs, gid := benchGroup(b, ts, n)
			sender := cs[0]
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * n}}
			type delivery struct {
				msg int64
				at  time.Time
			}
			got := make(chan delivery, 4*n)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, c := range cs[1:] {
				first, err := benchPoll(hc, ts.srv.URL, c.token, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func(token string, cursor int64) {
					defer wg.Done()
					for ctx.Err() == nil {
						ans, err := benchPoll(hc, ts.srv.URL, token, cursor, 30)
						if err != nil {
							return
						}
						now := time.Now()
						for _, e := range ans.Events {
							if e.Message != nil {
								got <- delivery{e.Message.ID, now}
							}
						}
						cursor = ans.Cursor
					}
				}(c.token, first.Cursor)
			}
			eventually(b, 30*time.Second, "every member polling", func() bool { return ts.app.notifier.waiting() >= n-1 })
			var lat []time.Duration
			body := fmt.Sprintf(`{"group":%d,"body":"hello"}`, gid)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				req, _ := http.NewRequest("POST", ts.url("/api/messages"), stringsReader(body))
				req.Header.Set("Authorization", "Bearer "+sender.token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil || resp.StatusCode != http.StatusCreated {
					b.Fatalf("send: %v %v", resp, err)
				}
				var sent struct{ Message Message }
				decodeBody(b, resp, &sent)
				for left := n - 1; left > 0; {
					select {
					case d := <-got:
						if d.msg == sent.Message.ID {
							lat = append(lat, d.at.Sub(start))
							left--
						}
					case <-time.After(30 * time.Second):
						b.Fatalf("message %d: %d members still without it", sent.Message.ID, left)
					}
				}
			}
			b.StopTimer()
			cancel()
			ts.app.BeginShutdown()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

// BenchmarkConversations is GET /api/conversations over HTTP for a user
// with 100 conversations (90 friends and 10 groups) and 10,000 messages in
// their queue, half of them unread.
func BenchmarkConversations(b *testing.B) {
	ts := newTestServer(b, func(c *Config) { c.MaxQueue = 1 << 30 })
	ctx := context.Background()
	s := ts.app.store
	me := ts.user("conv")
	acc, err := s.AccountByName(ctx, me.username)
	if err != nil {
		b.Fatal(err)
	}
	meU := acc.User
	var friends []User
	for i := 0; i < 90; i++ {
		u, err := s.CreateUser(ctx, "cf"+strconv.Itoa(i)+"-"+me.username, "f", "x")
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.RequestFriend(ctx, meU, u.Username); err != nil {
			b.Fatal(err)
		}
		if _, err := s.AcceptFriend(ctx, u, meU.Username); err != nil {
			b.Fatal(err)
		}
		friends = append(friends, u)
	}
	var groups []int64
	for i := 0; i < 10; i++ {
		g, err := s.CreateGroup(ctx, meU, "g"+strconv.Itoa(i), []string{friends[i].Username, friends[i+10].Username}, 256)
		if err != nil {
			b.Fatal(err)
		}
		groups = append(groups, g.ID)
	}
	// 100 messages in each conversation, from the other side, 64 at a time.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for c := 0; c < 100; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				var err error
				if c < 90 {
					_, _, err = s.SendMessage(ctx, friends[c], meU.Username, "m"+strconv.Itoa(i), "", nil)
				} else {
					_, _, _, err = s.SendGroupMessage(ctx, friends[c-90], groups[c-90], "g"+strconv.Itoa(i), "", nil)
				}
				if err != nil {
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
	convs, err := s.Conversations(ctx, meU.ID)
	if err != nil || len(convs) != 100 {
		b.Fatalf("%d conversations, %v", len(convs), err)
	}
	// About half read: the sends interleaved, so each conversation's
	// messages spread over the whole id range, and a marker half that
	// range below its newest leaves about half of them unread.
	for _, c := range convs {
		upto := c.LastMessage.ID - 5000
		if c.Group != nil {
			err = s.MarkRead(ctx, meU, "", c.Group.ID, upto)
		} else {
			err = s.MarkRead(ctx, meU, c.Peer.Username, 0, upto)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if q := ts.app.store.QueuedMessages(); q < 10_000 {
		b.Fatalf("only %d queued", q)
	}
	convs, _ = s.Conversations(ctx, meU.ID)
	var unread int64
	for _, c := range convs {
		unread += c.Unread
	}
	b.Logf("%d conversations, %d messages queued for the user, %d unread", len(convs), 10_000, unread)
	hc := ts.srv.Client()
	b.Run("http", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			req, _ := http.NewRequest("GET", ts.url("/api/conversations"), nil)
			req.Header.Set("Authorization", "Bearer "+me.token)
			resp, err := hc.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%v %v", resp, err)
			}
			var out struct{ Conversations []conversationJSON }
			decodeBody(b, resp, &out)
			if len(out.Conversations) != 100 {
				b.Fatalf("%d conversations", len(out.Conversations))
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := s.Conversations(ctx, meU.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func decodeBody(b *testing.B, resp *http.Response, out any) {
	b.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		b.Fatal(err)
	}
}
