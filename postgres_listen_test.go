package main

import (
	"fmt"
	"slices"
	"testing"
)

// TestPgPayloads_SplitUnderLimitAndRoundTrip: a batch with more ids than one
// notification holds is split, every payload stays under Postgres' limit and
// names the node, and reading them back gives every id once.
func TestPgPayloads_SplitUnderLimitAndRoundTrip(t *testing.T) {
	var woken, sessions []int64
	var polls []string
	for i := range int64(3000) {
		woken = append(woken, 1_000_000_000+i)
		if i%3 == 0 {
			sessions = append(sessions, i, i) // dups collapse
		}
		if i%5 == 0 {
			polls = append(polls, fmt.Sprintf("%d.%s", i, tokenHash{byte(i)}.tag()))
		}
	}
	payloads := pgPayloads("n0de", woken, pgNotes{sessions: sessions, polls: polls})
	if len(payloads) < 2 {
		t.Fatalf("%d payloads, want the batch split", len(payloads))
	}
	var gotW, gotS []int64
	var gotP []string
	for _, p := range payloads {
		if len(p) > pgNotifyMax {
			t.Errorf("payload of %d bytes", len(p))
		}
		h := parsePayload(p)
		if h.node != "n0de" {
			t.Errorf("payload node %q", h.node)
		}
		gotW = append(gotW, h.woken...)
		gotS = append(gotS, h.sessions...)
		for _, pn := range h.polls {
			gotP = append(gotP, fmt.Sprintf("%d.%s", pn.user, pn.tag))
		}
	}
	if !slices.Equal(gotW, woken) || !slices.Equal(gotS, dedupe(sessions)) || !slices.Equal(gotP, polls) {
		t.Errorf("round trip: %d/%d woken, %d/%d sessions, %d/%d polls", len(gotW), len(woken), len(gotS), len(dedupe(sessions)), len(gotP), len(polls))
	}
	if got := pgPayloads("n0de", nil, pgNotes{}); len(got) != 0 {
		t.Errorf("nothing to tell made %q", got)
	}
	// Garbage (another program on the channel) is ignored, not fatal.
	if h := parsePayload("x w,s-,pz,q1,w12"); h.node != "x" || !slices.Equal(h.woken, []int64{12}) || len(h.sessions)+len(h.polls) != 0 {
		t.Errorf("garbage parsed as %+v", h)
	}
}
