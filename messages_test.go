package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// queueState is what a rejected request must leave as it was.
func queueState(c *client) string {
	c.t.Helper()
	evs, cursor := c.drain(0)
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%d:%s:", e.Seq, e.Type)
		if e.Message != nil {
			fmt.Fprintf(&b, "%d/%s;", e.Message.ID, e.Message.Body)
		}
	}
	fmt.Fprintf(&b, "@%d", cursor)
	return b.String()
}

func TestMessages_SendShapeAndBodies(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]

	resp, data := alice.do("POST", "/api/messages", map[string]any{"to": strings.ToUpper(bob.username), "body": "hi"})
	checkJSON(t, resp, data, http.StatusCreated)
	var out struct {
		Message map[string]any `json:"message"`
	}
	json.Unmarshal(data, &out)
	m := out.Message
	if _, ok := m["id"].(float64); !ok || m["from"] != alice.username || m["to"] != bob.username || m["body"] != "hi" {
		t.Fatalf("send answered %s", data)
	}
	if _, ok := m["file"]; ok {
		t.Fatalf("a text message has a file: %s", data)
	}
	checkTime(t, "sent_at", m["sent_at"].(string))
	if !strings.Contains(string(data), `"id":`+fmt.Sprint(int64(m["id"].(float64)))) {
		t.Fatalf("id is not a JSON integer: %s", data)
	}

	// Bodies are stored exactly as sent.
	bodies := []string{
		"  leading and trailing spaces  ",
		"line\nbreaks\r\nand\ttabs",
		"ünïcödé 🎉 日本語 \u200b",
		"a\x00b",
		"<script>alert(1)</script> & \"quotes\" 'single'",
		strings.Repeat("🎉", 4000),
		".",
	}
	var sent []Message
	for _, b := range bodies {
		sent = append(sent, alice.send(bob, b))
	}
	got := bob.messages()[1:]
	for i, b := range bodies {
		if got[i].Body != b || sent[i].Body != b || got[i].ID != sent[i].ID || got[i].SentAt != sent[i].SentAt {
			t.Fatalf("body %q came back as %q (answer %q)", b, got[i].Body, sent[i].Body)
		}
	}

	// A friend who is offline still gets the message on their next login.
	bob.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	offline := alice.send(bob, "while you were out")
	bob.login()
	if got := bob.messages(); got[len(got)-1] != offline {
		t.Fatalf("bob's last message %+v, want %+v", got[len(got)-1], offline)
	}
}

func TestMessages_Rejects(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	stranger, blocker := ts.user("stranger"), ts.user("blocker")
	befriend(alice, blocker)
	blocker.mustDo("POST", "/api/blocks/"+alice.username, nil, http.StatusOK)
	alice.send(bob, "one stored message")
	before := queueState(alice) + "|" + queueState(bob)

	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"to a stranger", map[string]any{"to": stranger.username, "body": "x"}, 403, "not_friends"},
		{"to someone who blocked me", map[string]any{"to": blocker.username, "body": "x"}, 403, "blocked"},
		{"to an unknown user", map[string]any{"to": "nobody-at-all", "body": "x"}, 404, "no_such_user"},
		{"to an impossible name", map[string]any{"to": "!!", "body": "x"}, 404, "no_such_user"},
		{"to myself", map[string]any{"to": alice.username, "body": "x"}, 400, "cannot_message_self"},
		{"to myself in capitals", map[string]any{"to": strings.ToUpper(alice.username), "body": "x"}, 400, "cannot_message_self"},
		{"empty body", map[string]any{"to": bob.username, "body": ""}, 400, "invalid_body"},
		{"only white space", map[string]any{"to": bob.username, "body": " \n\t\u00a0\u3000 "}, 400, "invalid_body"},
		{"4001 code points", map[string]any{"to": bob.username, "body": strings.Repeat("é", 4001)}, 400, "invalid_body"},
		{"client_msg_id of 65", map[string]any{"to": bob.username, "body": "x", "client_msg_id": strings.Repeat("k", 65)}, 400, "bad_request"},
		{"client_msg_id of wrong type", map[string]any{"to": bob.username, "body": "x", "client_msg_id": 7}, 400, "bad_request"},
		{"body of wrong type", map[string]any{"to": bob.username, "body": 7}, 400, "bad_request"},
		{"to of wrong type", map[string]any{"to": []string{bob.username}, "body": "x"}, 400, "bad_request"},
		{"missing to", map[string]any{"body": "x"}, 400, "bad_request"},
	}
	for _, c := range cases {
		resp, data := alice.do("POST", "/api/messages", c.body)
		if resp.StatusCode != c.status || errorCode(data) != c.code {
			t.Fatalf("%s: %d %s, want %d %s", c.name, resp.StatusCode, data, c.status, c.code)
		}
		checkError(t, resp, data, c.status, c.code)
	}
	// A missing body is a 400 (invalid_body, the field's own code, or bad_request).
	resp, data := alice.do("POST", "/api/messages", map[string]any{"to": bob.username})
	if resp.StatusCode != 400 || (errorCode(data) != "invalid_body" && errorCode(data) != "bad_request") {
		t.Fatalf("missing body: %d %s", resp.StatusCode, data)
	}
	// The blocked side cannot message either.
	blocker.mustFail("POST", "/api/messages", map[string]any{"to": alice.username, "body": "x"}, 403, "blocked")

	if after := queueState(alice) + "|" + queueState(bob); after != before {
		t.Fatalf("rejected sends changed the queues:\n%s\n%s", before, after)
	}
	// Boundaries that pass: 64-code-point client_msg_id, 4000 code points.
	alice.mustDo("POST", "/api/messages", map[string]any{"to": bob.username, "body": strings.Repeat("é", 4000), "client_msg_id": strings.Repeat("🔑", 64)}, 201)
}

func TestMessages_ClientMsgIDIsIdempotent(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob", "carol")
	alice, bob, carol := fr[0], fr[1], fr[2]
	send := func(c *client, to *client, body, id string, want int) Message {
		t.Helper()
		var out struct {
			Message Message `json:"message"`
		}
		c.mustJSON("POST", "/api/messages", map[string]any{"to": to.username, "body": body, "client_msg_id": id}, want, &out)
		return out.Message
	}
	first := send(alice, bob, "hello", "msg-1", 201)
	again := send(alice, bob, "hello", "msg-1", 200)
	changed := send(alice, bob, "a different body", "msg-1", 200)
	if again != first || changed != first {
		t.Fatalf("repeats answered %+v and %+v, want %+v", again, changed, first)
	}
	// Another sender's id space is its own.
	carolsMsg := send(carol, bob, "hello", "msg-1", 201)
	if carolsMsg.ID == first.ID {
		t.Fatal("carol's msg-1 was taken for alice's")
	}
	count := func(c *client) int { return len(c.messages()) }
	if n := count(bob); n != 2 {
		t.Fatalf("bob holds %d messages, want 2", n)
	}
	if n := count(alice); n != 1 {
		t.Fatalf("alice holds %d messages, want 1", n)
	}

	// Also after a restart.
	ts.restart()
	if after := send(alice, bob, "hello again", "msg-1", 200); after != first {
		t.Fatalf("after a restart the repeat answered %+v, want %+v", after, first)
	}
	if n := count(bob); n != 2 {
		t.Fatalf("after restart bob holds %d messages, want 2", n)
	}

	// Concurrent repeats: exactly one 201, all the same message.
	const n = 16
	var wg sync.WaitGroup
	statuses := make([]int, n)
	msgs := make([]Message, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, data := alice.do("POST", "/api/messages", map[string]any{"to": bob.username, "body": fmt.Sprint("race ", i), "client_msg_id": "race"})
			statuses[i] = resp.StatusCode
			var out struct {
				Message Message `json:"message"`
			}
			json.Unmarshal(data, &out)
			msgs[i] = out.Message
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		switch statuses[i] {
		case 201:
			created++
		case 200:
		default:
			t.Fatalf("concurrent repeat answered %d", statuses[i])
		}
		if msgs[i] != msgs[0] {
			t.Fatalf("concurrent repeats answered different messages: %+v and %+v", msgs[i], msgs[0])
		}
	}
	if created != 1 {
		t.Fatalf("%d of %d concurrent repeats got 201, want exactly 1", created, n)
	}
	if n := count(bob); n != 3 {
		t.Fatalf("bob holds %d messages, want 3", n)
	}
}

func TestMessages_QueueCap(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config) { c.MaxQueue = 3 })
	fr := ts.friends("alice", "bob", "carol")
	alice, bob, carol := fr[0], fr[1], fr[2]

	for i := range 3 {
		alice.send(bob, fmt.Sprint("fill ", i))
	}
	before := queueState(alice) + "|" + queueState(bob)
	alice.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "one too many"}, http.StatusConflict, "queue_full")
	carol.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "one too many"}, http.StatusConflict, "queue_full")
	// A file to a full queue is refused the same way, its bytes not kept.
	resp, data := alice.upload([][2]string{{"to", bob.username}, {"file", ""}}, "f.txt", "", []byte("bytes"))
	checkError(t, resp, data, http.StatusConflict, "queue_full")
	if stored := ts.storedFiles(); stored != 0 {
		t.Fatalf("a refused upload left %v", stored)
	}
	if after := queueState(alice) + "|" + queueState(bob); after != before {
		t.Fatalf("a refused send changed the queues:\n%s\n%s", before, after)
	}
	// The cap applies to the recipient only: bob's queue is full, yet his
	// own copy of what he sends is stored.
	sent := bob.send(carol, "my queue is full")
	own := bob.messages()
	if len(own) != 4 || own[3].ID != sent.ID {
		t.Fatalf("bob's queue holds %+v, want his 3 plus his sent copy", own)
	}
	// alice's queue holds her 3 sent copies: they count against her cap.
	carol.mustFail("POST", "/api/messages", map[string]any{"to": alice.username, "body": "x"}, http.StatusConflict, "queue_full")

	// Cleaning makes room again.
	p := bob.poll(0, 0)
	var upto int64
	n := 0
	for _, e := range p.Events {
		if e.Type == "message" {
			n++
			if n == 2 {
				upto = e.Seq
			}
		}
	}
	if removed := bob.clean(upto); removed != 2 {
		t.Fatalf("removed %d, want 2", removed)
	}
	alice.send(bob, "room again")
	alice.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "full again"}, http.StatusConflict, "queue_full")
	// The cap survives a restart (it is counted in the database).
	ts.restart()
	alice.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "still full"}, http.StatusConflict, "queue_full")
}

func TestMessages_Clean(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	carol := ts.user("carol")
	_, c0 := bob.drain(0)
	m1 := alice.send(bob, "one")
	carol.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated) // a notice between
	m2 := alice.send(bob, "two")
	m3 := alice.send(bob, "three")
	evs, last := bob.drain(c0)
	if len(evs) != 4 || evs[1].Type != "friend_request" {
		t.Fatalf("bob's events %+v", evs)
	}
	// upto 0 removes nothing.
	if removed := bob.clean(0); removed != 0 {
		t.Fatalf("clean upto 0 removed %d", removed)
	}
	// Up to m2: two messages (the notice between is not counted).
	if removed := bob.clean(evs[2].Seq); removed != 2 {
		t.Fatalf("removed %d, want 2 (message events only)", removed)
	}
	// Idempotent.
	if removed := bob.clean(evs[2].Seq); removed != 0 {
		t.Fatalf("second clean removed %d, want 0", removed)
	}
	got := bob.messages()
	if len(got) != 1 || got[0] != m3 {
		t.Fatalf("after clean bob holds %+v, want [%+v]", got, m3)
	}
	// The sender's copies are untouched.
	if mine := alice.messages(); len(mine) != 3 || mine[0] != m1 || mine[1] != m2 {
		t.Fatalf("alice's copies %+v", mine)
	}
	// Beyond the end: everything held goes.
	if removed := bob.clean(last + 1000000); removed != 1 {
		t.Fatalf("removed %d, want 1", removed)
	}
	if evs, _ := bob.drain(0); len(evs) != 0 {
		t.Fatalf("after cleaning everything bob holds %+v", evs)
	}
	// Seqs are never reused after a clean (nor after a restart).
	ts.restart()
	m4 := alice.send(bob, "four")
	_, evsAfter, _ := bob.pollRaw("cursor=0&timeout=0")
	if len(evsAfter) != 1 || evsAfter[0].Seq <= last || evsAfter[0].Message.ID != m4.ID {
		t.Fatalf("after clean and restart: %+v (last seq was %d)", evsAfter, last)
	}
	// alice cleans her own copies; it does not touch bob's.
	if removed := alice.clean(1 << 50); removed != 4 {
		t.Fatalf("alice removed %d, want 4", removed)
	}
	if got := bob.messages(); len(got) != 1 || got[0] != m4 {
		t.Fatalf("alice's clean took bob's copy: %+v", got)
	}

	// Bad bodies: 400 and nothing removed.
	for _, body := range []any{
		map[string]any{},
		map[string]any{"upto": "5"},
		map[string]any{"upto": -1},
		map[string]any{"upto": 1.5},
		map[string]any{"upto": nil},
		map[string]any{"upto": 1e30},
		`{"upto": 1`,
		`{"upto": 100} {"upto": 100}`,
		`[100]`,
		`100`,
		``,
	} {
		resp, data := bob.do("POST", "/api/clean", body)
		checkError(t, resp, data, http.StatusBadRequest, "bad_request")
	}
	if got := bob.messages(); len(got) != 1 {
		t.Fatalf("a refused clean removed messages: %+v", got)
	}
}
