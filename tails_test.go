package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

func TestTails_ReadAddTrim(t *testing.T) {
	tl := newTails()
	if _, ok := tl.read(1, 0, 10); ok {
		t.Fatal("read of a missing tail claimed to know")
	}
	tl.apply([]func(*tails){func(t *tails) { t.create(1, 5) }})
	if ev, ok := tl.read(1, 4, 10); ok {
		t.Fatalf("cursor below the base answered %v", ev)
	}
	if ev, ok := tl.read(1, 5, 10); !ok || len(ev) != 0 {
		t.Fatalf("caught-up read = %v, %v", ev, ok)
	}
	tl.apply([]func(*tails){func(t *tails) {
		t.add(1, Event{Seq: 5}) // at the base: already in the database
		for s := int64(6); s < 6+maxTailEvents+1; s++ {
			t.add(1, Event{Seq: s, Message: &Message{}})
		}
	}})
	ev, ok := tl.read(1, 5, 1000)
	if ok {
		t.Fatalf("after trimming, a read from the old base still answered %d events", len(ev))
	}
	tl.mu.Lock()
	base, n := tl.byUser[1].base, len(tl.byUser[1].events)
	tl.mu.Unlock()
	ev, ok = tl.read(1, base, 1000)
	if !ok || len(ev) != n || ev[0].Seq != base+1 {
		t.Fatalf("read from base %d: ok=%v, %d events", base, ok, len(ev))
	}
	tl.apply([]func(*tails){func(t *tails) { t.removeUpTo(1, base+10) }})
	if ev, _ := tl.read(1, base, 1000); len(ev) != n-10 || ev[0].Seq != base+11 {
		t.Fatalf("after removeUpTo: %d events", len(ev))
	}
}

// The tails are a cache of the queue table: whatever they answer must be
// what the database answers. Random sends, notices, cleans and tail
// requests, checked after every batch.
func TestTails_AgreeWithDatabase(t *testing.T) {
	ctx := context.Background()
	s, err := openSQLite(filepath.Join(t.TempDir(), "t.db"), 1000, quietLogger(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.isOnline = func(int64) bool { return true }
	var users []User
	for i := 0; i < 4; i++ {
		u, err := s.CreateUser(ctx, fmt.Sprintf("user%d", i), "U", "x")
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	for i := range users {
		for j := i + 1; j < len(users); j++ {
			if _, _, err := s.RequestFriend(ctx, users[i], users[j].Username); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AcceptFriend(ctx, users[j], users[i].Username); err != nil {
				t.Fatal(err)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 120; step++ {
		a, b := users[rng.IntN(4)], users[rng.IntN(4)]
		switch r := rng.IntN(10); {
		case r < 6 && a.ID != b.ID:
			if _, _, err := s.SendMessage(ctx, a, b.Username, fmt.Sprint("m", step), "", nil); err != nil {
				t.Fatal(err)
			}
		case r < 7:
			last, _ := s.LastSeq(ctx, a.ID)
			if _, err := s.Clean(ctx, a.ID, rng.Int64N(last+2)); err != nil {
				t.Fatal(err)
			}
		case r < 8:
			if err := s.do(ctx, func(tx *writeTx) error { return tx.addNotice(a.ID, kindPresence, b.json()) }); err != nil {
				t.Fatal(err)
			}
		case r < 9:
			if err := s.do(ctx, func(tx *writeTx) error { return tx.dropNotices(a.ID) }); err != nil {
				t.Fatal(err)
			}
		default:
			s.RequestTail(a.ID)
		}
		for _, u := range users {
			last, err := s.LastSeq(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			// The cursors a tail can answer: from its base up.
			s.tails.mu.Lock()
			from := last
			if tl := s.tails.byUser[u.ID]; tl != nil {
				from = tl.base
			}
			s.tails.mu.Unlock()
			cursors := []int64{from, last}
			for k := 0; k < 4 && last > from; k++ {
				cursors = append(cursors, from+rng.Int64N(last-from))
			}
			for _, cursor := range cursors {
				mem, ok := s.RecentEvents(u.ID, cursor, maxPollBatch)
				if !ok {
					continue
				}
				db, err := s.EventsAfter(ctx, u.ID, cursor, maxPollBatch)
				if err != nil {
					t.Fatal(err)
				}
				m, _ := json.Marshal(mem)
				d, _ := json.Marshal(db)
				if string(m) != string(d) {
					t.Fatalf("step %d, %s from %d:\n tail %s\n db   %s", step, u.Username, cursor, m, d)
				}
			}
		}
	}
}
