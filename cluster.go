package main

import (
	"context"
	"errors"
	"sync"
	"time"
)

// The server's side of several nodes on one database. The engine hears what
// the other nodes did (storeHooks) and this file acts on it: polls wake
// through the notifier as for local commits; sessions that another node
// replaced or ended are checked against the database and ended here; a poll
// that took over its session elsewhere ends the one here. With a single
// process (SQLite) none of this is ever called but Woken.

// sessionRecheckRetry is how long a check that the database could not answer
// waits before it tries again.
const sessionRecheckRetry = time.Second

// sessionChecks are the users whose live session here must be checked
// against the database: a set, so a burst of hints for one user costs one
// read, and never more entries than live sessions.
type sessionChecks struct {
	mu      sync.Mutex
	pending map[int64]struct{}
	wake    chan struct{} // capacity 1: "pending is not empty"
	done    chan struct{} // closed when the checker has stopped
}

func newSessionChecks() *sessionChecks {
	return &sessionChecks{pending: map[int64]struct{}{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (c *sessionChecks) add(users []int64) {
	c.mu.Lock()
	for _, u := range users {
		c.pending[u] = struct{}{}
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *sessionChecks) take() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int64, 0, len(c.pending))
	for u := range c.pending {
		out = append(out, u)
	}
	clear(c.pending)
	return out
}

// hooks are what the engine calls; none of them blocks.
func (a *App) hooks() storeHooks {
	return storeHooks{
		Node:            a.node,
		Woken:           a.notifier.notify,
		IsOnline:        a.presence.IsOnline,
		Resync:          a.resync,
		SessionsChanged: a.sessionsChanged,
		PollTaken:       a.pollTaken,
	}
}

// resync: hints may have been lost, so every poll reads its queue again and
// every live session is checked.
func (a *App) resync() {
	a.notifier.notifyAll()
	a.checks.add(a.sessions.liveUsers())
}

func (a *App) sessionsChanged(users []int64) {
	live := users[:0:0]
	for _, u := range users {
		if a.sessions.Live(u) != nil {
			live = append(live, u)
		}
	}
	if len(live) > 0 {
		a.checks.add(live)
	}
}

// pollTaken ends the session's poll here: a newer one waits on another node.
func (a *App) pollTaken(user int64, tag string) {
	if s := a.sessions.Live(user); s != nil && s.hash.tag() == tag {
		s.pollTakenElsewhere()
	}
}

// checkSessions runs the checks that hints asked for, until the server
// stops. A check the database cannot answer is tried again a little later:
// the hint that asked for it will not come twice.
func (a *App) checkSessions() {
	defer close(a.checks.done)
	for {
		select {
		case <-a.stopJanitor:
			return
		case <-a.checks.wake:
		}
		var failed []int64
		for _, u := range a.checks.take() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := a.recheckSession(ctx, u)
			cancel()
			if err != nil {
				failed = append(failed, u)
			}
		}
		if len(failed) > 0 {
			a.log.Warn("checking sessions changed elsewhere failed; retrying", "users", len(failed))
			select {
			case <-a.stopJanitor:
				return
			case <-time.After(sessionRecheckRetry):
			}
			a.checks.add(failed)
		}
	}
}

// recheckSession ends user's live session here if the database says another
// node replaced it (session_replaced), or it was logged out, its password
// changed, or the account disabled or deleted (as a logout).
func (a *App) recheckSession(ctx context.Context, user int64) error {
	reason, s, err := a.sessions.Recheck(ctx, user)
	if err != nil || s == nil {
		return err
	}
	a.log.Info("session ended on another node", "user_id", user, "reason", reason)
	if !errors.Is(reason, errSessionReplaced) {
		a.presence.LoggedOut(s.User)
	}
	return nil
}
