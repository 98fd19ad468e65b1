package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// sessionTTL is how long a session lives unused.
	sessionTTL = 30 * 24 * time.Hour
	// lastSeenEvery bounds how often a session's last use is written: a
	// write per request would cost an fsync per request for no benefit.
	lastSeenEvery = time.Hour
	tokenBytes    = 32
)

type tokenHash [sha256.Size]byte

// newToken returns a fresh random token and the hash stored for it.
func newToken() (string, tokenHash, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", tokenHash{}, err
	}
	t := base64.RawURLEncoding.EncodeToString(b)
	return t, sha256.Sum256([]byte(t)), nil
}

// tag names a session to other nodes without giving them its hash: 12 bytes
// of it tell sessions apart as well as the whole.
func (h tokenHash) tag() string { return base64.RawURLEncoding.EncodeToString(h[:12]) }

// newNodeID names this process among the nodes of a shared database, for
// their notifications, its logs and /metrics.
func newNodeID() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on the systems Go supports
	}
	return hex.EncodeToString(b)
}

// hashToken hashes a presented token; ok is false for anything that is not
// the shape newToken makes, so garbage never reaches the database.
func hashToken(token string) (tokenHash, bool) {
	if base64.RawURLEncoding.DecodedLen(len(token)) != tokenBytes {
		return tokenHash{}, false
	}
	if _, err := base64.RawURLEncoding.DecodeString(token); err != nil {
		return tokenHash{}, false
	}
	return sha256.Sum256([]byte(token)), true
}

// Session is a live login. It ends when a newer login replaces it or the user
// logs out; ended is closed then and endErr says which.
type Session struct {
	hash tokenHash
	// User is fixed for the session's life but for the display name, which
	// Me reads: the user may change it (PATCH /api/me) while requests of
	// the session run.
	User        User
	displayName atomic.Pointer[string]
	ended       chan struct{}
	// endErr is written once, before ended is closed.
	endErr error
	// lastSeen (Unix ms) is the last use; lastSaved what the database has.
	lastSeen  atomic.Int64
	lastSaved atomic.Int64

	pollMu sync.Mutex
	// poll is closed to tell the session's current poll that a newer one
	// took its place (one poll at a time per session).
	poll chan struct{}
	// parked is the current poll when it is parked (park.go): woken when a
	// newer poll begins or the session ends.
	parked waker
}

// Me is the session's user with their current display name.
func (s *Session) Me() User {
	u := s.User
	if d := s.displayName.Load(); d != nil {
		u.DisplayName = *d
	}
	return u
}

// Renamed records the user's new display name.
func (s *Session) Renamed(displayName string) { s.displayName.Store(&displayName) }

// Ended is closed when the session is over.
func (s *Session) Ended() <-chan struct{} { return s.ended }

// EndReason is errSessionReplaced or errUnauthorized once Ended is closed.
func (s *Session) EndReason() error {
	select {
	case <-s.ended:
		return s.endErr
	default:
		return nil
	}
}

// beginPoll makes the caller the session's only poll, ending the previous
// one, and returns the channel that says a newer poll has taken over.
func (s *Session) beginPoll() (superseded <-chan struct{}, end func()) {
	ch := make(chan struct{})
	s.pollMu.Lock()
	if s.poll != nil {
		close(s.poll)
	}
	s.poll = ch
	old := s.parked
	s.parked = nil
	s.pollMu.Unlock()
	if old != nil {
		old.wake()
	}
	return ch, func() {
		s.pollMu.Lock()
		if s.poll == ch {
			s.poll = nil
		}
		s.pollMu.Unlock()
	}
}

// pollTakenElsewhere ends the session's current poll, which a newer poll on
// another node has taken the place of, as beginPoll would here.
func (s *Session) pollTakenElsewhere() {
	s.pollMu.Lock()
	if s.poll != nil {
		close(s.poll)
		s.poll = nil
	}
	old := s.parked
	s.parked = nil
	s.pollMu.Unlock()
	if old != nil {
		old.wake()
	}
}

// park records p as the session's parked poll if its turn (the channel
// beginPoll returned) is still the current one; if not, p has been
// superseded already and needs no wake-up.
func (s *Session) park(turn <-chan struct{}, p waker) {
	s.pollMu.Lock()
	if s.poll == turn {
		s.parked = p
	}
	s.pollMu.Unlock()
}

func (s *Session) unpark(p waker) {
	s.pollMu.Lock()
	if s.parked == p {
		s.parked = nil
	}
	s.pollMu.Unlock()
}

// wakeParked wakes the parked poll, if any (the session ended).
func (s *Session) wakeParked() {
	s.pollMu.Lock()
	p := s.parked
	s.pollMu.Unlock()
	if p != nil {
		p.wake()
	}
}

// sessions keeps the live sessions in memory, so authenticating a request
// reads no database; the database is the truth after a restart.
type sessions struct {
	store  Store
	mu     sync.Mutex
	byHash map[tokenHash]*Session
	byUser map[int64]*Session
	// logins serialises the logins and logouts of one user (by a stripe of
	// its id), so that memory swaps sessions in the order the database
	// committed them: of two racing logins, the later commit is live.
	logins [64]sync.Mutex
}

func newSessions(store Store) *sessions {
	return &sessions{store: store, byHash: map[tokenHash]*Session{}, byUser: map[int64]*Session{}}
}

func (m *sessions) loginLock(user int64) *sync.Mutex {
	return &m.logins[uint64(user)%uint64(len(m.logins))]
}

// end closes s (once) and forgets it. Call with m.mu held.
func (m *sessions) endLocked(s *Session, reason error) {
	select {
	case <-s.ended:
		return
	default:
	}
	s.endErr = reason
	close(s.ended)
	s.wakeParked()
	delete(m.byHash, s.hash)
	if m.byUser[s.User.ID] == s {
		delete(m.byUser, s.User.ID)
	}
}

func (m *sessions) newLive(h tokenHash, u User, lastSeen int64) *Session {
	s := &Session{hash: h, User: u, ended: make(chan struct{})}
	s.lastSeen.Store(lastSeen)
	s.lastSaved.Store(lastSeen)
	m.byHash[h] = s
	m.byUser[u.ID] = s
	return s
}

// Login starts a session for u, ending the user's previous one (its open
// poll gets session_replaced), and returns its token.
func (m *sessions) Login(ctx context.Context, u User) (token string, s *Session, replaced bool, err error) {
	token, h, err := newToken()
	if err != nil {
		return "", nil, false, err
	}
	lock := m.loginLock(u.ID)
	lock.Lock()
	defer lock.Unlock()
	if err := m.store.StartSession(ctx, u.ID, h); err != nil {
		return "", nil, false, err
	}
	now := unixMilli(m.store.Now())
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.byUser[u.ID]; old != nil {
		m.endLocked(old, errSessionReplaced)
		replaced = true
	}
	s = m.newLive(h, u, now)
	return token, s, replaced, nil
}

// Logout ends s and deletes it, so its token is unknown from now on.
func (m *sessions) Logout(ctx context.Context, s *Session) error {
	lock := m.loginLock(s.User.ID)
	lock.Lock()
	defer lock.Unlock()
	if err := m.store.EndSession(ctx, s.hash); err != nil {
		return err
	}
	m.mu.Lock()
	m.endLocked(s, errUnauthorized)
	m.mu.Unlock()
	return nil
}

// Authenticate returns the live session for token, or errUnauthorized /
// errSessionReplaced.
func (m *sessions) Authenticate(ctx context.Context, token string) (*Session, error) {
	h, ok := hashToken(token)
	if !ok {
		return nil, errUnauthorized
	}
	now := m.store.Now()
	m.mu.Lock()
	s := m.byHash[h]
	if s == nil {
		// Not in memory (as after a restart): the database decides. The lock
		// is held across the read so a login committing meanwhile cannot be
		// overtaken by this older session being made live again.
		var err error
		s, err = m.loadLocked(ctx, h)
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
	}
	if now.Sub(fromMilli(s.lastSeen.Load())) > sessionTTL {
		m.endLocked(s, errUnauthorized)
		m.mu.Unlock()
		m.store.ForgetSession(h)
		return nil, errUnauthorized
	}
	m.mu.Unlock()
	m.touch(s, now)
	return s, nil
}

func (m *sessions) loadLocked(ctx context.Context, h tokenHash) (*Session, error) {
	row, err := m.store.LoadSession(ctx, h)
	switch {
	case err != nil:
		return nil, err
	case row.Replaced:
		return nil, errSessionReplaced
	case row.Disabled:
		return nil, errUnauthorized
	}
	if old := m.byUser[row.User.ID]; old != nil {
		// A login on another node replaced old, and its hint has not come
		// yet: the database, which has this one live, is the truth. (A
		// login here puts its session in memory only after committing, and
		// until then this read would have found the row replaced.)
		m.endLocked(old, errSessionReplaced)
	}
	return m.newLive(h, row.User, row.LastSeen), nil
}

// touch records a use of s, writing it through at most once per lastSeenEvery.
func (m *sessions) touch(s *Session, now time.Time) {
	ms := unixMilli(now)
	s.lastSeen.Store(ms)
	saved := s.lastSaved.Load()
	if time.Duration(ms-saved)*time.Millisecond < lastSeenEvery || !s.lastSaved.CompareAndSwap(saved, ms) {
		return
	}
	m.store.SaveLastSeen(s.hash, ms)
}

// PruneExpired deletes sessions unused for sessionTTL (replaced ones too,
// once their token would have expired anyway).
func (m *sessions) PruneExpired(ctx context.Context) error {
	return m.store.PruneSessions(ctx, m.store.Now().Add(-sessionTTL))
}

// End ends every live session of user (account disabled or deleted).
func (m *sessions) EndUser(user int64, reason error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.byUser[user]; s != nil {
		m.endLocked(s, reason)
	}
}

// Live returns the user's live session, if any.
func (m *sessions) Live(user int64) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byUser[user]
}

// liveUsers lists the users with a live session here.
func (m *sessions) liveUsers() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int64, 0, len(m.byUser))
	for u := range m.byUser {
		out = append(out, u)
	}
	return out
}

// Recheck reads user's live session here from the database and ends it if
// another process replaced it or ended it (logout, password, disabled,
// deleted). It returns the session it ended, with the reason, or nil.
func (m *sessions) Recheck(ctx context.Context, user int64) (reason error, ended *Session, err error) {
	// A login or logout here must not swap sessions between the read and
	// the end.
	lock := m.loginLock(user)
	lock.Lock()
	defer lock.Unlock()
	s := m.Live(user)
	if s == nil {
		return nil, nil, nil
	}
	row, err := m.store.LoadSession(ctx, s.hash)
	switch {
	case errors.Is(err, errUnauthorized):
		reason = errUnauthorized
	case err != nil:
		return nil, nil, err
	case row.Replaced:
		reason = errSessionReplaced
	case row.Disabled:
		reason = errUnauthorized
	default:
		return nil, nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byUser[user] != s {
		return nil, nil, nil
	}
	m.endLocked(s, reason)
	return reason, s, nil
}
