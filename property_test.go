package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"
)

// relModel is what API.md says the relations between users are, updated
// from the operations the property test performs.
type relModel struct {
	friends  map[[2]int]bool // unordered pair, low index first
	requests map[[2]int]bool // from, to
	blocks   map[[2]int]bool // blocker, blocked
}

func pair(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

func (m *relModel) blocked(a, b int) bool { return m.blocks[[2]int{a, b}] || m.blocks[[2]int{b, a}] }

// propUser is one user of the property test with what they have seen.
type propUser struct {
	c      *client
	cursor int64
	// held are the seqs of message events seen and not yet cleaned.
	held []int64
	// heldMsg maps the seqs in held to their message ids.
	heldMsg map[int64]int64
	// seen counts each message id delivered to this user.
	seen map[int64]int
	// replaced are tokens of this user's earlier sessions.
	replaced []string
}

type sentMsg struct {
	from, to int
	body     string
	url      string // of a file message
	content  []byte // of a file message
}

// TestProperty_RandomAPISequences drives random sequences of API calls for
// several users against the real handler, checking every answer against
// API.md's rules (a model of friendships, requests and blocks) and, after
// each step, the invariants: no user sees another's messages, friendship is
// symmetric, a block always holds, cursors never go back, every stored
// message reaches both its users exactly once.
func TestProperty_RandomAPISequences(t *testing.T) {
	steps := 400
	if testing.Short() {
		steps = 120
	}
	// WEBIM_PROP_SEEDS=N explores more seeds than the suite's three.
	seeds, _ := strconv.ParseUint(os.Getenv("WEBIM_PROP_SEEDS"), 10, 64)
	seeds = max(seeds, 3)
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runPropertySeed(t, seed, steps) })
	}
}

func runPropertySeed(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ts := newTestServer(t)
	const n = 5
	users := make([]*propUser, n)
	index := map[string]int{}
	for i := range users {
		users[i] = &propUser{c: ts.quickUser("prop"), seen: map[int64]int{}, heldMsg: map[int64]int64{}}
		index[users[i].c.username] = i
	}
	m := &relModel{friends: map[[2]int]bool{}, requests: map[[2]int]bool{}, blocks: map[[2]int]bool{}}
	sent := map[int64]sentMsg{}
	cids := map[string]int64{} // "sender/cid" -> message id
	var fileMsgs []int64
	cleanedBy := map[int64]map[int]bool{} // message id -> users who cleaned it
	var log []string

	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d after steps:\n  %s\n%s", seed, joinLast(log, 15), fmt.Sprintf(format, args...))
	}
	expect := func(resp *http.Response, data []byte, status int, code string) {
		t.Helper()
		if resp.StatusCode != status {
			fail("%s %s: %d %s, want %d %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, data, status, code)
		}
		if code != "" {
			var eb errorBody
			if json.Unmarshal(data, &eb) != nil || eb.Error.Code != code {
				fail("%s %s: %s, want code %s", resp.Request.Method, resp.Request.URL.Path, data, code)
			}
		}
	}
	name := func(i int) string { return users[i].c.username }

	pollAll := func(u *propUser, me int) {
		t.Helper()
		for range 1000 {
			resp, data := u.c.do("GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=0", u.cursor), nil)
			expect(resp, data, http.StatusOK, "")
			var pr pollResult
			decodeInto(t, data, &pr)
			if len(pr.Events) == 0 {
				if pr.Cursor != u.cursor {
					fail("%s: empty poll moved the cursor from %d to %d", name(me), u.cursor, pr.Cursor)
				}
				return
			}
			last := u.cursor
			for _, e := range pr.Events {
				if e.Seq <= last {
					fail("%s: seq %d after %d (cursor %d)", name(me), e.Seq, last, u.cursor)
				}
				last = e.Seq
				if e.Type != "message" {
					continue
				}
				msg := e.Message
				want, ok := sent[msg.ID]
				switch {
				case !ok:
					fail("%s got message %d that no one was told was stored: %+v", name(me), msg.ID, msg)
				case want.from != me && want.to != me:
					fail("%s got message %d between %s and %s", name(me), msg.ID, name(want.from), name(want.to))
				case msg.From != name(want.from) || msg.To != name(want.to) || msg.Body != want.body:
					fail("%s got message %d as %+v, sent as %+v", name(me), msg.ID, msg, want)
				}
				u.seen[msg.ID]++
				if u.seen[msg.ID] > 1 {
					fail("%s got message %d twice", name(me), msg.ID)
				}
				u.held = append(u.held, e.Seq)
				u.heldMsg[e.Seq] = msg.ID
			}
			if pr.Cursor != last || pr.Cursor < u.cursor {
				fail("%s: cursor %d after events up to %d (was %d)", name(me), pr.Cursor, last, u.cursor)
			}
			u.cursor = pr.Cursor
		}
		fail("%s: poll never caught up", name(me))
	}

	checkRelations := func(i int) {
		t.Helper()
		var f struct{ Friends, Incoming, Outgoing []userJSON }
		users[i].c.mustJSON("GET", "/api/friends", nil, http.StatusOK, &f)
		var wantF, wantIn, wantOut []string
		for j := range users {
			if m.friends[pair(i, j)] {
				wantF = append(wantF, name(j))
			}
			if m.requests[[2]int{j, i}] {
				wantIn = append(wantIn, name(j))
			}
			if m.requests[[2]int{i, j}] {
				wantOut = append(wantOut, name(j))
			}
		}
		names := func(us []userJSON) []string {
			var out []string
			for _, u := range us {
				out = append(out, u.Username)
			}
			return out
		}
		for _, c := range []struct {
			what      string
			got, want []string
		}{{"friends", names(f.Friends), wantF}, {"incoming", names(f.Incoming), wantIn}, {"outgoing", names(f.Outgoing), wantOut}} {
			sort.Strings(c.want)
			if !slices.Equal(c.got, c.want) {
				fail("%s's %s are %v, want %v", name(i), c.what, c.got, c.want)
			}
		}
		var b struct{ Blocked []userJSON }
		users[i].c.mustJSON("GET", "/api/blocks", nil, http.StatusOK, &b)
		var wantB []string
		for j := range users {
			if m.blocks[[2]int{i, j}] {
				wantB = append(wantB, name(j))
			}
		}
		sort.Strings(wantB)
		if got := names(b.Blocked); !slices.Equal(got, wantB) {
			fail("%s's blocks are %v, want %v", name(i), got, wantB)
		}
	}

	for step := range steps {
		a, b := rng.IntN(n), rng.IntN(n)
		if a == b && rng.IntN(8) != 0 {
			b = (a + 1 + rng.IntN(n-1)) % n
		}
		ua := users[a]
		op := rng.IntN(100)
		switch {
		case op < 16: // ask to be friends
			log = append(log, fmt.Sprintf("%d: %s requests %s", step, name(a), name(b)))
			resp, data := ua.c.do("POST", "/api/friends/"+name(b)+"/request", nil)
			switch {
			case a == b:
				expect(resp, data, 400, "cannot_befriend_self")
			case m.blocked(a, b):
				expect(resp, data, 403, "blocked")
			case m.friends[pair(a, b)]:
				expect(resp, data, 409, "already_friends")
			case m.requests[[2]int{a, b}]:
				expect(resp, data, 409, "already_requested")
			case m.requests[[2]int{b, a}]:
				expect(resp, data, 200, "")
				delete(m.requests, [2]int{b, a})
				m.friends[pair(a, b)] = true
			default:
				expect(resp, data, 201, "")
				m.requests[[2]int{a, b}] = true
			}
		case op < 28: // accept b's request
			log = append(log, fmt.Sprintf("%d: %s accepts %s", step, name(a), name(b)))
			resp, data := ua.c.do("POST", "/api/friends/"+name(b)+"/accept", nil)
			switch {
			case m.requests[[2]int{b, a}]:
				expect(resp, data, 200, "")
				delete(m.requests, [2]int{b, a})
				m.friends[pair(a, b)] = true
			case a != b && m.friends[pair(a, b)]:
				expect(resp, data, 409, "already_friends")
			default:
				if resp.StatusCode != 404 && resp.StatusCode != 400 {
					expect(resp, data, 404, "no_such_request")
				}
			}
		case op < 30: // refuse b's request
			log = append(log, fmt.Sprintf("%d: %s refuses %s", step, name(a), name(b)))
			resp, data := ua.c.do("POST", "/api/friends/"+name(b)+"/refuse", nil)
			if m.requests[[2]int{b, a}] {
				expect(resp, data, 200, "")
				delete(m.requests, [2]int{b, a})
			} else if resp.StatusCode != 404 && resp.StatusCode != 400 {
				expect(resp, data, 404, "no_such_request")
			}
		case op < 33: // unfriend or withdraw
			log = append(log, fmt.Sprintf("%d: %s removes %s", step, name(a), name(b)))
			resp, data := ua.c.do("DELETE", "/api/friends/"+name(b), nil)
			switch {
			case a != b && m.friends[pair(a, b)]:
				expect(resp, data, 204, "")
				delete(m.friends, pair(a, b))
			case m.requests[[2]int{a, b}]:
				expect(resp, data, 204, "")
				delete(m.requests, [2]int{a, b})
			default:
				if resp.StatusCode != 404 && resp.StatusCode != 400 {
					expect(resp, data, 404, "no_such_request")
				}
			}
		case op < 36: // block
			log = append(log, fmt.Sprintf("%d: %s blocks %s", step, name(a), name(b)))
			resp, data := ua.c.do("POST", "/api/blocks/"+name(b), nil)
			if a == b {
				expect(resp, data, 400, "cannot_block_self")
				break
			}
			expect(resp, data, 200, "")
			delete(m.friends, pair(a, b))
			delete(m.requests, [2]int{a, b})
			delete(m.requests, [2]int{b, a})
			m.blocks[[2]int{a, b}] = true
		case op < 42: // unblock
			log = append(log, fmt.Sprintf("%d: %s unblocks %s", step, name(a), name(b)))
			resp, data := ua.c.do("DELETE", "/api/blocks/"+name(b), nil)
			if a != b {
				expect(resp, data, 204, "")
				delete(m.blocks, [2]int{a, b})
			}
		case op < 72: // send, sometimes repeating an earlier client_msg_id
			cid := fmt.Sprintf("c%d", step)
			repeat := false
			if rng.IntN(5) == 0 && step > 0 {
				cid = fmt.Sprintf("c%d", rng.IntN(step))
				// A repeat is recognised while a queue holds the message;
				// once both users cleaned it, the id is free again.
				if id, ok := cids[name(a)+"/"+cid]; ok {
					f := sent[id]
					repeat = !(cleanedBy[id][f.from] && cleanedBy[id][f.to])
				}
			}
			body := fmt.Sprintf("step %d from %s <b>'; DROP TABLE messages; --", step, name(a))
			var content []byte
			var resp *http.Response
			var data []byte
			if !repeat && rng.IntN(4) == 0 {
				body, content = fmt.Sprintf("f%d.txt", step), []byte(fmt.Sprintf("file of step %d", step))
				log = append(log, fmt.Sprintf("%d: %s uploads to %s (%s)", step, name(a), name(b), cid))
				req := propUploadRequest(t, ts, ua.c.token, name(b), body, cid, content)
				resp, data = ua.c.roundTrip(req)
			} else {
				log = append(log, fmt.Sprintf("%d: %s sends to %s (%s, repeat %v)", step, name(a), name(b), cid, repeat))
				resp, data = ua.c.do("POST", "/api/messages", map[string]any{"to": name(b), "body": body, "client_msg_id": cid})
			}
			var out struct{ Message Message }
			switch {
			case repeat:
				expect(resp, data, 200, "")
				decodeInto(t, data, &out)
				if out.Message.ID != cids[name(a)+"/"+cid] {
					fail("repeat of %s answered message %d, stored as %d", cid, out.Message.ID, cids[name(a)+"/"+cid])
				}
			case a == b:
				expect(resp, data, 400, "cannot_message_self")
			case m.blocked(a, b):
				expect(resp, data, 403, "blocked")
			case !m.friends[pair(a, b)]:
				expect(resp, data, 403, "not_friends")
			default:
				expect(resp, data, 201, "")
				decodeInto(t, data, &out)
				if _, dup := sent[out.Message.ID]; dup {
					fail("message id %d handed out twice", out.Message.ID)
				}
				sm := sentMsg{from: a, to: b, body: body}
				if content != nil {
					if out.Message.File == nil {
						fail("upload answered %s", data)
					}
					sm.url, sm.content = out.Message.File.URL, content
					fileMsgs = append(fileMsgs, out.Message.ID)
				}
				sent[out.Message.ID] = sm
				cids[name(a)+"/"+cid] = out.Message.ID
			}
		case op < 82: // poll
			log = append(log, fmt.Sprintf("%d: %s polls from %d", step, name(a), ua.cursor))
			pollAll(ua, a)
		case op < 88: // fetch a file: its two users while a queue holds it, nobody else
			if len(fileMsgs) == 0 {
				break
			}
			id := fileMsgs[rng.IntN(len(fileMsgs))]
			f := sent[id]
			log = append(log, fmt.Sprintf("%d: %s fetches file of message %d", step, name(a), id))
			resp, data := ua.c.do("GET", f.url, nil)
			if (a == f.from || a == f.to) && !(cleanedBy[id][f.from] && cleanedBy[id][f.to]) {
				expect(resp, data, 200, "")
				if !bytes.Equal(data, f.content) {
					fail("file of message %d: got %q", id, data)
				}
			} else {
				expect(resp, data, 404, "not_found")
			}
		case op < 92: // clean what was seen
			upto := ua.cursor
			if len(ua.held) > 0 && rng.IntN(2) == 0 {
				upto = ua.held[rng.IntN(len(ua.held))]
			}
			var want int64
			var keep []int64
			for _, s := range ua.held {
				if s <= upto {
					want++
					id := ua.heldMsg[s]
					if cleanedBy[id] == nil {
						cleanedBy[id] = map[int]bool{}
					}
					cleanedBy[id][a] = true
				} else {
					keep = append(keep, s)
				}
			}
			log = append(log, fmt.Sprintf("%d: %s cleans up to %d (%d held)", step, name(a), upto, want))
			var out struct{ Removed int64 }
			ua.c.mustJSON("POST", "/api/clean", map[string]any{"upto": upto}, http.StatusOK, &out)
			if out.Removed != want {
				fail("%s cleaned up to %d: removed %d, want %d", name(a), upto, out.Removed, want)
			}
			ua.held = keep
		case op < 96: // a new login replaces the session
			log = append(log, fmt.Sprintf("%d: %s logs in again", step, name(a)))
			acct, err := ts.app.store.AccountByName(context.Background(), name(a))
			if err != nil {
				t.Fatal(err)
			}
			token, _, _, err := ts.app.sessions.Login(context.Background(), acct.User)
			if err != nil {
				t.Fatal(err)
			}
			ua.replaced = append(ua.replaced, ua.c.token)
			ua.c.token = token
		case op < 98: // an old token stays dead
			if len(ua.replaced) == 0 {
				break
			}
			old := *ua.c
			old.token = ua.replaced[rng.IntN(len(ua.replaced))]
			log = append(log, fmt.Sprintf("%d: %s uses a replaced token", step, name(a)))
			old.mustFail("POST", "/api/messages", map[string]any{"to": name(b), "body": "ghost"}, 401, "session_replaced")
		default: // restart: caches and tails start empty, sessions survive
			log = append(log, fmt.Sprintf("%d: restart", step))
			ts.restart()
		}
		// After every step that could change them: the two users' views
		// agree with the model (so friendship is symmetric and blocks
		// hold); now and then everyone's.
		if op < 42 || op >= 96 {
			checkRelations(a)
			if b != a {
				checkRelations(b)
			}
		}
		if step%50 == 49 {
			for i := range users {
				checkRelations(i)
			}
			ts.checkInvariants()
		}
	}

	// In the end every stored message reached both its users exactly once.
	for i, u := range users {
		pollAll(u, i)
	}
	for id, msg := range sent {
		for _, who := range []int{msg.from, msg.to} {
			if users[who].seen[id] != 1 {
				t.Errorf("seed %d: message %d (%s → %s) reached %s %d times", seed, id, name(msg.from), name(msg.to), name(who), users[who].seen[id])
			}
		}
	}
	ts.checkInvariants()
	t.Logf("seed %d: %d steps, %d messages stored (%d files), %d friendships and %d blocks at the end", seed, steps, len(sent), len(fileMsgs), len(m.friends), len(m.blocks))
}

func joinLast(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := ""
	for i, l := range lines {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}

// propUploadRequest is a multipart upload of content as a file named name.
func propUploadRequest(t testing.TB, ts *testServer, token, to, name, cid string, content []byte) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("to", to)
	mw.WriteField("client_msg_id", cid)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(content)
	mw.Close()
	req, err := http.NewRequest("POST", ts.url("/api/files"), &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
