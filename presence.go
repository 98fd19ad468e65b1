package main

import (
	"sync"
	"time"
)

// offlineGrace is how long a user stays online with no poll open.
const offlineGrace = 90 * time.Second

// presence tracks who is online: from login until logout, or until no poll of
// theirs has been open for offlineGrace. Each change queues presence notices
// for the user's online friends. It never waits on the writer while holding
// its lock (PresenceChanged only queues), so the writer may ask isOnline at any time.
type presence struct {
	store Store
	grace time.Duration

	mu    sync.Mutex
	users map[int64]*presenceState
}

type presenceState struct {
	user   User
	online bool
	polls  int
	// offlineAt is when the grace period ends, zero while a poll is open.
	// One timer per user serves every grace period: a poll cycle only
	// moves offlineAt, and the timer, firing early, sleeps again for the
	// rest. Re-arming a timer on every poll answer would cost more than
	// the poll's own bookkeeping.
	offlineAt    time.Time
	idle         *time.Timer
	timerPending bool
	// lastPollEnd is when the user's last poll ended, so "was a poll open
	// at any time since t" can be answered after the poll is gone (push).
	lastPollEnd time.Time
}

func newPresence(store Store, grace time.Duration) *presence {
	return &presence{store: store, grace: grace, users: map[int64]*presenceState{}}
}

func (p *presence) stateLocked(u User) *presenceState {
	st := p.users[u.ID]
	if st == nil {
		st = &presenceState{user: u}
		p.users[u.ID] = st
	}
	return st
}

// IsOnline reports whether user is online.
func (p *presence) IsOnline(user int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.users[user]
	return st != nil && st.online
}

// PollOpenSince reports whether user has had a poll open at any moment
// since t: one is open now, or one ended after t. A poll woken by a message
// ends right after the message is stored; it was open when it was.
func (p *presence) PollOpenSince(user int64, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.users[user]
	return st != nil && (st.polls > 0 || st.lastPollEnd.After(t))
}

// Renamed updates the display name that u's presence notices carry.
func (p *presence) Renamed(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.users[u.ID]; st != nil {
		st.user.DisplayName = u.DisplayName
	}
}

// Online counts online users.
func (p *presence) Online() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, st := range p.users {
		if st.online {
			n++
		}
	}
	return n
}

// LoggedIn marks u online (a replacing login changes nothing: no flap) and
// starts the grace period that a first poll will cancel.
func (p *presence) LoggedIn(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stateLocked(u)
	p.setOnlineLocked(st, true)
	if st.polls == 0 {
		p.armLocked(st)
	}
}

// LoggedOut marks u offline at once.
func (p *presence) LoggedOut(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stateLocked(u)
	p.setOnlineLocked(st, false)
	p.forgetIfIdleLocked(st)
}

// PollStarted counts an open poll; a poll of a valid session (say, after a
// server restart) makes its user online again.
func (p *presence) PollStarted(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stateLocked(u)
	st.polls++
	st.offlineAt = time.Time{}
	p.setOnlineLocked(st, true)
}

// PollEnded counts a poll gone; with none left the grace period starts.
func (p *presence) PollEnded(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stateLocked(u)
	st.polls--
	st.lastPollEnd = time.Now()
	if st.polls == 0 {
		if st.online {
			p.armLocked(st)
		} else {
			p.forgetIfIdleLocked(st)
		}
	}
}

func (p *presence) armLocked(st *presenceState) {
	st.offlineAt = time.Now().Add(p.grace)
	if st.timerPending {
		return // it will fire early and sleep again until offlineAt
	}
	st.timerPending = true
	if st.idle == nil {
		st.idle = time.AfterFunc(p.grace, func() { p.graceTimerFired(st) })
		return
	}
	st.idle.Reset(p.grace)
}

func (p *presence) graceTimerFired(st *presenceState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st.timerPending = false
	if p.users[st.user.ID] != st || st.polls > 0 || st.offlineAt.IsZero() {
		return // forgotten, or a poll is open again
	}
	if rest := time.Until(st.offlineAt); rest > 0 {
		st.timerPending = true
		st.idle.Reset(rest)
		return
	}
	st.offlineAt = time.Time{}
	p.setOnlineLocked(st, false)
	p.forgetIfIdleLocked(st)
}

func (p *presence) forgetIfIdleLocked(st *presenceState) {
	if !st.online && st.polls == 0 {
		if st.idle != nil {
			st.idle.Stop()
			st.timerPending = false
		}
		delete(p.users, st.user.ID)
	}
}

// setOnlineLocked records a change and queues its notices: presence for each
// online friend, and, going offline, the drop of the user's own notices.
func (p *presence) setOnlineLocked(st *presenceState, online bool) {
	if st.online == online {
		return
	}
	st.online = online
	p.store.PresenceChanged(st.user, online)
}
