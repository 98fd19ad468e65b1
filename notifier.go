package main

import "sync"

// notifier wakes long-poll waiters when their user's queue changes. Each
// waiting user has one channel; notify closes it (waking every waiter at
// once, inside their select) and the next wait makes a fresh one. A waiter
// takes the channel before reading the queue, so a commit between the read
// and the wait still wakes it.
type notifier struct {
	mu      sync.Mutex
	waiters map[int64]*waitPoint
	// parked are the users' parked polls (park.go): notify wakes them and
	// they stay until they unpark.
	parked map[int64][]waker
}

type waitPoint struct {
	ch   chan struct{}
	refs int
}

func newNotifier() *notifier {
	return &notifier{waiters: map[int64]*waitPoint{}, parked: map[int64][]waker{}}
}

// wait returns a channel closed at the user's next notify, and a release to
// call when the caller stops waiting, so idle users hold no entry.
func (n *notifier) wait(user int64) (<-chan struct{}, func()) {
	n.mu.Lock()
	wp := n.waiters[user]
	if wp == nil {
		wp = &waitPoint{ch: make(chan struct{})}
		n.waiters[user] = wp
	}
	wp.refs++
	n.mu.Unlock()
	return wp.ch, func() {
		n.mu.Lock()
		wp.refs--
		if wp.refs == 0 && n.waiters[user] == wp {
			delete(n.waiters, user)
		}
		n.mu.Unlock()
	}
}

// notify wakes everyone waiting on any of users.
func (n *notifier) notify(users []int64) {
	n.mu.Lock()
	for _, u := range users {
		if wp := n.waiters[u]; wp != nil {
			close(wp.ch)
			delete(n.waiters, u)
		}
		for _, p := range n.parked[u] {
			p.wake()
		}
	}
	n.mu.Unlock()
}

// notifyAll wakes every waiter and parked poll: changes may have been missed
// (storeHooks.Resync), and each reads its queue again.
func (n *notifier) notifyAll() {
	n.mu.Lock()
	for u, wp := range n.waiters {
		close(wp.ch)
		delete(n.waiters, u)
	}
	for _, ps := range n.parked {
		for _, p := range ps {
			p.wake()
		}
	}
	n.mu.Unlock()
}

// park registers a parked poll of user, woken by each notify of the user
// until unpark.
func (n *notifier) park(user int64, p waker) {
	n.mu.Lock()
	n.parked[user] = append(n.parked[user], p)
	n.mu.Unlock()
}

func (n *notifier) unpark(user int64, p waker) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.parked[user]
	for i, q := range ps {
		if q == p {
			ps = append(ps[:i:i], ps[i+1:]...)
			break
		}
	}
	if len(ps) == 0 {
		delete(n.parked, user)
	} else {
		n.parked[user] = ps
	}
}

// waiting counts users with a waiter or a parked poll, for tests and
// metrics.
func (n *notifier) waiting() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := len(n.waiters)
	for u := range n.parked {
		if n.waiters[u] == nil {
			c++
		}
	}
	return c
}
