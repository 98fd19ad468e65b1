package main

import (
	"testing"
	"time"
)

// sendN begins n messages on s and gives each the state of states[i] (or
// accepted when states is shorter).
func sendN(s *stream, n int, states ...uint8) {
	for i := 0; i < n; i++ {
		num := s.begin(time.Duration(i) * time.Millisecond)
		st := stateAccepted
		if i < len(states) {
			st = states[i]
		}
		s.finish(num, st)
	}
}

func TestStream_ExactlyOnceInOrder(t *testing.T) {
	s := newStream()
	sendN(s, 5)
	for i := 0; i < 5; i++ {
		start, first := s.deliver(viewRecipient, i)
		if !first || start != time.Duration(i)*time.Millisecond {
			t.Fatalf("deliver(%d) = %v, %v", i, start, first)
		}
	}
	v := s.check(viewRecipient)
	if !v.ok() || v.Accepted != 5 || v.Delivered != 5 || v.Sent != 5 {
		t.Fatalf("verdict %+v", v)
	}
	if p := s.pending(viewRecipient); p != 0 {
		t.Fatalf("pending = %d", p)
	}
}

func TestStream_Loss(t *testing.T) {
	s := newStream()
	sendN(s, 3)
	s.deliver(viewRecipient, 0)
	s.deliver(viewRecipient, 2)
	v := s.check(viewRecipient)
	if v.ok() || v.Lost != 1 {
		t.Fatalf("verdict %+v, want 1 lost", v)
	}
	if p := s.pending(viewRecipient); p != 1 {
		t.Fatalf("pending = %d, want 1", p)
	}
}

func TestStream_Duplicate(t *testing.T) {
	s := newStream()
	sendN(s, 2)
	s.deliver(viewRecipient, 0)
	if _, first := s.deliver(viewRecipient, 0); first {
		t.Fatal("second delivery reported as first")
	}
	s.deliver(viewRecipient, 1)
	v := s.check(viewRecipient)
	if v.ok() || v.Duplicates != 1 || v.Lost != 0 || v.OutOfOrder != 0 {
		t.Fatalf("verdict %+v, want exactly 1 duplicate", v)
	}
}

func TestStream_OutOfOrder(t *testing.T) {
	s := newStream()
	sendN(s, 3)
	s.deliver(viewRecipient, 0)
	s.deliver(viewRecipient, 2)
	s.deliver(viewRecipient, 1)
	v := s.check(viewRecipient)
	if v.ok() || v.OutOfOrder != 1 || v.Lost != 0 || v.Duplicates != 0 {
		t.Fatalf("verdict %+v, want exactly 1 out of order", v)
	}
}

func TestStream_RejectedAndUnknown(t *testing.T) {
	s := newStream()
	// 0 accepted, 1 refused (4xx), 2 unknown outcome, 3 accepted by a retry (200).
	sendN(s, 4, stateAccepted, stateRejected, stateUnknown, stateRepeat)
	s.deliver(viewRecipient, 0)
	s.deliver(viewRecipient, 3)
	v := s.check(viewRecipient)
	if !v.ok() || v.Accepted != 2 || v.Rejected != 1 || v.Unknown != 1 {
		t.Fatalf("verdict %+v: a refused or unknown message that never came is no failure", v)
	}
	s.deliver(viewRecipient, 2) // unknown outcome, but stored: fine, though late
	if v := s.check(viewRecipient); v.UnknownDelivered != 1 || v.Duplicates != 0 {
		t.Fatalf("verdict %+v", v)
	}
	s.deliver(viewRecipient, 1) // refused, yet delivered: a failure
	if v := s.check(viewRecipient); v.ok() || v.RejectedDelivered != 1 {
		t.Fatalf("verdict %+v, want a refused message delivered", v)
	}
}

func TestStream_Stray(t *testing.T) {
	s := newStream()
	sendN(s, 1)
	s.deliver(viewRecipient, 0)
	s.deliver(viewRecipient, 7)
	s.deliver(viewRecipient, -1)
	if v := s.check(viewRecipient); v.ok() || v.Stray != 2 {
		t.Fatalf("verdict %+v, want 2 stray", v)
	}
}

func TestStream_ViewsAreIndependent(t *testing.T) {
	s := newStream()
	sendN(s, 2)
	s.deliver(viewRecipient, 0)
	s.deliver(viewRecipient, 1)
	s.deliver(viewSender, 1)
	if v := s.check(viewRecipient); !v.ok() {
		t.Fatalf("recipient verdict %+v", v)
	}
	if v := s.check(viewSender); v.ok() || v.Lost != 1 {
		t.Fatalf("sender verdict %+v, want 1 lost", v)
	}
}

func TestVerdict_Add(t *testing.T) {
	a := verdict{Accepted: 2, Delivered: 2}
	a.add(verdict{Accepted: 3, Delivered: 2, Lost: 1})
	if a.Accepted != 5 || a.Delivered != 4 || a.Lost != 1 || a.ok() {
		t.Fatalf("sum %+v", a)
	}
}

func TestParseBody(t *testing.T) {
	run, n, ok := parseBody(messageBody("ab12cd34", 42))
	if !ok || run != "ab12cd34" || n != 42 {
		t.Fatalf("round trip = %q %d %v", run, n, ok)
	}
	for _, b := range []string{"", "hello", "lg x", "lg x y", "xx run 1", "lg run 1 extra"} {
		if _, _, ok := parseBody(b); ok {
			t.Errorf("parseBody(%q) accepted", b)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	tests := []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 76, 4 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 1, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.samples, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tt.samples, tt.p, got, tt.want)
		}
	}
}

func TestPercentile_Hundred(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(i+1) * time.Microsecond
	}
	if got := percentile(d, 99); got != 99*time.Microsecond {
		t.Fatalf("p99 of 1..100 µs = %v", got)
	}
	if got := percentile(d, 50); got != 50*time.Microsecond {
		t.Fatalf("p50 of 1..100 µs = %v", got)
	}
}

func TestSummarize(t *testing.T) {
	d := []time.Duration{4 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	st := summarize(d)
	if st.N != 4 || st.P50 != 2 || st.Max != 4 || st.Mean != 2.5 || st.P99 != 4 {
		t.Fatalf("summarize = %+v", st)
	}
	if z := summarize(nil); z.N != 0 || z.Max != 0 {
		t.Fatalf("summarize(nil) = %+v", z)
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics("# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 42\nwebim_open_polls 7\nwebim_http_request_duration_seconds_bucket{le=\"0.1\"} 3\n")
	if m["go_goroutines"] != 42 || m["webim_open_polls"] != 7 || len(m) != 2 {
		t.Fatalf("parseMetrics = %v", m)
	}
}
