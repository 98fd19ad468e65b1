package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// HTTP tests of API.md's "Groups, read state and typing", over the real
// handlers, on every engine.

type testMember struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Online      *bool  `json:"online"`
	ReadUpto    *int64 `json:"read_upto"`
}

type testGroup struct {
	ID        int64        `json:"id"`
	Name      string       `json:"name"`
	Owner     string       `json:"owner"`
	Members   []testMember `json:"members"`
	CreatedAt string       `json:"created_at"`
}

func (g testGroup) names() []string {
	var out []string
	for _, m := range g.Members {
		out = append(out, m.Username)
	}
	return out
}

func (g testGroup) member(name string) testMember {
	for _, m := range g.Members {
		if m.Username == name {
			return m
		}
	}
	return testMember{}
}

func groupPath(id int64, rest ...string) string {
	return fmt.Sprintf("/api/groups/%d", id) + strings.Join(rest, "")
}

// createGroup creates a group of c's with members and expects 201.
func (c *client) createGroup(name string, members ...*client) testGroup {
	c.t.Helper()
	names := []string{}
	for _, m := range members {
		names = append(names, m.username)
	}
	resp, data := c.do("POST", "/api/groups", map[string]any{"name": name, "members": names})
	checkJSON(c.t, resp, data, http.StatusCreated)
	var out struct{ Group testGroup }
	json.Unmarshal(data, &out)
	return out.Group
}

func (c *client) group(id int64) testGroup {
	c.t.Helper()
	var out struct{ Group testGroup }
	c.mustJSON("GET", groupPath(id), nil, http.StatusOK, &out)
	return out.Group
}

type groupSend struct {
	Message     Message  `json:"message"`
	Undelivered []string `json:"undelivered"`
}

func (c *client) sendGroup(id int64, body string) groupSend {
	c.t.Helper()
	resp, data := c.do("POST", "/api/messages", map[string]any{"group": id, "body": body})
	checkJSON(c.t, resp, data, http.StatusCreated)
	var out groupSend
	json.Unmarshal(data, &out)
	return out
}

// eventsNow reads c's queue from cursor without waiting, after a change
// that committed before its answer (notices are written in its commit).
func (c *client) eventsNow(cursor int64) ([]rawEvent, int64) {
	c.t.Helper()
	return c.drain(cursor)
}

func cursorOf(c *client) int64 {
	c.t.Helper()
	_, cur := c.drain(0)
	return cur
}

func rawGroup(t testing.TB, e rawEvent) testGroup {
	t.Helper()
	var g testGroup
	if err := json.Unmarshal(e.Raw["group"], &g); err != nil {
		t.Fatalf("event %v: group %s: %v", e.Type, e.Raw["group"], err)
	}
	return g
}

type testConversation struct {
	With  *testMember `json:"with"`
	Group *struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"group"`
	LastMessage  *Message `json:"last_message"`
	Unread       *int64   `json:"unread"`
	ReadUpto     *int64   `json:"read_upto"`
	PeerReadUpto *int64   `json:"peer_read_upto"`
}

func (c *client) conversations() []testConversation {
	c.t.Helper()
	var out struct {
		Conversations []testConversation `json:"conversations"`
	}
	c.mustJSON("GET", "/api/conversations", nil, http.StatusOK, &out)
	if out.Conversations == nil {
		c.t.Fatal("conversations is not a list")
	}
	return out.Conversations
}

func TestGroup_CreateShapeAndRefusals(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config) { c.MaxGroupMembers = 3 })
	fr := ts.friends("alice", "bob", "carol", "dave")
	alice, bob, carol, dave := fr[0], fr[1], fr[2], fr[3]
	stranger := ts.user("stranger")
	blocker := ts.user("blocker")
	befriend(alice, blocker)
	blocker.mustDo("POST", "/api/blocks/"+alice.username, nil, http.StatusOK)
	bobCursor, carolCursor := cursorOf(bob), cursorOf(carol)

	create := func(body any, status int, code string) {
		t.Helper()
		alice.mustFail("POST", "/api/groups", body, status, code)
	}
	create(map[string]any{"members": []string{bob.username}}, 400, "invalid_group_name")
	create(map[string]any{"name": "", "members": []string{}}, 400, "invalid_group_name")
	create(map[string]any{"name": "   "}, 400, "invalid_group_name")
	create(map[string]any{"name": strings.Repeat("é", 65)}, 400, "invalid_group_name")
	create(map[string]any{"name": "bad\u202e"}, 400, "invalid_group_name")
	create(map[string]any{"name": 5}, 400, "bad_request")
	create(map[string]any{"name": "x", "members": "bob"}, 400, "bad_request")
	create(map[string]any{"name": "x", "members": []string{bob.username, "no-such-user"}}, 404, "no_such_user")
	create(map[string]any{"name": "x", "members": []string{bob.username, "!!"}}, 404, "no_such_user")
	create(map[string]any{"name": "x", "members": []string{bob.username, stranger.username}}, 403, "not_friends")
	create(map[string]any{"name": "x", "members": []string{bob.username, blocker.username}}, 403, "blocked")
	create(map[string]any{"name": "x", "members": []string{bob.username, carol.username, dave.username}}, 409, "group_full")
	create("{", 400, "bad_request")
	var list struct{ Groups []testGroup }
	alice.mustJSON("GET", "/api/groups", nil, http.StatusOK, &list)
	if list.Groups == nil || len(list.Groups) != 0 {
		t.Fatalf("refused creations left groups: %+v", list.Groups)
	}
	if evs, _ := bob.eventsNow(bobCursor); len(eventsOfType(evs, "group_joined")) != 0 {
		t.Fatal("a refused creation sent group_joined")
	}

	// Repeats, case and the creator's own name are ignored.
	g := alice.createGroup("Trip 🏔", bob, carol, bob, alice)
	resp, data := alice.do("POST", "/api/groups", map[string]any{"name": "Again", "members": []string{strings.ToUpper(bob.username), bob.username}})
	checkJSON(t, resp, data, http.StatusCreated)
	if g.ID <= 0 || g.Name != "Trip 🏔" || g.Owner != alice.username {
		t.Fatalf("group %+v", g)
	}
	checkTime(t, "created_at", g.CreatedAt)
	want := []string{alice.username, bob.username, carol.username}
	slices.Sort(want)
	if !slices.Equal(g.names(), want) {
		t.Fatalf("members %v, want %v", g.names(), want)
	}
	for _, m := range g.Members {
		if m.ReadUpto == nil || *m.ReadUpto != 0 {
			t.Fatalf("member %s read_upto %v", m.Username, m.ReadUpto)
		}
		if m.Username == alice.username && m.Online != nil {
			t.Fatal("the caller is not their own friend: no online on their member")
		}
		if m.Username != alice.username && (m.Online == nil || !*m.Online) {
			t.Fatalf("friend %s without online=true", m.Username)
		}
	}

	// group_joined to each added member; the creator gets nothing.
	for _, c := range []struct {
		c      *client
		cursor int64
	}{{bob, bobCursor}, {carol, carolCursor}} {
		evs, _ := c.c.eventsNow(c.cursor)
		joined := eventsOfType(evs, "group_joined")
		if c.c == bob && len(joined) != 2 || c.c == carol && len(joined) != 1 {
			t.Fatalf("%s got %d group_joined", c.c.username, len(joined))
		}
		eg := rawGroup(t, joined[0])
		if eg.ID != g.ID || eg.Owner != alice.username || len(eg.Members) != 3 {
			t.Fatalf("group_joined carries %+v", eg)
		}
		// Presence is shown where the member is the recipient's friend.
		if m := eg.member(c.c.username); m.Online != nil {
			t.Fatalf("%s's own member in their event has online", c.c.username)
		}
		if m := eg.member(alice.username); m.Online == nil {
			t.Fatalf("%s's friend alice without online", c.c.username)
		}
	}
	if evs, _ := alice.eventsNow(0); len(eventsOfType(evs, "group_joined"))+len(eventsOfType(evs, "group_updated")) != 0 {
		t.Fatal("the creator got a group event")
	}
	// GET by id and the list, both for members only.
	if got := bob.group(g.ID); got.ID != g.ID || got.Name != g.Name {
		t.Fatalf("bob reads %+v", got)
	}
	alice.mustJSON("GET", "/api/groups", nil, http.StatusOK, &list)
	if len(list.Groups) != 2 || list.Groups[0].ID != g.ID || list.Groups[1].ID <= g.ID {
		t.Fatalf("alice's groups %+v", list.Groups)
	}
	dave.mustFail("GET", groupPath(g.ID), nil, 404, "no_such_group")
	dave.mustJSON("GET", "/api/groups", nil, http.StatusOK, &list)
	if len(list.Groups) != 0 {
		t.Fatalf("dave sees %+v", list.Groups)
	}
	checkGroupInvariants(t, ts)
}

func TestGroup_NonMemberGetsNoSuchGroup(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob", "eve")
	alice, bob, eve := fr[0], fr[1], fr[2]
	g := alice.createGroup("Private", bob)
	for _, id := range []string{fmt.Sprint(g.ID), fmt.Sprint(g.ID + 1000), "0", "-3", "abc"} {
		p := "/api/groups/" + id
		eve.mustFail("GET", p, nil, 404, "no_such_group")
		eve.mustFail("PATCH", p, map[string]any{"name": "Mine"}, 404, "no_such_group")
		eve.mustFail("POST", p+"/members/"+eve.username, nil, 404, "no_such_group")
		eve.mustFail("POST", p+"/members/"+alice.username, nil, 404, "no_such_group")
		eve.mustFail("DELETE", p+"/members/"+bob.username, nil, 404, "no_such_group")
		eve.mustFail("DELETE", p+"/members/"+eve.username, nil, 404, "no_such_group")
	}
	for _, id := range []int64{g.ID, g.ID + 1000, 0, -1} {
		eve.mustFail("POST", "/api/messages", map[string]any{"group": id, "body": "hi"}, 404, "no_such_group")
		eve.mustFail("POST", "/api/read", map[string]any{"group": id, "upto": 1}, 404, "no_such_group")
		eve.mustFail("POST", "/api/typing", map[string]any{"group": id}, 404, "no_such_group")
		resp, data := eve.upload([][2]string{{"group", fmt.Sprint(id)}, {"file", ""}}, "a.png", "", pngBytes)
		checkError(t, resp, data, 404, "no_such_group")
	}
	if n := ts.storedFiles(); n != 0 {
		t.Fatalf("refused uploads left %d files", n)
	}
	if got := alice.group(g.ID); len(got.Members) != 2 || got.Name != "Private" {
		t.Fatalf("the group changed: %+v", got)
	}
	checkGroupInvariants(t, ts)
}

func TestGroup_RenameAddRemoveLeaveOwnership(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config) { c.MaxGroupMembers = 4 })
	fr := ts.friends("alice", "bob", "carol", "dave", "erin")
	alice, bob, carol, dave, erin := fr[0], fr[1], fr[2], fr[3], fr[4]
	stranger := ts.user("stranger")
	befriend(bob, stranger)
	g := alice.createGroup("Team", bob)
	cur := map[*client]int64{}
	for _, c := range fr {
		cur[c] = cursorOf(c)
	}
	cur[stranger] = cursorOf(stranger)
	// next returns the group events c got since the last look.
	next := func(c *client) []rawEvent {
		t.Helper()
		evs, n := c.eventsNow(cur[c])
		cur[c] = n
		var out []rawEvent
		for _, e := range evs {
			if strings.HasPrefix(e.Type, "group_") {
				out = append(out, e)
			}
		}
		return out
	}
	expect := func(c *client, types ...string) []rawEvent {
		t.Helper()
		evs := next(c)
		var got []string
		for _, e := range evs {
			got = append(got, e.Type)
		}
		if !slices.Equal(got, types) {
			t.Fatalf("%s got group events %v, want %v", c.username, got, types)
		}
		return evs
	}

	// Rename: owner only; the others are told, the owner is not.
	bob.mustFail("PATCH", groupPath(g.ID), map[string]any{"name": "Bob's"}, 403, "not_group_owner")
	alice.mustFail("PATCH", groupPath(g.ID), map[string]any{"name": ""}, 400, "invalid_group_name")
	alice.mustFail("PATCH", groupPath(g.ID), map[string]any{}, 400, "invalid_group_name")
	var out struct{ Group testGroup }
	alice.mustJSON("PATCH", groupPath(g.ID), map[string]any{"name": "Dream team"}, 200, &out)
	if out.Group.Name != "Dream team" {
		t.Fatalf("renamed to %q", out.Group.Name)
	}
	if eg := rawGroup(t, expect(bob, "group_updated")[0]); eg.Name != "Dream team" {
		t.Fatalf("group_updated carries %+v", eg)
	}
	expect(alice)

	// Any member adds one of their own friends.
	bob.mustFail("POST", groupPath(g.ID, "/members/", "nobody-here"), nil, 404, "no_such_user")
	bob.mustFail("POST", groupPath(g.ID, "/members/", alice.username), nil, 409, "already_member")
	alice.mustFail("POST", groupPath(g.ID, "/members/", stranger.username), nil, 403, "not_friends")
	carol.mustDo("POST", "/api/blocks/"+bob.username, nil, http.StatusOK)
	bob.mustFail("POST", groupPath(g.ID, "/members/", carol.username), nil, 403, "blocked")
	carol.mustDo("DELETE", "/api/blocks/"+bob.username, nil, http.StatusNoContent)
	next(bob)
	next(carol)
	bob.mustJSON("POST", groupPath(g.ID, "/members/", stranger.username), nil, 200, &out)
	if !slices.Contains(out.Group.names(), stranger.username) {
		t.Fatalf("after adding: %v", out.Group.names())
	}
	if eg := rawGroup(t, expect(stranger, "group_joined")[0]); len(eg.Members) != 3 {
		t.Fatalf("group_joined carries %v", eg.names())
	}
	expect(alice, "group_updated")
	expect(bob)
	alice.mustDo("POST", groupPath(g.ID, "/members/", carol.username), nil, 200)
	alice.mustFail("POST", groupPath(g.ID, "/members/", dave.username), nil, 409, "group_full")
	expect(carol, "group_joined")
	expect(bob, "group_updated")
	expect(stranger, "group_updated")
	expect(dave)

	// Removing: the owner removes anyone; others only themselves.
	bob.mustFail("DELETE", groupPath(g.ID, "/members/", carol.username), nil, 403, "not_group_owner")
	bob.mustFail("DELETE", groupPath(g.ID, "/members/", dave.username), nil, 403, "not_group_owner")
	alice.mustFail("DELETE", groupPath(g.ID, "/members/", dave.username), nil, 404, "not_member")
	alice.mustFail("DELETE", groupPath(g.ID, "/members/", "no-such-one"), nil, 404, "not_member")
	alice.mustDo("DELETE", groupPath(g.ID, "/members/", carol.username), nil, 204)
	left := expect(carol, "group_left")[0]
	var ref map[string]any
	json.Unmarshal(left.Raw["group"], &ref)
	if len(ref) != 2 || ref["id"] != float64(g.ID) || ref["name"] != "Dream team" {
		t.Fatalf("group_left carries %s", left.Raw["group"])
	}
	expect(bob, "group_updated")
	expect(stranger, "group_updated")
	expect(alice)
	carol.mustFail("GET", groupPath(g.ID), nil, 404, "no_such_group")

	// A leave: nobody tells the leaver; the others get group_updated.
	stranger.mustDo("DELETE", groupPath(g.ID, "/members/", stranger.username), nil, 204)
	expect(stranger)
	expect(alice, "group_updated")
	expect(bob, "group_updated")

	// The owner leaves: the earliest joined (bob, at creation) owns it.
	alice.mustDo("POST", groupPath(g.ID, "/members/", erin.username), nil, 200)
	next(bob)
	alice.mustDo("DELETE", groupPath(g.ID, "/members/", alice.username), nil, 204)
	if eg := rawGroup(t, expect(bob, "group_updated")[0]); eg.Owner != bob.username {
		t.Fatalf("owner after alice left: %q", eg.Owner)
	}
	if got := erin.group(g.ID); got.Owner != bob.username || len(got.Members) != 2 {
		t.Fatalf("after alice left: %+v", got)
	}
	erin.mustFail("PATCH", groupPath(g.ID), map[string]any{"name": "Erin's"}, 403, "not_group_owner")
	bob.mustDo("PATCH", groupPath(g.ID), map[string]any{"name": "Bob's"}, 200)

	// The last member leaving deletes the group.
	erin.mustDo("DELETE", groupPath(g.ID, "/members/", erin.username), nil, 204)
	bob.mustDo("DELETE", groupPath(g.ID, "/members/", bob.username), nil, 204)
	bob.mustFail("GET", groupPath(g.ID), nil, 404, "no_such_group")
	var metrics string
	_, data := ts.anon().do("GET", "/metrics", nil)
	metrics = string(data)
	if v := metricValue(t, metrics, "webim_groups"); v != 0 {
		t.Fatalf("webim_groups %v after the last left", v)
	}
	checkGroupInvariants(t, ts)
}

func TestGroup_MessagesFanOutOneRowPerMember(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob", "carol", "dave")
	alice, bob, carol, dave := fr[0], fr[1], fr[2], fr[3]
	g := alice.createGroup("Chat", bob, carol)
	bobCursor := cursorOf(bob)

	alice.mustFail("POST", "/api/messages", map[string]any{"group": g.ID, "to": bob.username, "body": "x"}, 400, "bad_request")
	alice.mustFail("POST", "/api/messages", map[string]any{"body": "x"}, 400, "bad_request")
	alice.mustFail("POST", "/api/messages", map[string]any{"group": "one", "body": "x"}, 400, "bad_request")
	alice.mustFail("POST", "/api/messages", map[string]any{"group": g.ID, "body": " "}, 400, "invalid_body")
	dave.mustFail("POST", "/api/messages", map[string]any{"group": g.ID, "body": "x"}, 404, "no_such_group")

	resp, data := alice.do("POST", "/api/messages", map[string]any{"group": g.ID, "body": "hello all", "client_msg_id": "k1"})
	checkJSON(t, resp, data, http.StatusCreated)
	var raw map[string]json.RawMessage
	json.Unmarshal(data, &raw)
	if _, ok := raw["undelivered"]; ok {
		t.Fatalf("undelivered present though everyone got it: %s", data)
	}
	var sent groupSend
	json.Unmarshal(data, &sent)
	var msgRaw map[string]json.RawMessage
	json.Unmarshal(raw["message"], &msgRaw)
	if _, ok := msgRaw["to"]; ok || string(msgRaw["group"]) != fmt.Sprint(g.ID) {
		t.Fatalf("group message %s: want group and no to", raw["message"])
	}
	m := sent.Message
	if m.From != alice.username || m.Body != "hello all" || m.ClientMsgID != "k1" {
		t.Fatalf("message %+v", m)
	}
	checkTime(t, "sent_at", m.SentAt)
	// A repeat of the client_msg_id is 200 with the stored message.
	resp, data = alice.do("POST", "/api/messages", map[string]any{"group": g.ID, "body": "other", "client_msg_id": "k1"})
	checkJSON(t, resp, data, http.StatusOK)
	var again groupSend
	json.Unmarshal(data, &again)
	if again.Message.ID != m.ID || again.Message.Body != "hello all" {
		t.Fatalf("repeat answered %+v", again.Message)
	}
	// Every member, the sender included, has exactly one copy.
	for _, c := range []*client{alice, bob, carol} {
		ms := c.messages()
		if len(ms) != 1 || ms[0].ID != m.ID || ms[0].Group != g.ID || ms[0].To != "" {
			t.Fatalf("%s's queue: %+v", c.username, ms)
		}
	}
	if len(dave.messages()) != 0 {
		t.Fatal("a non-member got the message")
	}
	// Blocks do not apply inside a group.
	carol.mustDo("POST", "/api/blocks/"+bob.username, nil, http.StatusOK)
	bob.sendGroup(g.ID, "despite the block")
	if ms := carol.messages(); len(ms) != 2 || ms[1].Body != "despite the block" {
		t.Fatalf("carol's queue: %+v", ms)
	}
	e, _ := bob.waitEvent(bobCursor, "message", "")
	if e.Message.ID != m.ID {
		t.Fatalf("bob's first event %+v", e.Message)
	}

	// Members added later do not get earlier messages; a removed member
	// keeps what they have.
	alice.mustDo("POST", groupPath(g.ID, "/members/", dave.username), nil, 200)
	if len(dave.messages()) != 0 {
		t.Fatal("a new member got earlier messages")
	}
	alice.mustDo("DELETE", groupPath(g.ID, "/members/", carol.username), nil, 204)
	alice.sendGroup(g.ID, "after carol left")
	if ms := carol.messages(); len(ms) != 2 {
		t.Fatalf("a removed member's queue: %+v", ms)
	}
	if ms := dave.messages(); len(ms) != 1 || ms[0].Body != "after carol left" {
		t.Fatalf("dave's queue: %+v", ms)
	}
	checkGroupInvariants(t, ts)

	// Cleaning: the shared row goes with the last copy.
	for _, c := range []*client{alice, bob, carol, dave} {
		c.clean(1 << 40)
		checkGroupInvariants(t, ts)
	}
	if ts.app.store.QueuedMessages() != 0 {
		t.Fatalf("queued %d after everyone cleaned", ts.app.store.QueuedMessages())
	}
	_, data = ts.anon().do("GET", "/metrics", nil)
	if v := metricValue(t, string(data), "webim_group_messages_sent_total"); v != 3 {
		t.Fatalf("webim_group_messages_sent_total %v, want 3", v)
	}
	if v := metricValue(t, string(data), "webim_groups"); v != 1 {
		t.Fatalf("webim_groups %v, want 1", v)
	}
}

func TestGroup_UndeliveredAtTheQueueCap(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config) { c.MaxQueue = 3 })
	fr := ts.friends("alice", "bob", "carol")
	alice, bob, carol := fr[0], fr[1], fr[2]
	g := alice.createGroup("Cap", bob, carol)
	// bob's queue fills: two of his own sends and one from carol.
	bob.send(carol, "1")
	bob.send(carol, "2")
	carol.send(bob, "3") // carol's queue holds 3 now too
	carol.clean(1 << 40)
	sent := alice.sendGroup(g.ID, "who gets it")
	if !slices.Equal(sent.Undelivered, []string{bob.username}) {
		t.Fatalf("undelivered %v, want [%s]", sent.Undelivered, bob.username)
	}
	if ms := bob.messages(); len(ms) != 3 || slices.ContainsFunc(ms, func(m Message) bool { return m.ID == sent.Message.ID }) {
		t.Fatalf("bob at the cap got a copy: %+v", ms)
	}
	if ms := carol.messages(); len(ms) != 1 || ms[0].ID != sent.Message.ID {
		t.Fatalf("carol's queue: %+v", ms)
	}
	// Everyone but the sender at the cap: still stored, listed by name.
	carol.send(alice, "a")
	carol.send(alice, "b")
	sent = bob.sendGroup(g.ID, "from bob") // bob's own copy is always stored
	want := []string{alice.username, carol.username}
	slices.Sort(want)
	if !slices.Equal(sent.Undelivered, want) {
		t.Fatalf("undelivered %v, want %v", sent.Undelivered, want)
	}
	ms := bob.messages()
	if ms[len(ms)-1].ID != sent.Message.ID {
		t.Fatal("the sender's own copy was not stored")
	}
	checkGroupInvariants(t, ts)
}

func TestGroup_Files(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob", "carol", "eve")
	alice, bob, carol, eve := fr[0], fr[1], fr[2], fr[3]
	g := alice.createGroup("Pics", bob, carol)
	resp, data := alice.upload([][2]string{{"group", fmt.Sprint(g.ID)}, {"to", bob.username}, {"file", ""}}, "a.png", "", pngBytes)
	checkError(t, resp, data, 400, "bad_request")
	resp, data = alice.upload([][2]string{{"group", "x"}, {"file", ""}}, "a.png", "", pngBytes)
	checkError(t, resp, data, 400, "bad_request")
	resp, data = bob.upload([][2]string{{"group", fmt.Sprint(g.ID)}, {"file", ""}}, "cat.png", "text/html", pngBytes)
	checkJSON(t, resp, data, http.StatusCreated)
	var out groupSend
	json.Unmarshal(data, &out)
	f := out.Message.File
	if f == nil || out.Message.Group != g.ID || f.ContentType != "image/png" || out.Message.Body != "cat.png" {
		t.Fatalf("file message %+v", out.Message)
	}
	if ts.storedFiles() != 1 {
		t.Fatalf("%d files stored", ts.storedFiles())
	}
	for _, c := range []*client{alice, bob, carol} {
		resp, body := c.download(f.URL)
		if resp.StatusCode != 200 || string(body) != string(pngBytes) {
			t.Fatalf("%s downloads: %d", c.username, resp.StatusCode)
		}
	}
	if resp, _ := eve.download(f.URL); resp.StatusCode != 404 {
		t.Fatalf("a non-member downloads: %d", resp.StatusCode)
	}
	// Served while a queue holds the message; carol cleaned hers.
	carol.clean(1 << 40)
	if resp, _ := carol.download(f.URL); resp.StatusCode != 404 {
		t.Fatalf("carol, with no copy left, downloads: %d", resp.StatusCode)
	}
	if resp, _ := alice.download(f.URL); resp.StatusCode != 200 {
		t.Fatalf("alice downloads: %d", resp.StatusCode)
	}
	alice.clean(1 << 40)
	bob.clean(1 << 40)
	if resp, _ := bob.download(f.URL); resp.StatusCode != 404 {
		t.Fatalf("after every copy went: %d", resp.StatusCode)
	}
	if ts.storedFiles() != 0 {
		t.Fatalf("%d files left after every copy went", ts.storedFiles())
	}
	checkGroupInvariants(t, ts)
}

func TestGroup_ReadMarkersAndEvents(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob", "carol")
	alice, bob, carol := fr[0], fr[1], fr[2]
	stranger := ts.user("stranger")
	stranger.mustFail("POST", "/api/read", map[string]any{"group": 1, "upto": 1}, 404, "no_such_group")
	m1 := alice.send(bob, "one")
	m2 := alice.send(bob, "two")
	aliceCursor := cursorOf(alice)

	bob.mustFail("POST", "/api/read", map[string]any{"upto": m1.ID}, 400, "bad_request")
	bob.mustFail("POST", "/api/read", map[string]any{"with": alice.username, "group": 1, "upto": m1.ID}, 400, "bad_request")
	bob.mustFail("POST", "/api/read", map[string]any{"with": alice.username}, 400, "bad_request")
	bob.mustFail("POST", "/api/read", map[string]any{"with": alice.username, "upto": -1}, 400, "bad_request")
	bob.mustFail("POST", "/api/read", map[string]any{"with": alice.username, "upto": "1"}, 400, "bad_request")
	bob.mustFail("POST", "/api/read", map[string]any{"with": "no-such-user", "upto": 1}, 404, "no_such_user")
	bob.mustFail("POST", "/api/read", map[string]any{"with": "?", "upto": 1}, 404, "no_such_user")

	bob.mustDo("POST", "/api/read", map[string]any{"with": alice.username, "upto": m2.ID}, 204)
	evs, aliceCursor := alice.eventsNow(aliceCursor)
	reads := eventsOfType(evs, "read")
	if len(reads) != 1 || reads[0].User["username"] != bob.username || string(reads[0].Raw["upto"]) != fmt.Sprint(m2.ID) {
		t.Fatalf("alice's read events: %+v", reads)
	}
	if _, ok := reads[0].Raw["group"]; ok {
		t.Fatal("a 1:1 read event has group")
	}
	// Forward only: a lower upto is a 204 that changes nothing, and says nothing.
	bob.mustDo("POST", "/api/read", map[string]any{"with": alice.username, "upto": m1.ID}, 204)
	bob.mustDo("POST", "/api/read", map[string]any{"with": alice.username, "upto": m2.ID}, 204)
	if evs, _ := alice.eventsNow(aliceCursor); len(eventsOfType(evs, "read")) != 0 {
		t.Fatal("a marker that did not move sent a read event")
	}
	// Reading is not cleaning.
	if len(bob.messages()) != 2 {
		t.Fatal("reading removed messages")
	}

	// Groups: the other members are told, with the group.
	g := alice.createGroup("G", bob, carol)
	s1 := alice.sendGroup(g.ID, "g1")
	carolCursor, aliceCursor := cursorOf(carol), cursorOf(alice)
	bob.mustDo("POST", "/api/read", map[string]any{"group": g.ID, "upto": s1.Message.ID}, 204)
	for _, c := range []struct {
		c   *client
		cur int64
	}{{alice, aliceCursor}, {carol, carolCursor}} {
		evs, _ := c.c.eventsNow(c.cur)
		reads := eventsOfType(evs, "read")
		if len(reads) != 1 || string(reads[0].Raw["group"]) != fmt.Sprint(g.ID) || string(reads[0].Raw["upto"]) != fmt.Sprint(s1.Message.ID) ||
			reads[0].User["username"] != bob.username {
			t.Fatalf("%s's group read events: %+v", c.c.username, reads)
		}
	}
	if evs, _ := bob.eventsNow(cursorOf(bob)); len(eventsOfType(evs, "read")) != 0 {
		t.Fatal("the reader got their own read event")
	}
	if m := alice.group(g.ID).member(bob.username); m.ReadUpto == nil || *m.ReadUpto != s1.Message.ID {
		t.Fatalf("bob's read_upto in the group: %v", m.ReadUpto)
	}
	bob.mustDo("POST", "/api/read", map[string]any{"group": g.ID, "upto": 1}, 204)

	// Durable across a restart.
	ts.restart()
	for _, c := range fr {
		c.login()
	}
	if m := alice.group(g.ID).member(bob.username); *m.ReadUpto != s1.Message.ID {
		t.Fatalf("after a restart bob's group read_upto is %d", *m.ReadUpto)
	}
	convs := alice.conversations()
	var withBob *testConversation
	for i := range convs {
		if convs[i].With != nil && convs[i].With.Username == bob.username {
			withBob = &convs[i]
		}
	}
	if withBob == nil || *withBob.PeerReadUpto != m2.ID || *withBob.ReadUpto != 0 {
		t.Fatalf("alice's conversation with bob after a restart: %+v", withBob)
	}
	checkGroupInvariants(t, ts)
}

func TestGroup_Conversations(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob", "carol", "dave")
	alice, bob, carol, dave := fr[0], fr[1], fr[2], fr[3]
	if c := alice.conversations(); len(c) != 0 {
		t.Fatalf("no messages, no groups: %+v", c)
	}
	empty := alice.createGroup("Quiet", dave)
	g := carol.createGroup("Busy", alice, bob)
	b1 := bob.send(alice, "b1")
	b2 := bob.send(alice, "b2")
	a1 := alice.send(bob, "a1")
	alice.send(carol, "to carol") // alice's own copy: not unread
	gm := bob.sendGroup(g.ID, "in the group")
	alice.sendGroup(g.ID, "mine")
	_ = b2

	resp, data := alice.do("GET", "/api/conversations", nil)
	checkJSONAllowingNull(t, resp, data)
	convs := alice.conversations()
	if len(convs) != 4 {
		t.Fatalf("alice's conversations: %s", data)
	}
	// Newest message first; the empty group last.
	if convs[0].Group == nil || convs[0].Group.ID != g.ID || convs[0].Group.Name != "Busy" {
		t.Fatalf("first conversation %+v", convs[0])
	}
	if *convs[0].Unread != 1 || convs[0].LastMessage.Body != "mine" || convs[0].PeerReadUpto != nil {
		t.Fatalf("the group conversation: unread %d, last %+v", *convs[0].Unread, convs[0].LastMessage)
	}
	if convs[1].With == nil || convs[1].With.Username != carol.username || *convs[1].Unread != 0 {
		t.Fatalf("second conversation %+v", convs[1])
	}
	if convs[2].With.Username != bob.username || *convs[2].Unread != 2 || convs[2].LastMessage.ID != a1.ID ||
		*convs[2].ReadUpto != 0 || *convs[2].PeerReadUpto != 0 || convs[2].With.Online == nil {
		t.Fatalf("third conversation %+v", convs[2])
	}
	if convs[3].Group == nil || convs[3].Group.ID != empty.ID || convs[3].LastMessage != nil || *convs[3].Unread != 0 {
		t.Fatalf("the empty group %+v", convs[3])
	}
	if !strings.Contains(string(data), `"last_message":null`) {
		t.Fatalf("an empty group's last_message is not null: %s", data)
	}
	// Reading moves the counts; markers show on both sides.
	alice.mustDo("POST", "/api/read", map[string]any{"with": bob.username, "upto": b1.ID}, 204)
	alice.mustDo("POST", "/api/read", map[string]any{"group": g.ID, "upto": gm.Message.ID}, 204)
	convs = alice.conversations()
	for _, c := range convs {
		switch {
		case c.With != nil && c.With.Username == bob.username:
			if *c.Unread != 1 || *c.ReadUpto != b1.ID {
				t.Fatalf("with bob after reading b1: %+v", c)
			}
		case c.Group != nil && c.Group.ID == g.ID:
			if *c.Unread != 0 || *c.ReadUpto != gm.Message.ID {
				t.Fatalf("the group after reading: %+v", c)
			}
		}
	}
	for _, c := range bob.conversations() {
		if c.With != nil && c.With.Username == alice.username && *c.PeerReadUpto != b1.ID {
			t.Fatalf("bob sees alice read up to %d", *c.PeerReadUpto)
		}
	}
	// Cleaned conversations drop out; groups stay.
	alice.clean(1 << 40)
	convs = alice.conversations()
	if len(convs) != 2 || convs[0].Group == nil || convs[1].Group == nil || convs[0].LastMessage != nil {
		t.Fatalf("after cleaning: %+v", convs)
	}
	// Unfriended: no conversation with them.
	bob.send(alice, "again")
	alice.mustDo("DELETE", "/api/friends/"+bob.username, nil, http.StatusNoContent)
	for _, c := range alice.conversations() {
		if c.With != nil {
			t.Fatalf("a conversation with a former friend: %+v", c)
		}
	}
}

// checkJSONAllowingNull is checkJSON for the one answer that may hold null
// (last_message).
func checkJSONAllowingNull(t testing.TB, resp *http.Response, data []byte) {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !json.Valid(data) {
		t.Fatalf("status %d, %q, %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
}

func TestGroup_TypingEventsThrottleAndNoDisk(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ts := newTestServerHooked(t, withClock(clock))
	fr := ts.friends("alice", "bob", "carol")
	alice, bob, carol := fr[0], fr[1], fr[2]
	stranger := ts.user("stranger")
	blocker := ts.user("blocker")
	befriend(alice, blocker)
	blocker.mustDo("POST", "/api/blocks/"+alice.username, nil, http.StatusOK)

	alice.mustFail("POST", "/api/typing", map[string]any{}, 400, "bad_request")
	alice.mustFail("POST", "/api/typing", map[string]any{"to": bob.username, "group": 1}, 400, "bad_request")
	alice.mustFail("POST", "/api/typing", map[string]any{"to": 3}, 400, "bad_request")
	alice.mustFail("POST", "/api/typing", map[string]any{"to": "no-such-user"}, 404, "no_such_user")
	alice.mustFail("POST", "/api/typing", map[string]any{"to": stranger.username}, 403, "not_friends")
	alice.mustFail("POST", "/api/typing", map[string]any{"to": blocker.username}, 403, "blocked")
	alice.mustFail("POST", "/api/typing", map[string]any{"to": alice.username}, 400, "cannot_message_self")

	// Caught-up polls (their tails answer, as a page's do).
	bobCur, aliceCur := cursorOf(bob), cursorOf(alice)
	alice.mustDo("POST", "/api/typing", map[string]any{"to": bob.username}, 204)
	e, typingSeq := bob.waitEvent(bobCur, "typing", alice.username)
	if e.Seq <= bobCur || e.User["online"] != true || len(e.Raw) != 4 {
		t.Fatalf("typing event %v", e.Raw)
	}
	checkTime(t, "typing at", e.At)
	bobCur = typingSeq

	// Within 2 s: 204 and nothing sent. A message after it is a marker:
	// the writer keeps order, so once it is there a typing event would be.
	clock.advance(1900 * time.Millisecond)
	alice.mustDo("POST", "/api/typing", map[string]any{"to": bob.username}, 204)
	m := alice.send(bob, "typed")
	evs := waitFor(t, bob, bobCur, func(e rawEvent) bool { return e.Type == "message" })
	if len(eventsOfType(evs, "typing")) != 0 {
		t.Fatalf("a typing event inside the 2 s window: %+v", evs)
	}
	last := evs[len(evs)-1]
	if last.Message.ID != m.ID || last.Seq <= typingSeq {
		t.Fatalf("the message after a typing event: seq %d after %d", last.Seq, typingSeq)
	}
	bobCur = last.Seq
	// Another conversation is its own window; so is another sender.
	g := alice.createGroup("T", bob, carol)
	bobCur = cursorOf(bob)
	carolCur := cursorOf(carol)
	alice.mustDo("POST", "/api/typing", map[string]any{"group": g.ID}, 204)
	e, bobCur = bob.waitEvent(bobCur, "typing", alice.username)
	if string(e.Raw["group"]) != fmt.Sprint(g.ID) {
		t.Fatalf("group typing event %v", e.Raw)
	}
	e, carolCur = carol.waitEvent(carolCur, "typing", alice.username)
	if string(e.Raw["group"]) != fmt.Sprint(g.ID) {
		t.Fatalf("carol's group typing event %v", e.Raw)
	}
	carol.mustDo("POST", "/api/typing", map[string]any{"to": bob.username}, 204)
	bob.waitEvent(bobCur, "typing", carol.username)
	// After the window, the next call sends again.
	clock.advance(200 * time.Millisecond)
	alice.mustDo("POST", "/api/typing", map[string]any{"to": bob.username}, 204)
	_, bobCur = bob.waitEvent(bobCur, "typing", alice.username)
	// The typist gets none of their own.
	alice.send(carol, "marker")
	for _, e := range waitFor(t, alice, aliceCur, func(e rawEvent) bool { return e.Type == "message" && e.Message.Body == "marker" }) {
		if e.Type == "typing" {
			t.Fatalf("alice got a typing event: %v", e.Raw)
		}
	}

	// Nothing of it is on disk, and it is never redelivered.
	var n int
	if err := openCheckDB(t, ts.cfg.DBPath).QueryRow(`SELECT count(*) FROM queue WHERE kind = 10`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("typing rows in the queue: %d, %v", n, err)
	}
	all, _ := bob.drain(0)
	if len(eventsOfType(all, "typing")) != 0 {
		t.Fatal("a poll from cursor 0 redelivered typing")
	}
	// Seqs stay unique across a restart: a message after it comes after
	// the typing event's seq, so a client at that cursor gets it.
	ts.restart()
	alice.login()
	bob.login()
	m = alice.send(bob, "after the restart")
	evs = waitFor(t, bob, bobCur, func(e rawEvent) bool { return e.Type == "message" })
	if evs[len(evs)-1].Message.ID != m.ID {
		t.Fatalf("bob at his typing cursor after a restart: %+v", evs)
	}
	checkGroupInvariants(t, ts)
}

// waitFor polls c from cursor until an event satisfies done, and returns
// every event up to it.
func waitFor(t testing.TB, c *client, cursor int64, done func(rawEvent) bool) []rawEvent {
	t.Helper()
	var all []rawEvent
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		next, evs, _ := c.pollRaw(fmt.Sprintf("cursor=%d&timeout=2", cursor))
		for _, e := range evs {
			all = append(all, e)
			if done(e) {
				return all
			}
		}
		cursor = next
	}
	t.Fatalf("%s: nothing awaited within 10s; got %+v", c.username, all)
	return nil
}

func TestGroup_SurvivesRestart(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob", "carol")
	alice, bob, carol := fr[0], fr[1], fr[2]
	g := alice.createGroup("Lasting", bob, carol)
	alice.mustDo("PATCH", groupPath(g.ID), map[string]any{"name": "Still here"}, 200)
	sent := bob.sendGroup(g.ID, "kept")
	alice.mustDo("DELETE", groupPath(g.ID, "/members/", alice.username), nil, 204)
	ts.restart()
	for _, c := range fr {
		c.login()
	}
	got := carol.group(g.ID)
	if got.Name != "Still here" || got.Owner != bob.username || !slices.Equal(got.names(), sortedNames(bob, carol)) {
		t.Fatalf("after a restart: %+v", got)
	}
	if ms := carol.messages(); len(ms) != 1 || ms[0].ID != sent.Message.ID || ms[0].Group != g.ID {
		t.Fatalf("carol's queue after a restart: %+v", ms)
	}
	if ms := alice.messages(); len(ms) != 1 {
		t.Fatalf("alice, who left, keeps her copy: %+v", ms)
	}
	next := carol.sendGroup(g.ID, "new")
	if next.Message.ID <= sent.Message.ID {
		t.Fatal("message ids went back after a restart")
	}
	checkGroupInvariants(t, ts)
}

func sortedNames(cs ...*client) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.username)
	}
	slices.Sort(out)
	return out
}

func TestGroup_DeletedUserLeavesTheirGroups(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	g := alice.createGroup("Owned", bob)
	solo := alice.createGroup("Solo")
	alice.sendGroup(g.ID, "before")
	if _, err := ts.app.store.DeleteUser(context.Background(), alice.username); err != nil {
		t.Fatal(err)
	}
	got := bob.group(g.ID)
	if got.Owner != bob.username || len(got.Members) != 1 {
		t.Fatalf("after the owner's deletion: %+v", got)
	}
	if n, _ := ts.app.store.GroupCount(context.Background()); n != 1 {
		t.Fatalf("%d groups; the deleted user's own one should be gone (%d)", n, solo.ID)
	}
	checkGroupInvariants(t, ts)
}

// A client that polls from cursor 0 after a new login (its queue empty, its
// seqs well past 0, so its tail cannot answer that cursor) still gets a
// typing event, on a waiting long-poll.
func TestGroup_TypingReachesAWaitingPollFromCursorZero(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	bob.login() // drops his friend notices: an empty queue, last seq > 0
	bob.poll(0, 0)
	done := make(chan pollResult, 1)
	go func() { done <- bob.as(t).poll(0, 10) }()
	eventually(t, 5*time.Second, "bob's poll to wait", func() bool { return ts.app.notifier.waiting() > 0 })
	alice.mustDo("POST", "/api/typing", map[string]any{"to": bob.username}, 204)
	select {
	case p := <-done:
		if len(p.Events) != 1 || p.Events[0].Type != "typing" || p.Events[0].User.Username != alice.username || p.Cursor != p.Events[0].Seq {
			t.Fatalf("bob's poll answered %+v", p)
		}
		// Once delivered it is gone, and a message after it comes after it.
		if again := bob.poll(0, 0); len(again.Events) != 0 {
			t.Fatalf("polled again from 0: %+v", again)
		}
		m := alice.send(bob, "hi")
		next := bob.poll(p.Cursor, 5)
		if len(next.Events) != 1 || next.Events[0].Message == nil || next.Events[0].Message.ID != m.ID {
			t.Fatalf("after the typing cursor: %+v", next)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("the waiting poll never got the typing event")
	}
}

// checkGroupInvariants runs, on either engine, the invariants that groups
// touch (the whole set of checkDBInvariants on SQLite).
func checkGroupInvariants(t *testing.T, ts *testServer) {
	t.Helper()
	ts.checkInvariants()
	db := openCheckDB(t, ts.cfg.DBPath)
	for _, c := range []struct{ what, query string }{
		{"messages whose refs differ from the queue rows holding them", `SELECT count(*) FROM messages m
			LEFT JOIN (SELECT message_id, count(*) AS n FROM queue WHERE kind = 1 GROUP BY message_id) q ON q.message_id = m.id
			WHERE m.refs <> coalesce(q.n, 0) OR m.refs <= 0`},
		{"a message twice in one queue", `SELECT count(*) FROM (SELECT 1 FROM queue WHERE kind = 1 GROUP BY user_id, message_id HAVING count(*) > 1) AS x`},
		{"queue rows whose conversation is not their message's", `SELECT count(*) FROM queue q JOIN messages m ON m.id = q.message_id
			WHERE q.kind = 1 AND (q.conv <> CASE WHEN m.group_id IS NOT NULL THEN -m.group_id
				WHEN q.user_id = m.sender_id THEN m.recipient_id ELSE m.sender_id END
				OR q.own <> CASE WHEN q.user_id = m.sender_id THEN 1 ELSE 0 END)`},
		{"groups without members", `SELECT count(*) FROM groups g WHERE NOT EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = g.id)`},
		{"groups whose owner is not a member", `SELECT count(*) FROM groups g WHERE NOT EXISTS
			(SELECT 1 FROM group_members gm WHERE gm.group_id = g.id AND gm.user_id = g.owner_id)`},
		{"files no message holds", `SELECT count(*) FROM files WHERE id NOT IN (SELECT file_id FROM messages WHERE file_id IS NOT NULL)`},
	} {
		var n int
		if err := db.QueryRow(c.query).Scan(&n); err != nil {
			t.Fatalf("checking %s: %v", c.what, err)
		}
		if n != 0 {
			t.Errorf("database invariant broken: %d %s", n, c.what)
		}
	}
}
