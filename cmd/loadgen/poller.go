package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"webim/internal/h1"
)

// pollAnswers counts the poll answers of every poller (empty ones too).
var pollAnswers atomic.Int64

// poller is one user's long-poll loop: it polls, hands each answer's events
// to onEvents, moves its cursor on and polls again, until its context ends or
// the session is replaced. It holds one connection for its polls and, when
// it cleans, one for its cleans.
type poller struct {
	d       *h1.Dialer
	u       *user
	cursor  int64
	timeout int // seconds, the poll's timeout parameter
	errs    *errCounter
	names   map[string]string // interned strings for decodePoll (read only)

	// onEvents, when not nil, gets each non-empty answer and when it arrived;
	// the events are valid until it returns.
	onEvents func(u *user, evs []event, at time.Time)
	// held counts polls on the wire and not yet answered, when not nil.
	held *atomic.Int64
	// cleanEvery is the least time between two cleans of what was received;
	// negative: never clean.
	cleanEvery time.Duration
}

func (p *poller) loop(ctx context.Context) {
	conn := h1.NewConn(ctx, p.d)
	defer conn.Close()
	var cleaner *h1.Conn
	var cleanWG sync.WaitGroup
	defer func() {
		cleanWG.Wait()
		if cleaner != nil {
			cleaner.Close()
		}
	}()
	// Users clean at their own moments: a random phase keeps 200 users who
	// started together from cleaning in the same instant every period, a
	// burst no group of real users makes.
	var lastClean time.Time
	if p.cleanEvery > 0 {
		lastClean = time.Now().Add(-rand.N(p.cleanEvery))
	}
	var dirty bool
	var cleaning atomic.Bool
	var onWire atomic.Bool
	var wrote func()
	if p.held != nil {
		wrote = func() {
			if onWire.CompareAndSwap(false, true) {
				p.held.Add(1)
			}
		}
	}
	var ans pollAnswer
	for ctx.Err() == nil {
		err := poll(conn, p.u.token, p.cursor, p.timeout, wrote, &ans, p.names)
		if p.held != nil && onWire.CompareAndSwap(true, false) {
			p.held.Add(-1)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.errs.add("poll", err)
			if statusOf(err) == 401 {
				return
			}
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		pollAnswers.Add(1)
		at := time.Now()
		for _, ev := range ans.Events {
			if ev.Type == "message" {
				dirty = true
			}
			if ev.Type == "session_replaced" {
				p.errs.add("poll", &apiError{Code: "session_replaced event"})
				return
			}
		}
		if len(ans.Events) > 0 && p.onEvents != nil {
			p.onEvents(p.u, ans.Events, at)
		}
		if ans.Cursor > p.cursor {
			p.cursor = ans.Cursor
		}
		if dirty && p.cleanEvery >= 0 && at.Sub(lastClean) >= p.cleanEvery && cleaning.CompareAndSwap(false, true) {
			lastClean, dirty = at, false
			upto := p.cursor
			if cleaner == nil {
				cleaner = h1.NewConn(ctx, p.d)
			}
			cleanWG.Add(1)
			go func() {
				defer cleanWG.Done()
				defer cleaning.Store(false)
				if _, err := clean(cleaner, p.u.token, upto); err != nil && ctx.Err() == nil {
					p.errs.add("clean", err)
				}
			}()
		}
	}
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
