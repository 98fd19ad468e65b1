package main

import (
	"context"
	"math"
	"net/netip"
	"sync"
	"time"
)

// windowLimiter allows at most limit events per key in any window-long span
// (a sliding log: each key keeps the times of its last limit events).
// Attempts whose outcome is not known yet (a password being checked) are
// reserved: they hold a place, so concurrent attempts cannot all pass a check
// made before any of them is counted, but only the counted events make
// anyone wait for the window.
type windowLimiter struct {
	limit  int
	window time.Duration

	mu   sync.Mutex
	keys map[string]*windowLog
}

type windowLog struct {
	times   []time.Time // counted events, oldest first, at most limit
	pending int         // reserved attempts not yet settled
	// settled is closed (and replaced) whenever a reservation settles.
	settled chan struct{}
}

func newWindowLimiter(limit int, window time.Duration) *windowLimiter {
	return &windowLimiter{limit: limit, window: window, keys: map[string]*windowLog{}}
}

func (l *windowLimiter) logLocked(key string) *windowLog {
	lg := l.keys[key]
	if lg == nil {
		lg = &windowLog{settled: make(chan struct{})}
		l.keys[key] = lg
	}
	return lg
}

// waitLocked is how long until the oldest counted event leaves the window
// once limit events are counted; zero means one more may be counted now.
func (l *windowLimiter) waitLocked(lg *windowLog, now time.Time) time.Duration {
	if len(lg.times) < l.limit {
		return 0
	}
	return max(0, lg.times[0].Add(l.window).Sub(now))
}

func (l *windowLimiter) countLocked(lg *windowLog, now time.Time) {
	if len(lg.times) >= l.limit {
		lg.times = append(lg.times[:0], lg.times[1:]...)
	}
	lg.times = append(lg.times, now)
}

// retryAfter returns how long key must wait before its next event is
// allowed; zero means it may go now.
func (l *windowLimiter) retryAfter(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	lg := l.keys[key]
	if lg == nil {
		return 0
	}
	return l.waitLocked(lg, now)
}

// record counts an event for key.
func (l *windowLimiter) record(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.countLocked(l.logLocked(key), now)
}

// reserve holds a place for an attempt whose outcome is not known yet. When
// counted events already reach the limit it holds nothing and returns how
// long to wait. When only attempts still in flight fill the places, it waits
// for them to settle (or for ctx). settle(counted) must be called once with
// the outcome: counted events stay in the log, the others leave no trace.
func (l *windowLimiter) reserve(ctx context.Context, key string) (wait time.Duration, settle func(counted bool), err error) {
	for {
		l.mu.Lock()
		lg := l.logLocked(key)
		now := time.Now()
		if wait := l.waitLocked(lg, now); wait > 0 {
			l.mu.Unlock()
			return wait, func(bool) {}, nil
		}
		// Events that left the window no longer hold a place.
		for len(lg.times) > 0 && !lg.times[0].Add(l.window).After(now) {
			lg.times = lg.times[1:]
		}
		if len(lg.times)+lg.pending < l.limit {
			lg.pending++
			l.mu.Unlock()
			var once sync.Once
			return 0, func(counted bool) {
				once.Do(func() {
					l.mu.Lock()
					defer l.mu.Unlock()
					lg.pending--
					if counted {
						l.countLocked(lg, time.Now())
					}
					close(lg.settled)
					lg.settled = make(chan struct{})
				})
			}, nil
		}
		settled := lg.settled
		l.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
			return 0, func(bool) {}, ctx.Err()
		}
	}
}

// prune forgets keys whose events have all left the window, so memory
// follows recent activity, not every name ever tried.
func (l *windowLimiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, lg := range l.keys {
		if lg.pending == 0 && (len(lg.times) == 0 || now.Sub(lg.times[len(lg.times)-1]) >= l.window) {
			delete(l.keys, k)
		}
	}
}

// tokenBuckets gives each user a bucket of burst tokens refilled at rate per
// second; each message or upload takes one.
type tokenBuckets struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[int64]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newTokenBuckets(rate, burst float64) *tokenBuckets {
	return &tokenBuckets{rate: rate, burst: burst, buckets: map[int64]*bucket{}}
}

// take spends one token of key's bucket; when none is left it returns how
// long until one is.
func (b *tokenBuckets) take(key int64, now time.Time) (ok bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.buckets[key]
	if bk == nil {
		bk = &bucket{tokens: b.burst, last: now}
		b.buckets[key] = bk
	}
	if elapsed := now.Sub(bk.last).Seconds(); elapsed > 0 {
		bk.tokens = math.Min(b.burst, bk.tokens+elapsed*b.rate)
		bk.last = now
	}
	if bk.tokens >= 1 {
		bk.tokens--
		return true, 0
	}
	return false, time.Duration((1 - bk.tokens) / b.rate * float64(time.Second))
}

// prune forgets full buckets: a missing bucket is a full one.
func (b *tokenBuckets) prune(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, bk := range b.buckets {
		if bk.tokens+now.Sub(bk.last).Seconds()*b.rate >= b.burst {
			delete(b.buckets, k)
		}
	}
}

// API.md's failed-login limits: per account name tried, per client address.
var (
	failedByNameRule = windowRule{limit: 5, window: 15 * time.Minute}
	failedByAddrRule = windowRule{limit: 20, window: time.Minute}
)

// limits holds API.md's rate limits. All are this process's, in memory;
// failed logins are also counted where every node sees them (failedShared,
// from the store), so that several nodes do not multiply an attacker's
// attempts. The sign-up and message limits stay per node.
type limits struct {
	exempt          []netip.Prefix
	failedByName    *windowLimiter
	failedByAddr    *windowLimiter
	failedShared    sharedFailures
	signupsByAddr   *windowLimiter
	messagesPerUser *tokenBuckets
}

func newLimits(exempt []netip.Prefix, shared sharedFailures) *limits {
	return &limits{
		exempt:          exempt,
		failedByName:    newWindowLimiter(failedByNameRule.limit, failedByNameRule.window),
		failedByAddr:    newWindowLimiter(failedByAddrRule.limit, failedByAddrRule.window),
		failedShared:    shared,
		signupsByAddr:   newWindowLimiter(100, time.Hour),
		messagesPerUser: newTokenBuckets(20, 100),
	}
}

func (l *limits) isExempt(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range l.exempt {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (l *limits) prune(now time.Time) {
	l.failedByName.prune(now)
	l.failedByAddr.prune(now)
	l.signupsByAddr.prune(now)
	l.messagesPerUser.prune(now)
}

// seconds rounds a wait up to whole seconds for Retry-After.
func seconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
