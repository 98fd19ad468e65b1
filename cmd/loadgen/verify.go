package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Send outcomes of one message, as the sender saw them.
const (
	stateNone     uint8 = iota // never sent
	stateSending               // request under way
	stateAccepted              // 201: stored, must be delivered exactly once
	stateRepeat                // 200 on a retry: stored by an earlier attempt
	stateRejected              // a 4xx: not stored, must never be delivered
	stateUnknown               // transport error or 5xx: may or may not be stored
)

// Views of a stream: the recipient's queue and the sender's own copy.
const (
	viewRecipient = 0
	viewSender    = 1
)

// stream tracks the numbered messages of one sender to one recipient. The
// sender numbers them 0, 1, 2... in the order it sends them, one at a time,
// so each queue must deliver the accepted ones exactly once, in that order.
// All methods are safe for concurrent use.
type stream struct {
	mu    sync.Mutex
	state []uint8
	start []time.Duration // send start, since the run's epoch
	views [2]view
}

// view is what one queue delivered of a stream.
type view struct {
	seen       []uint16 // deliveries per message number
	last       int      // highest number delivered so far, -1 before any
	outOfOrder int      // first deliveries of a number below last
	unknown    int      // deliveries of a number never sent
}

func newStream() *stream {
	s := &stream{}
	s.views[0].last, s.views[1].last = -1, -1
	return s
}

// begin numbers the next message and records its send start.
func (s *stream) begin(at time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.state)
	s.state = append(s.state, stateSending)
	s.start = append(s.start, at)
	return n
}

// finish records the outcome of message n.
func (s *stream) finish(n int, state uint8) {
	s.mu.Lock()
	s.state[n] = state
	s.mu.Unlock()
}

// deliver records that queue v delivered message n. It returns the send start
// of n and first=true on its first delivery to that queue.
func (s *stream) deliver(v, n int) (start time.Duration, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &s.views[v]
	if n < 0 || n >= len(s.state) {
		w.unknown++
		return 0, false
	}
	for len(w.seen) <= n {
		w.seen = append(w.seen, 0)
	}
	if w.seen[n] < math.MaxUint16 {
		w.seen[n]++
	}
	if w.seen[n] > 1 {
		return s.start[n], false
	}
	if n < w.last {
		w.outOfOrder++
	} else {
		w.last = n
	}
	return s.start[n], true
}

// verdict is the outcome of checking what one or more queues delivered.
type verdict struct {
	Sent              int `json:"sent"`
	Accepted          int `json:"accepted"`           // 201, plus 200 on a retry
	Rejected          int `json:"rejected"`           // 4xx: not stored
	Unknown           int `json:"unknown"`            // transport error or 5xx
	Delivered         int `json:"delivered"`          // distinct messages delivered
	Lost              int `json:"lost"`               // accepted, never delivered
	Duplicates        int `json:"duplicates"`         // deliveries beyond the first
	OutOfOrder        int `json:"out_of_order"`       // delivered before an earlier one
	RejectedDelivered int `json:"rejected_delivered"` // delivered although refused
	UnknownDelivered  int `json:"unknown_delivered"`  // outcome unknown, but stored
	Stray             int `json:"stray"`              // numbers never sent
}

// ok reports whether every accepted message came exactly once and in order.
func (v verdict) ok() bool {
	return v.Lost == 0 && v.Duplicates == 0 && v.OutOfOrder == 0 && v.RejectedDelivered == 0 && v.Stray == 0
}

func (v *verdict) add(o verdict) {
	v.Sent += o.Sent
	v.Accepted += o.Accepted
	v.Rejected += o.Rejected
	v.Unknown += o.Unknown
	v.Delivered += o.Delivered
	v.Lost += o.Lost
	v.Duplicates += o.Duplicates
	v.OutOfOrder += o.OutOfOrder
	v.RejectedDelivered += o.RejectedDelivered
	v.UnknownDelivered += o.UnknownDelivered
	v.Stray += o.Stray
}

// check returns the verdict of queue v for this stream.
func (s *stream) check(v int) verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &s.views[v]
	r := verdict{OutOfOrder: w.outOfOrder, Stray: w.unknown}
	for n, st := range s.state {
		var seen int
		if n < len(w.seen) {
			seen = int(w.seen[n])
		}
		if st != stateNone {
			r.Sent++
		}
		if seen > 0 {
			r.Delivered++
			r.Duplicates += seen - 1
		}
		switch st {
		case stateAccepted, stateRepeat:
			r.Accepted++
			if seen == 0 {
				r.Lost++
			}
		case stateRejected:
			r.Rejected++
			if seen > 0 {
				r.RejectedDelivered++
			}
		case stateUnknown, stateSending:
			r.Unknown++
			if seen > 0 {
				r.UnknownDelivered++
			}
		}
	}
	return r
}

// pending reports how many accepted messages queue v has not delivered yet.
func (s *stream) pending(v int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &s.views[v]
	p := 0
	for n, st := range s.state {
		if (st == stateAccepted || st == stateRepeat) && (n >= len(w.seen) || w.seen[n] == 0) {
			p++
		}
	}
	return p
}

// messageBody is the body of message n of run: the recipient recovers the
// number from it (the message object carries no client_msg_id).
func messageBody(run string, n int) string {
	return "lg " + run + " " + strconv.Itoa(n)
}

// parseBody returns the run and number of a body made by messageBody.
func parseBody(body string) (run string, n int, ok bool) {
	// Fast path, without allocating: "lg RUN N", RUN alphanumeric and N
	// digits; anything else is split as before.
	if rest, found := strings.CutPrefix(body, "lg "); found {
		if sp := strings.IndexByte(rest, ' '); sp > 0 && isAlnum(rest[:sp]) {
			if n, err := strconv.Atoi(rest[sp+1:]); err == nil && isDigits(rest[sp+1:]) {
				return rest[:sp], n, true
			}
		}
	}
	f := strings.Fields(body)
	if len(f) != 3 || f[0] != "lg" {
		return "", 0, false
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return "", 0, false
	}
	return f[1], n, true
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// latencyStats summarises latencies in milliseconds.
type latencyStats struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted samples, or 0 when there are none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// summarize sorts samples in place and summarises them.
func summarize(samples []time.Duration) latencyStats {
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	st := latencyStats{N: len(samples)}
	if len(samples) == 0 {
		return st
	}
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	st.Mean = ms(sum / time.Duration(len(samples)))
	st.P50 = ms(percentile(samples, 50))
	st.P90 = ms(percentile(samples, 90))
	st.P99 = ms(percentile(samples, 99))
	st.Max = ms(samples[len(samples)-1])
	return st
}

func (l latencyStats) String() string {
	return fmt.Sprintf("p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (n=%d)", l.P50, l.P90, l.P99, l.Max, l.N)
}
