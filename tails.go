package main

import "sync"

// maxTailEvents bounds each user's tail; a client further behind than this
// reads from the database instead.
const maxTailEvents = 256

// tails keeps the newest events of online users' queues in memory, so a poll
// that is caught up (the usual case) is answered without touching SQLite.
// Only the writer changes a tail, after the commit that made its events
// durable, in the order of its ops; polls read it. A tail is a cache: it can
// be dropped at any time, and the database answers instead. The one thing
// it holds that the database does not is ephemeral events (typing,
// sqlite_ephemeral.go), which are transient: dropped with it, and taken out
// by the poll that delivers them.
type tails struct {
	mu      sync.Mutex
	byUser  map[int64]*tail
	pending map[int64]bool // a tail was asked for and the writer has not made it yet
}

// tail holds every uncleaned event of one queue with seq > base.
type tail struct {
	base   int64
	events []Event // ascending seq
}

func newTails() *tails {
	return &tails{byUser: map[int64]*tail{}, pending: map[int64]bool{}}
}

// read returns up to limit events with seq > cursor, and ok = false when the
// tail cannot tell (no tail, or cursor is older than it reaches).
func (t *tails) read(user, cursor int64, limit int) (events []Event, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.byUser[user]
	if tl == nil || cursor < tl.base {
		return nil, false
	}
	i := 0
	for i < len(tl.events) && tl.events[i].Seq <= cursor {
		i++
	}
	n := min(len(tl.events)-i, limit)
	events = make([]Event, n)
	copy(events, tl.events[i:i+n])
	taken := false
	for _, e := range events {
		taken = taken || e.ephemeral
	}
	if taken {
		kept := tl.events[:i:i]
		for j, e := range tl.events[i:] {
			if !e.ephemeral || j >= n {
				kept = append(kept, e)
			}
		}
		tl.events = kept
	}
	return events, true
}

// takeEphemeral removes and returns user's ephemeral events with seq >
// cursor: a poll answered from the database (which never holds them) adds
// them to its answer.
func (t *tails) takeEphemeral(user, cursor int64) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.byUser[user]
	if tl == nil {
		return nil
	}
	var taken []Event
	kept := tl.events[:0:0]
	for _, e := range tl.events {
		if e.ephemeral && e.Seq > cursor {
			taken = append(taken, e)
		} else {
			kept = append(kept, e)
		}
	}
	if taken != nil {
		tl.events = kept
	}
	return taken
}

// has reports whether user has a tail.
func (t *tails) has(user int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byUser[user] != nil
}

// request marks user's tail as asked for; it reports whether the caller
// should ask the writer to make it.
func (t *tails) request(user int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byUser[user] != nil || t.pending[user] {
		return false
	}
	t.pending[user] = true
	return true
}

// The methods below are called by the writer only, with t.mu held (apply).

func (t *tails) create(user, base int64) {
	delete(t.pending, user)
	if t.byUser[user] == nil {
		t.byUser[user] = &tail{base: base}
	}
}

func (t *tails) add(user int64, e Event) {
	tl := t.byUser[user]
	if tl == nil || e.Seq <= tl.base {
		return
	}
	tl.events = append(tl.events, e)
	if len(tl.events) > maxTailEvents {
		// Keep the newer half; what is dropped is still in the database.
		drop := len(tl.events) / 2
		tl.base = tl.events[drop-1].Seq
		tl.events = append(tl.events[:0:0], tl.events[drop:]...)
	}
}

func (t *tails) removeUpTo(user, upto int64) {
	tl := t.byUser[user]
	if tl == nil {
		return
	}
	i := 0
	for i < len(tl.events) && tl.events[i].Seq <= upto {
		i++
	}
	tl.events = append(tl.events[:0:0], tl.events[i:]...)
}

func (t *tails) removeNotices(user int64) {
	tl := t.byUser[user]
	if tl == nil {
		return
	}
	kept := tl.events[:0:0]
	for _, e := range tl.events {
		if e.Message != nil {
			kept = append(kept, e)
		}
	}
	tl.events = kept
}

func (t *tails) forget(user int64) {
	delete(t.byUser, user)
	delete(t.pending, user)
}

func (t *tails) resetLocked() {
	clear(t.byUser)
	clear(t.pending)
}

// apply runs the writer's changes of one committed batch, in op order.
func (t *tails) apply(changes []func(*tails)) {
	if len(changes) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range changes {
		f(t)
	}
}

func (t *tails) reset() {
	t.mu.Lock()
	t.resetLocked()
	t.mu.Unlock()
}
