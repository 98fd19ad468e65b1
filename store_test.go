package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The store contract, tested through the Store interface alone. Each test
// takes its database from the engine pass (engine_test.go), so the same
// cases run unchanged on SQLite and on PostgreSQL.

func openTestStore(t *testing.T, maxQueue int) (Store, string) {
	t.Helper()
	db := engineDB(t)
	s, err := OpenStore(db, maxQueue, quietLogger())
	if err != nil {
		t.Fatalf("open %s: %v", redactDBURL(db), err)
	}
	t.Cleanup(func() { s.Close() })
	return s, db
}

// storeFriends makes n users who are all friends with each other.
func storeFriends(t *testing.T, s Store, n int) []User {
	t.Helper()
	ctx := context.Background()
	users := make([]User, n)
	for i := range users {
		u, err := s.CreateUser(ctx, uniqueName("st"), "Store User", testPasswordHash)
		if err != nil {
			t.Fatal(err)
		}
		users[i] = u
	}
	for i := range users {
		for j := i + 1; j < n; j++ {
			if _, _, err := s.RequestFriend(ctx, users[i], users[j].Username); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AcceptFriend(ctx, users[j], users[i].Username); err != nil {
				t.Fatal(err)
			}
		}
	}
	return users
}

// allEvents pages user's queue from cursor 0.
func storeEvents(t *testing.T, s Store, user int64) []Event {
	t.Helper()
	var out []Event
	var cursor int64
	for {
		evs, err := s.EventsAfter(context.Background(), user, cursor, maxPollBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		cursor = evs[len(evs)-1].Seq
	}
}

// Concurrent senders to one recipient: every message lands once, in a seq
// order that never repeats or goes back, and ids rise with seqs.
func TestStore_SeqsRiseUnderConcurrentSends(t *testing.T) {
	s, _ := openTestStore(t, defaultMaxQueue)
	users := storeFriends(t, s, 5)
	to := users[0]
	const perSender = 40
	var wg sync.WaitGroup
	errs := make(chan error, len(users)*perSender)
	for _, from := range users[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				if _, _, err := s.SendMessage(context.Background(), from, to.Username, fmt.Sprintf("%s %d", from.Username, i), "", nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs := storeEvents(t, s, to.ID)
	var msgs []Event
	for _, e := range evs {
		if e.Type == "message" {
			msgs = append(msgs, e)
		}
	}
	if len(msgs) != (len(users)-1)*perSender {
		t.Fatalf("%d messages in the queue, want %d", len(msgs), (len(users)-1)*perSender)
	}
	last := map[string]int{}
	for i, e := range msgs {
		if i > 0 && (e.Seq <= msgs[i-1].Seq || e.Message.ID <= msgs[i-1].Message.ID) {
			t.Fatalf("event %d: seq %d id %d after seq %d id %d", i, e.Seq, e.Message.ID, msgs[i-1].Seq, msgs[i-1].Message.ID)
		}
		var n int
		var from string
		fmt.Sscanf(e.Message.Body, "%s %d", &from, &n)
		if prev, ok := last[from]; ok && n != prev+1 {
			t.Fatalf("%s's message %d came after its %d", from, n, prev)
		}
		last[from] = n
	}
	if seq, err := s.LastSeq(context.Background(), to.ID); err != nil || seq != evs[len(evs)-1].Seq {
		t.Fatalf("LastSeq %d %v, want %d", seq, err, evs[len(evs)-1].Seq)
	}
}

// Of concurrent sends with one client_msg_id exactly one stores a message;
// the rest get that message back.
func TestStore_ConcurrentRepeatsStoreOnce(t *testing.T) {
	s, _ := openTestStore(t, defaultMaxQueue)
	users := storeFriends(t, s, 2)
	var created atomic.Int32
	ids := make(chan int64, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, c, err := s.SendMessage(context.Background(), users[0], users[1].Username, "once", "the-one", nil)
			if err != nil {
				t.Error(err)
				return
			}
			if c {
				created.Add(1)
			}
			ids <- m.ID
		}()
	}
	wg.Wait()
	close(ids)
	var first int64
	for id := range ids {
		if first == 0 {
			first = id
		}
		if id != first {
			t.Fatalf("repeats answered messages %d and %d", first, id)
		}
	}
	if created.Load() != 1 {
		t.Fatalf("%d of 16 repeats were created, want exactly 1", created.Load())
	}
	if n := len(storeEvents(t, s, users[1].ID)); n != 1 {
		t.Fatalf("recipient's queue holds %d events, want 1", n)
	}
}

// Clean deletes up to its seq, counts the messages, never lets a seq be
// handed out again, and leaves the sender's copy alone.
func TestStore_CleanAndSeqsNeverReused(t *testing.T) {
	s, _ := openTestStore(t, defaultMaxQueue)
	users := storeFriends(t, s, 2)
	a, b := users[0], users[1]
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := s.SendMessage(ctx, a, b.Username, fmt.Sprint("m", i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	before := storeEvents(t, s, b.ID)
	last := before[len(before)-1].Seq
	removed, err := s.Clean(ctx, b.ID, last)
	if err != nil || removed != 3 {
		t.Fatalf("Clean: %d %v, want 3", removed, err)
	}
	if evs := storeEvents(t, s, b.ID); len(evs) != 0 {
		t.Fatalf("%d events left after cleaning all", len(evs))
	}
	if seq, err := s.LastSeq(ctx, b.ID); err != nil || seq != last {
		t.Fatalf("LastSeq after clean %d %v, want %d", seq, err, last)
	}
	m, _, err := s.SendMessage(ctx, a, b.Username, "after", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	evs := storeEvents(t, s, b.ID)
	if len(evs) != 1 || evs[0].Seq <= last || evs[0].Message.ID != m.ID {
		t.Fatalf("after clean: %+v, want one event above seq %d", evs, last)
	}
	if n := len(storeEvents(t, s, a.ID)); n < 4 {
		t.Fatalf("sender's queue holds %d events, want its 4 copies", n)
	}
	if removed, err := s.Clean(ctx, b.ID, 0); err != nil || removed != 0 {
		t.Fatalf("Clean(0): %d %v", removed, err)
	}
}

// The queue cap refuses the send that would pass it, and nothing of it is
// stored; a clean makes room.
func TestStore_QueueCap(t *testing.T) {
	s, _ := openTestStore(t, 3)
	users := storeFriends(t, s, 2)
	a, b := users[0], users[1]
	ctx := context.Background()
	// a's own copies count in a's queue too: clean them as they come.
	for i := range 3 {
		if _, _, err := s.SendMessage(ctx, a, b.Username, fmt.Sprint(i), "", nil); err != nil {
			t.Fatal(err)
		}
		if seq, _ := s.LastSeq(ctx, a.ID); seq > 0 {
			s.Clean(ctx, a.ID, seq)
		}
	}
	if _, _, err := s.SendMessage(ctx, a, b.Username, "over", "c-over", nil); !errors.Is(err, errQueueFull) {
		t.Fatalf("send over the cap: %v, want queue_full", err)
	}
	if n := len(storeEvents(t, s, b.ID)); n != 3 {
		t.Fatalf("queue holds %d, want 3", n)
	}
	last, _ := s.LastSeq(ctx, b.ID)
	if _, err := s.Clean(ctx, b.ID, last); err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.SendMessage(ctx, a, b.Username, "over", "c-over", nil); err != nil || !created {
		t.Fatalf("send after a clean: %v %v", created, err)
	}
}

// A new session marks the older one replaced; ending one makes it unknown.
func TestStore_SessionsReplaceAndEnd(t *testing.T) {
	s, _ := openTestStore(t, defaultMaxQueue)
	u := storeFriends(t, s, 1)[0]
	ctx := context.Background()
	_, h1, _ := newToken()
	_, h2, _ := newToken()
	if err := s.StartSession(ctx, u.ID, h1); err != nil {
		t.Fatal(err)
	}
	if row, err := s.LoadSession(ctx, h1); err != nil || row.Replaced || row.User.ID != u.ID {
		t.Fatalf("first session: %+v %v", row, err)
	}
	if err := s.StartSession(ctx, u.ID, h2); err != nil {
		t.Fatal(err)
	}
	if row, err := s.LoadSession(ctx, h1); err != nil || !row.Replaced {
		t.Fatalf("older session after a new login: %+v %v, want replaced", row, err)
	}
	if err := s.EndSession(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadSession(ctx, h2); !errors.Is(err, errUnauthorized) {
		t.Fatalf("ended session: %v, want unauthorized", err)
	}
	if err := s.PruneSessions(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadSession(ctx, h1); !errors.Is(err, errUnauthorized) {
		t.Fatalf("pruned session: %v, want unauthorized", err)
	}
}

// A commit tells who got events: the recipient's poll wakes, the sender's
// own copy does not wake the sender, and a refused send wakes nobody.
func TestStore_CommitWakesTheRecipient(t *testing.T) {
	s, _ := openTestStore(t, defaultMaxQueue)
	users := storeFriends(t, s, 3)
	a, b, c := users[0], users[1], users[2]
	woken := make(chan []int64, 16)
	s.Wire(func(ids []int64) { woken <- append([]int64(nil), ids...) }, func(int64) bool { return false })
	ctx := context.Background()
	if _, err := s.Block(ctx, c, a.Username); err != nil {
		t.Fatal(err)
	}
	drain := func() (got map[int64]bool) {
		got = map[int64]bool{}
		for {
			select {
			case ids := <-woken:
				for _, id := range ids {
					got[id] = true
				}
			default:
				return got
			}
		}
	}
	drain()
	if _, _, err := s.SendMessage(ctx, a, c.Username, "blocked", "", nil); err == nil {
		t.Fatal("a send to a blocker was stored")
	}
	if got := drain(); len(got) != 0 {
		t.Fatalf("a refused send woke %v", got)
	}
	if _, _, err := s.SendMessage(ctx, a, b.Username, "hi", "", nil); err != nil {
		t.Fatal(err)
	}
	got := drain()
	if !got[b.ID] || got[a.ID] {
		t.Fatalf("a send woke %v, want the recipient %d and not the sender %d", got, b.ID, a.ID)
	}
	evs := storeEvents(t, s, b.ID)
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", evs[len(evs)-1].Message.SentAt); err != nil {
		t.Fatalf("sent_at %q is not API.md's time: %v", evs[len(evs)-1].Message.SentAt, err)
	}
}
