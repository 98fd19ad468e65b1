package main

import (
	"context"
	"sync/atomic"
	"time"
)

// poller is one user's long-poll loop: it polls, hands each answer's events
// to onEvents, moves its cursor on and polls again, until its context ends or
// the session is replaced.
type poller struct {
	c       *client
	u       *user
	cursor  int64
	timeout int // seconds, the poll's timeout parameter
	errs    *errCounter

	// onEvents, when not nil, gets each non-empty answer and when it arrived.
	onEvents func(u *user, evs []event, at time.Time)
	// held counts polls on the wire and not yet answered, when not nil.
	held *atomic.Int64
	// cleanEvery is the least time between two cleans of what was received;
	// negative: never clean.
	cleanEvery time.Duration
}

func (p *poller) loop(ctx context.Context) {
	var lastClean time.Time
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
	for ctx.Err() == nil {
		ans, err := p.c.poll(ctx, p.u.token, p.cursor, p.timeout, wrote)
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
			go func() {
				defer cleaning.Store(false)
				if _, err := p.c.clean(ctx, p.u.token, upto); err != nil && ctx.Err() == nil {
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
