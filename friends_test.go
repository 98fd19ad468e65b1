package main

import (
	"encoding/json"
	"net/http"
	"testing"
)

// friendLists reads c's /api/friends as username lists.
type friendLists struct{ friends, incoming, outgoing []string }

func (c *client) friendLists() friendLists {
	c.t.Helper()
	resp, data := c.do("GET", "/api/friends", nil)
	checkJSON(c.t, resp, data, http.StatusOK)
	var out struct {
		Friends  []map[string]any `json:"friends"`
		Incoming []map[string]any `json:"incoming"`
		Outgoing []map[string]any `json:"outgoing"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Friends == nil || out.Incoming == nil || out.Outgoing == nil {
		c.t.Fatalf("friends answered %s", data)
	}
	names := func(us []map[string]any, presence bool) []string {
		s := []string{}
		for _, u := range us {
			if _, ok := u["online"].(bool); ok != presence {
				c.t.Fatalf("friends answered %s: online wanted on friends only", data)
			}
			s = append(s, u["username"].(string))
		}
		return s
	}
	return friendLists{names(out.Friends, true), names(out.Incoming, false), names(out.Outgoing, false)}
}

func (c *client) blockList() []string {
	c.t.Helper()
	resp, data := c.do("GET", "/api/blocks", nil)
	checkJSON(c.t, resp, data, http.StatusOK)
	var out struct {
		Blocked []map[string]any `json:"blocked"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Blocked == nil {
		c.t.Fatalf("blocks answered %s", data)
	}
	s := []string{}
	for _, u := range out.Blocked {
		s = append(s, u["username"].(string))
	}
	return s
}

func same(a []string, b ...string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// notices drains c's queue from cursor and returns "type:username" of the
// notices, and the new cursor.
func (c *client) notices(cursor int64) ([]string, int64) {
	c.t.Helper()
	evs, next := c.drain(cursor)
	out := []string{}
	for _, e := range evs {
		if e.Type != "message" && e.Type != "presence" {
			if e.User == nil {
				c.t.Fatalf("%s event without user: %v", e.Type, e.Raw)
			}
			checkTime(c.t, e.Type+" at", e.At)
			out = append(out, e.Type+":"+e.User["username"].(string))
		}
	}
	return out, next
}

func TestFriends_RequestAcceptRefuseRemove(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice, bob, carol := ts.user("alice"), ts.user("bob"), ts.user("carol")
	na, ca := alice.notices(0)
	nb, cb := bob.notices(0)
	nc, cc := carol.notices(0)
	if len(na)+len(nb)+len(nc) != 0 {
		t.Fatal("fresh users have notices")
	}
	if l := alice.friendLists(); len(l.friends)+len(l.incoming)+len(l.outgoing) != 0 {
		t.Fatalf("fresh lists %+v", l)
	}

	// Request: 201; bob is told, alice is not.
	resp, data := alice.do("POST", "/api/friends/"+bob.username+"/request", nil)
	checkJSON(t, resp, data, http.StatusCreated)
	alice.mustFail("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusConflict, "already_requested")
	if l := alice.friendLists(); !same(l.outgoing, bob.username) || len(l.incoming)+len(l.friends) != 0 {
		t.Fatalf("alice's lists %+v", l)
	}
	if l := bob.friendLists(); !same(l.incoming, alice.username) || len(l.outgoing)+len(l.friends) != 0 {
		t.Fatalf("bob's lists %+v", l)
	}
	nb, cb = bob.notices(cb)
	na, ca = alice.notices(ca)
	if !same(nb, "friend_request:"+alice.username) || len(na) != 0 {
		t.Fatalf("after request: bob %v, alice %v", nb, na)
	}

	// Accept: 200; alice is told; both list each other as friends.
	resp, data = bob.do("POST", "/api/friends/"+alice.username+"/accept", nil)
	checkJSON(t, resp, data, http.StatusOK)
	na, ca = alice.notices(ca)
	nb, cb = bob.notices(cb)
	if !same(na, "friend_accepted:"+bob.username) || len(nb) != 0 {
		t.Fatalf("after accept: alice %v, bob %v", na, nb)
	}
	if l := alice.friendLists(); !same(l.friends, bob.username) || len(l.incoming)+len(l.outgoing) != 0 {
		t.Fatalf("alice's lists %+v", l)
	}
	if l := bob.friendLists(); !same(l.friends, alice.username) || len(l.incoming)+len(l.outgoing) != 0 {
		t.Fatalf("bob's lists %+v", l)
	}
	alice.mustFail("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusConflict, "already_friends")
	bob.mustFail("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusConflict, "already_friends")

	// Requests crossing: the second completes the friendship at once (200).
	alice.mustDo("POST", "/api/friends/"+carol.username+"/request", nil, http.StatusCreated)
	resp, data = carol.do("POST", "/api/friends/"+alice.username+"/request", nil)
	checkJSON(t, resp, data, http.StatusOK)
	na, ca = alice.notices(ca)
	nc, cc = carol.notices(cc)
	if !same(na, "friend_accepted:"+carol.username) || !same(nc, "friend_request:"+alice.username) {
		t.Fatalf("crossing requests: alice %v, carol %v", na, nc)
	}
	if l := alice.friendLists(); !same(l.friends, bob.username, carol.username) {
		t.Fatalf("alice's friends %v, want bob and carol in username order", l.friends)
	}

	// Unfriend: 204; the other is told; again: 404 no_such_request.
	resp, data = carol.do("DELETE", "/api/friends/"+alice.username, nil)
	if resp.StatusCode != http.StatusNoContent || len(data) != 0 {
		t.Fatalf("unfriend: %d %s", resp.StatusCode, data)
	}
	na, ca = alice.notices(ca)
	nc, cc = carol.notices(cc)
	if !same(na, "friend_removed:"+carol.username) || len(nc) != 0 {
		t.Fatalf("unfriend: alice %v, carol %v", na, nc)
	}
	carol.mustFail("DELETE", "/api/friends/"+alice.username, nil, http.StatusNotFound, "no_such_request")
	if l := carol.friendLists(); len(l.friends) != 0 {
		t.Fatalf("carol's friends after unfriending %v", l.friends)
	}

	// Refuse: 200; the requester is told and may ask again.
	carol.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated)
	nb, cb = bob.notices(cb)
	resp, data = bob.do("POST", "/api/friends/"+carol.username+"/refuse", nil)
	checkJSON(t, resp, data, http.StatusOK)
	nc, cc = carol.notices(cc)
	nb, cb = bob.notices(cb)
	if !same(nc, "friend_removed:"+bob.username) || len(nb) != 0 {
		t.Fatalf("refuse: carol %v, bob %v", nc, nb)
	}
	if l := bob.friendLists(); len(l.incoming) != 0 {
		t.Fatalf("bob's incoming after refusing %v", l.incoming)
	}
	bob.mustFail("POST", "/api/friends/"+carol.username+"/refuse", nil, http.StatusNotFound, "no_such_request")
	bob.mustFail("POST", "/api/friends/"+carol.username+"/accept", nil, http.StatusNotFound, "no_such_request")
	carol.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated)

	// Withdraw an outgoing request: 204, the other told; the recipient
	// cannot "withdraw" an incoming one.
	bob.mustFail("DELETE", "/api/friends/"+carol.username, nil, http.StatusNotFound, "no_such_request")
	nb, cb = bob.notices(cb)
	carol.mustDo("DELETE", "/api/friends/"+bob.username, nil, http.StatusNoContent)
	nb, cb = bob.notices(cb)
	if !same(nb, "friend_removed:"+carol.username) {
		t.Fatalf("withdraw: bob %v", nb)
	}
	if l := bob.friendLists(); len(l.incoming) != 0 {
		t.Fatalf("bob's incoming after the withdrawal %v", l.incoming)
	}
	_ = cc
}

func TestFriends_Errors(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"POST", "/api/friends/" + alice.username + "/request", 400, "cannot_befriend_self"},
		{"POST", "/api/friends/" + "ALICE" + alice.username[5:] + "/request", 400, "cannot_befriend_self"},
		{"POST", "/api/friends/nobody-here/request", 404, "no_such_user"},
		{"POST", "/api/friends/x/request", 404, "no_such_user"},
		{"POST", "/api/friends/nobody-here/accept", 404, "no_such_user"},
		{"POST", "/api/friends/nobody-here/refuse", 404, "no_such_user"},
		{"DELETE", "/api/friends/nobody-here", 404, "no_such_user"},
		{"POST", "/api/friends/" + bob.username + "/accept", 404, "no_such_request"},
		{"POST", "/api/friends/" + bob.username + "/refuse", 404, "no_such_request"},
		{"DELETE", "/api/friends/" + bob.username, 404, "no_such_request"},
		{"POST", "/api/blocks/" + alice.username, 400, "cannot_block_self"},
		{"POST", "/api/blocks/nobody-here", 404, "no_such_user"},
	} {
		alice.mustFail(c.method, c.path, nil, c.status, c.code)
	}
	if l := alice.friendLists(); len(l.friends)+len(l.incoming)+len(l.outgoing) != 0 {
		t.Fatalf("refused requests changed alice's lists: %+v", l)
	}
	if len(alice.blockList()) != 0 {
		t.Fatal("refused blocks changed alice's block list")
	}
}

func TestFriends_Blocks(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	carol, dave := ts.user("carol"), ts.user("dave")
	_, cb := bob.notices(0)
	_, cc := carol.notices(0)
	_, ca := alice.notices(0)

	// Blocking a friend ends the friendship; bob is told, alice is not.
	resp, data := alice.do("POST", "/api/blocks/"+bob.username, nil)
	checkJSON(t, resp, data, http.StatusOK)
	nb, cb := bob.notices(cb)
	if !same(nb, "friend_removed:"+alice.username) {
		t.Fatalf("bob's notices after the block: %v", nb)
	}
	if l := alice.friendLists(); len(l.friends) != 0 {
		t.Fatalf("alice's friends after blocking %v", l.friends)
	}
	if l := bob.friendLists(); len(l.friends) != 0 {
		t.Fatalf("bob's friends after being blocked %v", l.friends)
	}
	if b := alice.blockList(); !same(b, bob.username) {
		t.Fatalf("alice's blocks %v", b)
	}
	if b := bob.blockList(); len(b) != 0 {
		t.Fatalf("bob's blocks %v", b)
	}
	// Neither can ask or message the other.
	bob.mustFail("POST", "/api/friends/"+alice.username+"/request", nil, 403, "blocked")
	alice.mustFail("POST", "/api/friends/"+bob.username+"/request", nil, 403, "blocked")
	bob.mustFail("POST", "/api/messages", map[string]any{"to": alice.username, "body": "x"}, 403, "blocked")
	alice.mustFail("POST", "/api/messages", map[string]any{"to": bob.username, "body": "x"}, 403, "blocked")
	// Blocking again is fine.
	alice.mustDo("POST", "/api/blocks/"+bob.username, nil, http.StatusOK)

	// Blocking ends pending requests both ways.
	carol.mustDo("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusCreated)
	alice.mustDo("POST", "/api/friends/"+dave.username+"/request", nil, http.StatusCreated)
	_, cc = carol.notices(cc)
	alice.mustDo("POST", "/api/blocks/"+carol.username, nil, http.StatusOK)
	dave.mustDo("POST", "/api/blocks/"+alice.username, nil, http.StatusOK)
	if l := alice.friendLists(); len(l.incoming)+len(l.outgoing) != 0 {
		t.Fatalf("alice's requests after the blocks %+v", l)
	}
	if nc, _ := carol.notices(cc); !same(nc, "friend_removed:"+alice.username) {
		t.Fatalf("carol's notices after the block: %v", nc)
	}
	if na, _ := alice.notices(ca); !same(na, "friend_request:"+carol.username, "friend_removed:"+dave.username) {
		t.Fatalf("alice's notices: %v", na)
	}
	if b := alice.blockList(); !same(b, bob.username, carol.username) {
		t.Fatalf("alice's blocks %v, want bob and carol in username order", b)
	}

	// Unblock: 204; the friendship is not restored; messages say not_friends.
	resp, data = alice.do("DELETE", "/api/blocks/"+bob.username, nil)
	if resp.StatusCode != http.StatusNoContent || len(data) != 0 {
		t.Fatalf("unblock: %d %s", resp.StatusCode, data)
	}
	alice.mustDo("DELETE", "/api/blocks/"+bob.username, nil, http.StatusNoContent)  // not blocked: 204 all the same
	alice.mustDo("DELETE", "/api/blocks/"+dave.username, nil, http.StatusNoContent) // dave blocked alice, not the reverse
	if l := alice.friendLists(); len(l.friends) != 0 {
		t.Fatalf("unblocking restored a friendship: %v", l.friends)
	}
	bob.mustFail("POST", "/api/messages", map[string]any{"to": alice.username, "body": "x"}, 403, "not_friends")
	// dave's block of alice still stands.
	alice.mustFail("POST", "/api/friends/"+dave.username+"/request", nil, 403, "blocked")
	befriend(bob, alice)
	bob.send(alice, "friends again")
}

// TestFriends_MessagingFollowsEveryChange sends after each change of a
// pair's relation, so no remembered answer outlives the change.
func TestFriends_MessagingFollowsEveryChange(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	alice, bob := ts.user("alice"), ts.user("bob")
	try := func(from, to *client, status int, code string) {
		t.Helper()
		body := map[string]any{"to": to.username, "body": "x"}
		if status == http.StatusCreated {
			from.mustDo("POST", "/api/messages", body, status)
			return
		}
		from.mustFail("POST", "/api/messages", body, status, code)
	}
	both := func(status int, code string) {
		t.Helper()
		try(alice, bob, status, code)
		try(bob, alice, status, code)
	}
	both(403, "not_friends")
	alice.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated)
	both(403, "not_friends")
	bob.mustDo("POST", "/api/friends/"+alice.username+"/accept", nil, http.StatusOK)
	both(201, "")
	bob.mustDo("DELETE", "/api/friends/"+alice.username, nil, http.StatusNoContent)
	both(403, "not_friends")
	alice.mustDo("POST", "/api/friends/"+bob.username+"/request", nil, http.StatusCreated)
	bob.mustDo("POST", "/api/friends/"+alice.username+"/request", nil, http.StatusOK) // crossing: friends
	both(201, "")
	bob.mustDo("POST", "/api/blocks/"+alice.username, nil, http.StatusOK)
	both(403, "blocked")
	alice.mustDo("POST", "/api/blocks/"+bob.username, nil, http.StatusOK)
	bob.mustDo("DELETE", "/api/blocks/"+alice.username, nil, http.StatusNoContent)
	both(403, "blocked") // alice's block stands
	alice.mustDo("DELETE", "/api/blocks/"+bob.username, nil, http.StatusNoContent)
	both(403, "not_friends")
	befriend(alice, bob)
	both(201, "")
	// The same after a restart.
	ts.restart()
	both(201, "")
	alice.mustDo("DELETE", "/api/friends/"+bob.username, nil, http.StatusNoContent)
	both(403, "not_friends")
	if n := len(bob.messages()); n != 8 {
		t.Fatalf("bob holds %d messages, want 8 (4 each way)", n)
	}
}
