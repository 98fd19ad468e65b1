package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
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
	hash  tokenHash
	User  User
	ended chan struct{}
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
	store  *Store
	mu     sync.Mutex
	byHash map[tokenHash]*Session
	byUser map[int64]*Session
}

func newSessions(store *Store) *sessions {
	return &sessions{store: store, byHash: map[tokenHash]*Session{}, byUser: map[int64]*Session{}}
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
// poll gets session_replaced), and returns its token. It also drops the
// user's old notices: API.md does not redeliver them after a new login.
func (m *sessions) Login(ctx context.Context, u User) (token string, s *Session, replaced bool, err error) {
	token, h, err := newToken()
	if err != nil {
		return "", nil, false, err
	}
	err = m.store.do(ctx, func(tx *writeTx) error {
		now := unixMilli(tx.now)
		if _, err := tx.exec(`UPDATE sessions SET replaced = 1 WHERE user_id = ? AND replaced = 0`, u.ID); err != nil {
			return err
		}
		if _, err := tx.exec(`INSERT INTO sessions (token_hash, user_id, created_at, last_seen) VALUES (?, ?, ?, ?)`,
			h[:], u.ID, now, now); err != nil {
			return err
		}
		if err := tx.dropNotices(u.ID); err != nil {
			return err
		}
		tx.onCommit(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if old := m.byUser[u.ID]; old != nil {
				m.endLocked(old, errSessionReplaced)
				replaced = true
			}
			s = m.newLive(h, u, now)
		})
		return nil
	})
	return token, s, replaced, err
}

// Logout ends s and deletes it, so its token is unknown from now on.
func (m *sessions) Logout(ctx context.Context, s *Session) error {
	return m.store.do(ctx, func(tx *writeTx) error {
		if _, err := tx.exec(`DELETE FROM sessions WHERE token_hash = ?`, s.hash[:]); err != nil {
			return err
		}
		tx.onCommit(func() {
			m.mu.Lock()
			m.endLocked(s, errUnauthorized)
			m.mu.Unlock()
		})
		return nil
	})
}

// Authenticate returns the live session for token, or errUnauthorized /
// errSessionReplaced.
func (m *sessions) Authenticate(ctx context.Context, token string) (*Session, error) {
	h, ok := hashToken(token)
	if !ok {
		return nil, errUnauthorized
	}
	now := m.store.now()
	m.mu.Lock()
	s := m.byHash[h]
	if s == nil {
		// Not in memory (as after a restart): the database decides. The lock
		// is held across the read so a login committing meanwhile cannot be
		// overtaken by this older session being made live again.
		var err error
		s, err = m.loadLocked(ctx, h, now)
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
	}
	if now.Sub(fromMilli(s.lastSeen.Load())) > sessionTTL {
		m.endLocked(s, errUnauthorized)
		m.mu.Unlock()
		m.store.goDo(func(tx *writeTx) error {
			_, err := tx.exec(`DELETE FROM sessions WHERE token_hash = ?`, h[:])
			return err
		})
		return nil, errUnauthorized
	}
	m.mu.Unlock()
	m.touch(s, now)
	return s, nil
}

func (m *sessions) loadLocked(ctx context.Context, h tokenHash, now time.Time) (*Session, error) {
	var u User
	var lastSeen int64
	var replaced, disabled bool
	err := m.store.read.QueryRowContext(ctx, `SELECT u.id, u.username, u.display_name, u.disabled, s.last_seen, s.replaced
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?`, h[:]).
		Scan(&u.ID, &u.Username, &u.DisplayName, &disabled, &lastSeen, &replaced)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, errUnauthorized
	case err != nil:
		return nil, err
	case replaced:
		return nil, errSessionReplaced
	case disabled:
		return nil, errUnauthorized
	}
	if old := m.byUser[u.ID]; old != nil {
		// Cannot happen while the database and memory agree; if they ever
		// do not, the newer login in memory wins.
		return nil, errSessionReplaced
	}
	return m.newLive(h, u, lastSeen), nil
}

// touch records a use of s, writing it through at most once per lastSeenEvery.
func (m *sessions) touch(s *Session, now time.Time) {
	ms := unixMilli(now)
	s.lastSeen.Store(ms)
	saved := s.lastSaved.Load()
	if time.Duration(ms-saved)*time.Millisecond < lastSeenEvery || !s.lastSaved.CompareAndSwap(saved, ms) {
		return
	}
	h := s.hash
	m.store.goDo(func(tx *writeTx) error {
		_, err := tx.exec(`UPDATE sessions SET last_seen = max(last_seen, ?) WHERE token_hash = ?`, ms, h[:])
		return err
	})
}

// PruneExpired deletes sessions unused for sessionTTL (replaced ones too,
// once their token would have expired anyway).
func (m *sessions) PruneExpired(ctx context.Context) error {
	return m.store.do(ctx, func(tx *writeTx) error {
		_, err := tx.exec(`DELETE FROM sessions WHERE last_seen < ?`, unixMilli(tx.now.Add(-sessionTTL)))
		return err
	})
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
