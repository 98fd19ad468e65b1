package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestClientAddr_TrustsForwardedForOnlyFromProxies(t *testing.T) {
	a := &App{cfg: Config{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}}}
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"192.0.2.7:5000", nil, "192.0.2.7"},
		{"192.0.2.7:5000", []string{"198.51.100.1"}, "192.0.2.7"},               // not a proxy: header ignored
		{"10.1.2.3:5000", nil, "10.1.2.3"},                                      // proxy, no header
		{"10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1"},             // proxy: its client
		{"10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},    // left of it is the client's claim
		{"10.1.2.3:5000", []string{"198.51.100.1, 10.9.9.9"}, "198.51.100.1"},   // two proxies deep
		{"10.1.2.3:5000", []string{"198.51.100.1", "10.9.9.9"}, "198.51.100.1"}, // header repeated
		{"10.1.2.3:5000", []string{"garbage"}, "10.1.2.3"},
		{"[::1]:5000", []string{"2001:db8::5"}, "2001:db8::5"},
		{"[::ffff:10.1.2.3]:5000", []string{"198.51.100.1"}, "198.51.100.1"}, // mapped IPv4 peer
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := a.clientAddr(r); got.String() != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

// newLoginLimitServer is newTestServer whose failed logins cost little:
// unknown users are checked against a hash of tiny argon2 parameters.
func newLoginLimitServer(t *testing.T, opts ...func(*Config)) *testServer {
	t.Helper()
	cfg := Config{DBPath: filepath.Join(t.TempDir(), "webim.db"), MaxFileSize: defaultMaxFileSize, MaxQueue: defaultMaxQueue}
	for _, o := range opts {
		o(&cfg)
	}
	app, err := newApp(cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	app.hasher.dummy = cheapPHC("x")
	ts := &testServer{t: t, cfg: cfg, app: app, srv: httptest.NewServer(app.Handler())}
	t.Cleanup(ts.close)
	return ts
}

// cheapPHC is an argon2id hash of password with tiny parameters: valid for
// verify, and fast under -race.
func cheapPHC(password string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(password), salt, 1, 8, 1, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// cheapUser stores a fresh user with a cheap hash and logs it in.
func (ts *testServer) cheapUser(prefix string) *client {
	ts.t.Helper()
	c := &client{ts: ts, t: ts.t, username: uniqueName(prefix), password: "cheap password"}
	if _, err := ts.app.store.CreateUser(context.Background(), c.username, c.username, cheapPHC(c.password)); err != nil {
		ts.t.Fatal(err)
	}
	c.login()
	return c
}

// failLogins makes n failed logins as the client at xff (no header if
// empty) and returns the last status.
func failLogins(ts *testServer, n int, xff string) int {
	ts.t.Helper()
	var status int
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"username":"%s","password":"wrong password"}`, uniqueName("nobody"))
		req, _ := http.NewRequest("POST", ts.url("/api/login"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, _ := ts.anon().roundTrip(req)
		status = resp.StatusCode
	}
	return status
}

// TestRateLimit_ByForwardedClientBehindTrustedProxy: behind a trusted proxy
// each forwarded client has its own failed-login budget; from any other
// peer the header changes nothing.
func TestRateLimit_ByForwardedClientBehindTrustedProxy(t *testing.T) {
	const perAddr = 20 // failed logins per address per minute (API.md)
	trusted := newLoginLimitServer(t, func(c *Config) {
		c.RateLimitExempt = nil
		c.TrustedProxies = loopbackOnly
	})
	if got := failLogins(trusted, perAddr, "203.0.113.5"); got != http.StatusUnauthorized {
		t.Fatalf("failed logins within the budget: %d", got)
	}
	if got := failLogins(trusted, 1, "203.0.113.5"); got != http.StatusTooManyRequests {
		t.Fatalf("one more from the same forwarded client: %d, want 429", got)
	}
	if got := failLogins(trusted, 1, "203.0.113.6"); got != http.StatusUnauthorized {
		t.Fatalf("another forwarded client: %d, want 401", got)
	}

	untrusted := newLoginLimitServer(t, func(c *Config) { c.RateLimitExempt = nil })
	for i := 0; i < perAddr; i++ {
		failLogins(untrusted, 1, fmt.Sprintf("203.0.113.%d", i)) // a claim per request
	}
	if got := failLogins(untrusted, 1, "198.51.100.99"); got != http.StatusTooManyRequests {
		t.Fatalf("an untrusted peer escaped its limit with X-Forwarded-For: %d", got)
	}
}

// TestRateLimitExempt_AppliesToForwardedClient: -rate-limit-exempt names
// client addresses, which behind a trusted proxy are the forwarded ones.
func TestRateLimitExempt_AppliesToForwardedClient(t *testing.T) {
	ts := newLoginLimitServer(t, func(c *Config) {
		c.RateLimitExempt = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
		c.TrustedProxies = loopbackOnly
	})
	if got := failLogins(ts, 25, "203.0.113.9"); got != http.StatusUnauthorized {
		t.Fatalf("exempt forwarded client: %d, want 401", got)
	}
	if got := failLogins(ts, 25, "198.51.100.9"); got != http.StatusTooManyRequests {
		t.Fatalf("other forwarded client: %d, want 429", got)
	}
}
