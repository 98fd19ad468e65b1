package main

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// windowLimiter allows at most limit events per key in any window-long span
// (a sliding log: each key keeps the times of its last limit events).
type windowLimiter struct {
	limit  int
	window time.Duration

	mu   sync.Mutex
	keys map[string][]time.Time
}

func newWindowLimiter(limit int, window time.Duration) *windowLimiter {
	return &windowLimiter{limit: limit, window: window, keys: map[string][]time.Time{}}
}

// retryAfter returns how long key must wait before its next event is
// allowed; zero means it may go now.
func (l *windowLimiter) retryAfter(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	times := l.keys[key]
	if len(times) < l.limit {
		return 0
	}
	// times holds the last limit events, oldest first.
	wait := times[0].Add(l.window).Sub(now)
	if wait <= 0 {
		return 0
	}
	return wait
}

// record counts an event for key.
func (l *windowLimiter) record(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	times := l.keys[key]
	if len(times) >= l.limit {
		times = append(times[:0], times[1:]...)
	}
	l.keys[key] = append(times, now)
}

// reserve counts an event for key now if the limit allows one, so that
// concurrent requests cannot all pass a check made before any of them is
// counted; release uncounts it if the event turns out not to count (a
// login that succeeded). When the limit is reached it counts nothing and
// returns how long to wait, and a release that does nothing.
func (l *windowLimiter) reserve(key string, now time.Time) (wait time.Duration, release func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	times := l.keys[key]
	if len(times) >= l.limit {
		if wait = times[0].Add(l.window).Sub(now); wait > 0 {
			return wait, func() {}
		}
		times = append(times[:0], times[1:]...)
	}
	l.keys[key] = append(times, now)
	return 0, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		times := l.keys[key]
		for i := len(times) - 1; i >= 0; i-- {
			if times[i].Equal(now) {
				l.keys[key] = append(times[:i], times[i+1:]...)
				return
			}
		}
	}
}

// prune forgets keys whose events have all left the window, so memory
// follows recent activity, not every name ever tried.
func (l *windowLimiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, times := range l.keys {
		if len(times) == 0 || now.Sub(times[len(times)-1]) >= l.window {
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

// limits holds API.md's rate limits.
type limits struct {
	exempt          []netip.Prefix
	failedByName    *windowLimiter
	failedByAddr    *windowLimiter
	signupsByAddr   *windowLimiter
	messagesPerUser *tokenBuckets
}

func newLimits(exempt []netip.Prefix) *limits {
	return &limits{
		exempt:          exempt,
		failedByName:    newWindowLimiter(5, 15*time.Minute),
		failedByAddr:    newWindowLimiter(20, time.Minute),
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
