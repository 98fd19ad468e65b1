package main

import (
	"sync"
	"time"
)

// typingEvery is API.md's typing window: at most one typing event per
// sender and conversation in it.
const typingEvery = 2 * time.Second

// typingThrottle remembers when each sender last had a typing event sent in
// each conversation. It lives in memory only, like the events themselves:
// after a restart the first call sends again, which a 6-second "typing…"
// on the other side absorbs.
type typingThrottle struct {
	mu   sync.Mutex
	last map[typingKey]time.Time
}

type typingKey struct {
	sender int64
	conv   int64 // conversationKey
}

func newTypingThrottle() *typingThrottle {
	return &typingThrottle{last: map[typingKey]time.Time{}}
}

// allow reports whether a typing event may go out now, and if so counts it.
func (t *typingThrottle) allow(sender, conv int64, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := typingKey{sender, conv}
	if prev, ok := t.last[k]; ok && now.Sub(prev) < typingEvery && !now.Before(prev) {
		return false
	}
	t.last[k] = now
	// Entries older than the window decide nothing: drop them once the
	// map has grown, so it stays the size of the recent typists.
	if len(t.last) >= 4096 && len(t.last)%1024 == 0 {
		for k, at := range t.last {
			if now.Sub(at) >= typingEvery {
				delete(t.last, k)
			}
		}
	}
	return true
}
