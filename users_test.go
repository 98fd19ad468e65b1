package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
)

// search returns the usernames /api/users answers for query.
func (c *client) search(query string) []string {
	c.t.Helper()
	resp, data := c.do("GET", "/api/users?"+query, nil)
	checkJSON(c.t, resp, data, http.StatusOK)
	var out struct {
		Users []map[string]any `json:"users"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Users == nil {
		c.t.Fatalf("users answered %s", data)
	}
	names := []string{}
	for _, u := range out.Users {
		if _, ok := u["display_name"].(string); !ok {
			c.t.Fatalf("user without display_name: %s", data)
		}
		if _, ok := u["online"]; ok {
			c.t.Fatalf("the directory tells presence of a stranger: %s", data)
		}
		names = append(names, u["username"].(string))
	}
	return names
}

func TestUsers_Directory(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	var all []string
	for i := range 55 {
		name := fmt.Sprintf("dir%02d", i)
		ts.account(name, fmt.Sprintf("Person %02d", i))
		all = append(all, name)
	}
	ts.account("zz-top", "Ärger Über Alles")
	ts.account("pct", "100% _real_")
	all = append(all, "pct", "zz-top")
	me := ts.user("dirme") // matches "dir" too, but is never listed
	sort.Strings(all)

	check := func(query string, want []string) {
		t.Helper()
		if got := me.search(query); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("q %q: %v, want %v", query, got, want)
		}
	}
	// Empty q: everyone but the caller, by username, default limit 20.
	check("", all[:20])
	check("q=", all[:20])
	check("limit=50", all[:50])
	check("limit=5", all[:5])
	check("q=dir&limit=1000", all[:50]) // at most 50
	// Prefix, case-insensitive, by username or display name.
	check("q=DIR0", all[:10])
	check("q=dir5", []string{"dir50", "dir51", "dir52", "dir53", "dir54"})
	check("q=person+0", all[:10])
	check("q=PERSON%2054", []string{"dir54"})
	check("q="+url.QueryEscape("ärger"), []string{"zz-top"})
	check("q="+url.QueryEscape("ÄRGER üb"), []string{"zz-top"})
	check("q=zz", []string{"zz-top"})
	// Not a substring search, and no wildcards.
	check("q=ir0", []string{})
	check("q=erson", []string{})
	check("q=%25", []string{})
	check("q=_", []string{})
	check("q="+url.QueryEscape("100%"), []string{"pct"})
	check("q="+me.username, []string{})
	check("q=nobody", []string{})

	// A malformed limit is 400.
	for _, q := range []string{"limit=abc", "limit=-1", "limit=1.5"} {
		resp, data := me.do("GET", "/api/users?"+q, nil)
		checkError(t, resp, data, http.StatusBadRequest, "bad_request")
	}
}

// TestUsers_FriendsCarryPresence: API.md's user object has "online" wherever
// presence is known to the caller, that is for the caller's friends, and
// never for anyone else.
func TestUsers_FriendsCarryPresence(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("pres-alice", "pres-bob")
	alice, bob := fr[0], fr[1]
	carol := ts.user("pres-carol")
	bob.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	resp, data := alice.do("GET", "/api/users?q=pres-", nil)
	checkJSON(t, resp, data, http.StatusOK)
	var out struct {
		Users []map[string]any `json:"users"`
	}
	json.Unmarshal(data, &out)
	if len(out.Users) != 2 {
		t.Fatalf("users answered %s", data)
	}
	for _, u := range out.Users {
		online, has := u["online"]
		switch u["username"] {
		case bob.username:
			if online != false {
				t.Fatalf("friend bob (logged out) in the directory: %v", u)
			}
		case carol.username:
			if has {
				t.Fatalf("stranger carol in the directory carries presence: %v", u)
			}
		}
	}
	bob.login()
	resp, data = alice.do("GET", "/api/users?q="+bob.username, nil)
	checkJSON(t, resp, data, http.StatusOK)
	if !strings.Contains(string(data), `"online":true`) {
		t.Fatalf("friend bob (logged in) in the directory: %s", data)
	}
}
