package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// --- a push service, as a browser's would be -------------------------------

// fakePush is a push service (RFC 8030) on loopback: it records each
// request and answers with what respond says for the n-th one (from 0).
type fakePush struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	got     []pushRequest
	respond func(n int, w http.ResponseWriter)
}

type pushRequest struct {
	path   string
	header http.Header
	body   []byte
	at     time.Time
}

func newFakePush(t *testing.T) *fakePush {
	f := &fakePush{t: t, respond: func(int, http.ResponseWriter) {}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		n := len(f.got)
		f.got = append(f.got, pushRequest{path: r.URL.Path, header: r.Header.Clone(), body: body, at: time.Now()})
		respond := f.respond
		f.mu.Unlock()
		respond(n, w)
		if w.Header().Get("X-Answered") == "" {
			w.WriteHeader(http.StatusCreated)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// answer makes every request get status (and Retry-After, if given).
func answer(status int, retryAfter string) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("X-Answered", "1")
		w.WriteHeader(status)
	}
}

func (f *fakePush) setRespond(r func(int, http.ResponseWriter)) {
	f.mu.Lock()
	f.respond = r
	f.mu.Unlock()
}

func (f *fakePush) requests() []pushRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pushRequest(nil), f.got...)
}

func (f *fakePush) waitRequests(n int) []pushRequest {
	f.t.Helper()
	eventually(f.t, 20*time.Second, fmt.Sprintf("%d push requests", n), func() bool { return len(f.requests()) >= n })
	return f.requests()
}

// browserSub is a push subscription made as a browser makes one: a P-256
// key pair and a 16-byte auth secret, with an endpoint at the fake service.
type browserSub struct {
	priv     *ecdh.PrivateKey
	auth     []byte
	endpoint string
}

func newBrowserSub(t testing.TB, endpoint string) *browserSub {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return &browserSub{priv: priv, auth: auth, endpoint: endpoint}
}

func (b *browserSub) json() map[string]any {
	enc := base64.RawURLEncoding
	return map[string]any{"endpoint": b.endpoint, "keys": map[string]string{
		"p256dh": enc.EncodeToString(b.priv.PublicKey().Bytes()), "auth": enc.EncodeToString(b.auth)}}
}

// decrypt undoes RFC 8291 (aes128gcm, RFC 8188) with the subscription's
// private key, as the browser does; written from the RFCs, apart from the
// library the server encrypts with.
func (b *browserSub) decrypt(t testing.TB, body []byte) []byte {
	t.Helper()
	if len(body) < 21 {
		t.Fatalf("push body of %d bytes has no aes128gcm header", len(body))
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if idlen != 65 || len(body) < 21+idlen {
		t.Fatalf("key id of %d bytes, want the server's 65-byte public key", idlen)
	}
	asPublic, ciphertext := body[21:21+idlen], body[21+idlen:]
	if rs < 18 || len(ciphertext) > int(rs) {
		t.Fatalf("record size %d, ciphertext %d bytes: want a single record", rs, len(ciphertext))
	}
	asKey, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		t.Fatalf("server's ephemeral key: %v", err)
	}
	secret, err := b.priv.ECDH(asKey)
	if err != nil {
		t.Fatal(err)
	}
	prkKey, _ := hkdf.Extract(sha256.New, secret, b.auth)
	keyInfo := append(append([]byte("WebPush: info\x00"), b.priv.PublicKey().Bytes()...), asPublic...)
	ikm, _ := hkdf.Expand(sha256.New, prkKey, string(keyInfo), 32)
	prk, _ := hkdf.Extract(sha256.New, ikm, salt)
	cek, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		t.Fatalf("decrypting the push: %v", err)
	}
	// The last record: data, then the delimiter 2, then zero padding.
	end := len(plain) - 1
	for end >= 0 && plain[end] == 0 {
		end--
	}
	if end < 0 || plain[end] != 2 {
		t.Fatalf("no last-record delimiter in the plaintext")
	}
	return plain[:end]
}

// checkVAPID verifies the request's Authorization (RFC 8292): the key is
// the server's, the ES256 signature holds, aud is the endpoint's origin,
// exp is in the next 24 hours, sub is wantSub.
func checkVAPID(t testing.TB, h http.Header, serverKey, endpoint, wantSub string) {
	t.Helper()
	auth := h.Get("Authorization")
	m := regexp.MustCompile(`^vapid t=([A-Za-z0-9_.-]+), ?k=([A-Za-z0-9_-]+)$`).FindStringSubmatch(auth)
	if m == nil {
		t.Fatalf("Authorization %q is not vapid t=..., k=...", auth)
	}
	if m[2] != serverKey {
		t.Fatalf("k=%s, want the key of /api/push/key %s", m[2], serverKey)
	}
	parts := strings.Split(m[1], ".")
	if len(parts) != 3 {
		t.Fatalf("JWT %q has %d parts", m[1], len(parts))
	}
	enc := base64.RawURLEncoding
	var header struct{ Alg, Typ string }
	hb, _ := enc.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &header); err != nil || header.Alg != "ES256" {
		t.Fatalf("JWT header %s: want alg ES256", hb)
	}
	keyBytes, _ := enc.DecodeString(serverKey)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), keyBytes)
	if err != nil {
		t.Fatalf("server key: %v", err)
	}
	sig, _ := enc.DecodeString(parts[2])
	if len(sig) != 64 {
		t.Fatalf("ES256 signature of %d bytes, want 64", len(sig))
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		t.Fatal("the VAPID JWT's signature does not verify with the server's key")
	}
	var claims struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	cb, _ := enc.DecodeString(parts[1])
	if err := json.Unmarshal(cb, &claims); err != nil {
		t.Fatalf("JWT claims %s: %v", cb, err)
	}
	u, _ := url.Parse(endpoint)
	if claims.Aud != u.Scheme+"://"+u.Host {
		t.Fatalf("aud %q, want %q", claims.Aud, u.Scheme+"://"+u.Host)
	}
	exp := time.Unix(claims.Exp, 0)
	if !exp.After(time.Now()) || exp.After(time.Now().Add(24*time.Hour)) {
		t.Fatalf("exp %v is not within the next 24 hours", exp)
	}
	if claims.Sub != wantSub {
		t.Fatalf("sub %q, want %q", claims.Sub, wantSub)
	}
}

var topicRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func checkPushHeaders(t testing.TB, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{"Ttl": "86400", "Urgency": "high", "Content-Encoding": "aes128gcm"} {
		if got := h.Get(k); got != want {
			t.Fatalf("header %s: %q, want %q", k, got, want)
		}
	}
	if !topicRE.MatchString(h.Get("Topic")) {
		t.Fatalf("Topic %q: want at most 32 characters of URL-safe base64", h.Get("Topic"))
	}
}

// --- the server side ---------------------------------------------------------

// fakeResolver answers names from a map, so SSRF tests need no DNS.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]netip.Addr
}

func (r *fakeResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hosts == nil {
		r.hosts = map[string][]netip.Addr{}
	}
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	r.hosts[host] = as
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if as, ok := r.hosts[host]; ok {
		return as, nil
	}
	return nil, errors.New("no such host")
}

// pushServer starts a server whose pushes may go to 127.0.0.1 (the fake
// service), with a fake resolver for everything else, a coalescing window
// that only the test ends (endWindows), and quick retries.
func pushServer(t *testing.T, opts ...func(*Config)) (*testServer, *fakeResolver) {
	res := &fakeResolver{}
	ts := newTestServerHooked(t, func(a *App) {
		a.push.guard.resolver = res
		a.push.window = time.Hour
		a.push.backoff = time.Millisecond
	}, append([]func(*Config){func(c *Config) { c.PushAllowHosts = []string{"127.0.0.1"} }}, opts...)...)
	return ts, res
}

// pushSettled waits until the pusher has nothing queued, running or
// waiting for a retry.
func (ts *testServer) pushSettled() {
	ts.t.Helper()
	eventually(ts.t, 20*time.Second, "the push queue to settle", func() bool { return ts.app.push.busy.Load() == 0 })
}

// endWindows ends every coalescing window now, as their timers would.
func (ts *testServer) endWindows() {
	p := ts.app.push
	p.mu.Lock()
	type kv struct {
		k  convKey
		st *convState
	}
	var all []kv
	for k, st := range p.convs {
		all = append(all, kv{k, st})
	}
	p.mu.Unlock()
	for _, e := range all {
		p.windowEnded(e.k, e.st)
	}
}

func (ts *testServer) pushKey() string {
	var out struct {
		PublicKey string `json:"public_key"`
	}
	ts.anon().mustJSON("GET", "/api/push/key", nil, http.StatusOK, &out)
	return out.PublicKey
}

func (c *client) subscribe(b *browserSub) {
	c.t.Helper()
	c.mustDo("POST", "/api/push/subscriptions", b.json(), http.StatusCreated)
}

type gotPush struct {
	Type    string  `json:"type"`
	From    string  `json:"from"`
	Group   *int64  `json:"group"`
	ID      int64   `json:"id"`
	Preview *string `json:"preview"`
}

func decodePush(t testing.TB, b *browserSub, r pushRequest) gotPush {
	t.Helper()
	plain := b.decrypt(t, r.body)
	var p gotPush
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("push payload %s: %v", plain, err)
	}
	return p
}

// --- tests -------------------------------------------------------------------

func TestPushKey_MadeOnceAndKept(t *testing.T) {
	ts, _ := pushServer(t)
	key := ts.pushKey()
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil || len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("public key %q: want 65 bytes of an uncompressed P-256 point, base64url", key)
	}
	if _, err := ecdh.P256().NewPublicKey(raw); err != nil {
		t.Fatalf("public key is not on P-256: %v", err)
	}
	ts.restart()
	if again := ts.pushKey(); again != key {
		t.Fatalf("key after a restart %s, want %s", again, key)
	}
	// A second store on the same database (another node) gets the same key.
	{
		other, err := openShared(ts.cfg.DBPath, false, io.Discard, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		k, err := other.PushKey(context.Background())
		if err != nil || k.Public != key {
			t.Fatalf("another opener's key %q (%v), want %s", k.Public, err, key)
		}
	}
}

func TestPushDisabled(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.PushOff = true })
	ts.anon().mustFail("GET", "/api/push/key", nil, http.StatusNotFound, "push_disabled")
	u := ts.user("pd")
	b := newBrowserSub(t, "https://push.example/x")
	u.mustFail("POST", "/api/push/subscriptions", b.json(), http.StatusNotFound, "push_disabled")
	u.mustDo("DELETE", "/api/push/subscriptions", map[string]any{"endpoint": b.endpoint}, http.StatusNoContent)
}

func TestPushSubscription_Refusals(t *testing.T) {
	ts, res := pushServer(t)
	res.set("push.example", "203.0.113.10", "2001:db8::10")
	res.set("private.example", "10.1.2.3")
	res.set("loop6.example", "::1")
	res.set("mapped.example", "::ffff:169.254.169.254")
	res.set("mixed.example", "203.0.113.11", "192.168.0.1")
	res.set("cgnat.example", "100.100.1.1")
	u := ts.user("ssrf")
	good := newBrowserSub(t, "https://push.example/sub/1")

	for _, endpoint := range []string{
		"http://push.example/x", // http only for allowed hosts
		"ftp://push.example/x",
		"push.example/x",
		"https:///x",
		"https://user:pw@push.example/x",
		"https://127.0.0.2/x",
		"https://10.0.0.1/x",
		"https://172.16.5.4/x",
		"https://192.168.1.1/x",
		"https://100.64.0.1/x",
		"https://169.254.169.254/latest/meta-data",
		"https://224.0.0.1/x",
		"https://0.0.0.0/x",
		"https://255.255.255.255/x",
		"https://[::1]/x",
		"https://[::]/x",
		"https://[fe80::1]/x",
		"https://[fc00::1]/x",
		"https://[fd12:3456::1]/x",
		"https://[ff02::1]/x",
		"https://[::ffff:127.0.0.1]/x",
		"https://[::ffff:10.0.0.1]/x",
		"https://[::ffff:a9fe:a9fe]/x",
		"https://[64:ff9b::7f00:1]/x",
		"https://private.example/x",
		"https://loop6.example/x",
		"https://mapped.example/x",
		"https://mixed.example/x",
		"https://cgnat.example/x",
		"https://nowhere.example/x", // does not resolve
		"https://push.example/" + strings.Repeat("a", maxEndpointLen),
	} {
		b := *good
		b.endpoint = endpoint
		u.as(t).mustFail("POST", "/api/push/subscriptions", b.json(), http.StatusBadRequest, "invalid_subscription")
	}

	enc := base64.RawURLEncoding
	p256 := enc.EncodeToString(good.priv.PublicKey().Bytes())
	auth := enc.EncodeToString(good.auth)
	for name, body := range map[string]any{
		"no keys":          map[string]any{"endpoint": good.endpoint},
		"no endpoint":      map[string]any{"keys": map[string]string{"p256dh": p256, "auth": auth}},
		"no auth":          map[string]any{"endpoint": good.endpoint, "keys": map[string]string{"p256dh": p256}},
		"short p256dh":     map[string]any{"endpoint": good.endpoint, "keys": map[string]string{"p256dh": p256[:80], "auth": auth}},
		"long auth":        map[string]any{"endpoint": good.endpoint, "keys": map[string]string{"p256dh": p256, "auth": auth + "AAAA"}},
		"short auth":       map[string]any{"endpoint": good.endpoint, "keys": map[string]string{"p256dh": p256, "auth": auth[:16]}},
		"not a point":      map[string]any{"endpoint": good.endpoint, "keys": map[string]string{"p256dh": enc.EncodeToString(append([]byte{4}, make([]byte, 64)...)), "auth": auth}},
		"not base64":       map[string]any{"endpoint": good.endpoint, "keys": map[string]string{"p256dh": "!!!" + p256[3:], "auth": auth}},
		"endpoint number":  map[string]any{"endpoint": 7, "keys": map[string]string{"p256dh": p256, "auth": auth}},
		"keys is a string": map[string]any{"endpoint": good.endpoint, "keys": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			u.as(t).mustFail("POST", "/api/push/subscriptions", body, http.StatusBadRequest, "invalid_subscription")
		})
	}
	u.mustFail("POST", "/api/push/subscriptions", `{"endpoint":`, http.StatusBadRequest, "bad_request")
	if subs, _ := ts.app.store.PushSubscriptions(context.Background(), ts.liveUserID(u)); len(subs) != 0 {
		t.Fatalf("refused subscriptions were stored: %v", subs)
	}

	// What is allowed: a public name, a public address, an allowed host.
	u.subscribe(good)
	u.mustDo("POST", "/api/push/subscriptions", good.json(), http.StatusOK) // already had it
	for _, e := range []string{"https://203.0.113.9/x", "https://[2001:db8::9]/x", "http://127.0.0.1:9/x"} {
		b := *good
		b.endpoint = e
		u.subscribe(&b)
	}
	anon := ts.anon()
	anon.mustFail("POST", "/api/push/subscriptions", good.json(), http.StatusUnauthorized, "unauthorized")
}

func TestPushSubscription_TenPerUserAndDelete(t *testing.T) {
	ts, res := pushServer(t)
	res.set("push.example", "203.0.113.10")
	u := ts.user("ten")
	id := ts.liveUserID(u)
	var subs []*browserSub
	for i := range 11 {
		b := newBrowserSub(t, fmt.Sprintf("https://push.example/sub/%d", i))
		u.subscribe(b)
		subs = append(subs, b)
	}
	stored, err := ts.app.store.PushSubscriptions(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 10 || stored[0].Endpoint != subs[1].endpoint || stored[9].Endpoint != subs[10].endpoint {
		t.Fatalf("after 11 subscriptions: %d stored, first %q: want 10 with the oldest gone", len(stored), stored[0].Endpoint)
	}
	u.mustDo("DELETE", "/api/push/subscriptions", map[string]any{"endpoint": subs[5].endpoint}, http.StatusNoContent)
	u.mustDo("DELETE", "/api/push/subscriptions", map[string]any{"endpoint": "https://push.example/unknown"}, http.StatusNoContent)
	u.mustFail("DELETE", "/api/push/subscriptions", map[string]any{}, http.StatusBadRequest, "bad_request")
	// Another user cannot delete it, but may take the endpoint over (the
	// browser now signs in as them).
	v := ts.user("ten")
	v.mustDo("DELETE", "/api/push/subscriptions", map[string]any{"endpoint": subs[6].endpoint}, http.StatusNoContent)
	if stored, _ = ts.app.store.PushSubscriptions(context.Background(), id); len(stored) != 9 {
		t.Fatalf("%d subscriptions after deleting one, want 9", len(stored))
	}
	v.subscribe(subs[7])
	if stored, _ = ts.app.store.PushSubscriptions(context.Background(), id); len(stored) != 8 {
		t.Fatalf("%d subscriptions after another user took one over, want 8", len(stored))
	}
	// Logout and a new login keep them; restarts too.
	u.mustDo("POST", "/api/logout", nil, http.StatusNoContent)
	u.login()
	ts.restart()
	if stored, _ = ts.app.store.PushSubscriptions(context.Background(), id); len(stored) != 8 {
		t.Fatalf("%d subscriptions after logout, login and restart, want 8", len(stored))
	}
}

func TestPushDelivery(t *testing.T) {
	ts, _ := pushServer(t, func(c *Config) { c.PushSubject = "mailto:ops@example.org" })
	fp := newFakePush(t)
	key := ts.pushKey()
	cs := ts.friends("pa", "pb")
	alice, bob := cs[0], cs[1]
	sub := newBrowserSub(t, fp.srv.URL+"/sub/bob")
	bob.subscribe(sub)

	body := strings.Repeat("é", 99) + "😀" + "after the hundredth"
	m := alice.send(bob, body)
	reqs := fp.waitRequests(1)
	r := reqs[0]
	checkVAPID(t, r.header, key, sub.endpoint, "mailto:ops@example.org")
	checkPushHeaders(t, r.header)
	p := decodePush(t, sub, r)
	if p.Type != "message" || p.From != alice.username || p.ID != m.ID || p.Group != nil {
		t.Fatalf("payload %+v, want a message from %s with id %d", p, alice.username, m.ID)
	}
	if p.Preview == nil || *p.Preview != strings.Repeat("é", 99)+"😀" {
		t.Fatalf("preview %v: want the body's first 100 code points", p.Preview)
	}
	// The sender has no subscription; nor would their own copy push them.
	ts.pushSettled()
	if n := len(fp.requests()); n != 1 {
		t.Fatalf("%d pushes, want 1", n)
	}
	// Another conversation of bob's has its own topic and window.
	carol := ts.user("pc")
	befriend(carol, bob)
	carol.send(bob, "hi")
	reqs = fp.waitRequests(2)
	if reqs[1].header.Get("Topic") == r.header.Get("Topic") {
		t.Fatal("two conversations share a Topic")
	}
	ts.pushSettled()
	var metrics strings.Builder
	ts.app.push.writeMetrics(&metrics)
	if metricValue(t, metrics.String(), "webim_push_sent_total") != 2 || metricValue(t, metrics.String(), "webim_push_queue_length") != 0 {
		t.Fatalf("metrics:\n%s", metrics.String())
	}
	resp, data := ts.anon().do("GET", "/metrics", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(data), "webim_push_queue_oldest_seconds") {
		t.Fatal("/metrics has no push queue figures")
	}
}

func TestPushDefaultSubjectAndNoPreview(t *testing.T) {
	ts, _ := pushServer(t, func(c *Config) { c.PushNoPreview = true })
	fp := newFakePush(t)
	cs := ts.friends("na", "nb")
	sub := newBrowserSub(t, fp.srv.URL+"/sub")
	cs[1].subscribe(sub)
	cs[0].send(cs[1], "secret")
	r := fp.waitRequests(1)[0]
	// The test server is reached as 127.0.0.1:port.
	checkVAPID(t, r.header, ts.pushKey(), sub.endpoint, "mailto:admin@127.0.0.1")
	if p := decodePush(t, sub, r); p.Preview != nil {
		t.Fatalf("preview %q with -push-preview=false", *p.Preview)
	}
}

func TestPushNotWhilePollOpen(t *testing.T) {
	ts, _ := pushServer(t)
	fp := newFakePush(t)
	cs := ts.friends("wa", "wb")
	alice, bob := cs[0], cs[1]
	sub := newBrowserSub(t, fp.srv.URL+"/sub")
	bob.subscribe(sub)
	cursor := bob.poll(0, 0).Cursor
	ch := bob.pollAsync(cursor, 30)
	ts.waitPolling(1)
	first := alice.send(bob, "you are looking")
	if p := receive(t, ch, "bob's poll"); len(p.Events) == 0 || p.Events[0].Message.ID != first.ID {
		t.Fatalf("poll answered %+v", p)
	}
	ts.pushSettled()
	if n := len(fp.requests()); n != 0 {
		t.Fatalf("%d pushes for a message whose recipient had a poll open", n)
	}
	// With no poll open, the next one pushes (and the first one did not
	// open a coalescing window).
	second := alice.send(bob, "now you are not")
	r := fp.waitRequests(1)[0]
	ts.pushSettled()
	if n := len(fp.requests()); n != 1 {
		t.Fatalf("%d pushes, want 1", n)
	}
	if p := decodePush(t, sub, r); p.ID != second.ID {
		t.Fatalf("push of %d, want %d", p.ID, second.ID)
	}
}

func TestPushCoalescing(t *testing.T) {
	ts, _ := pushServer(t)
	fp := newFakePush(t)
	cs := ts.friends("ca", "cb")
	alice, bob := cs[0], cs[1]
	sub := newBrowserSub(t, fp.srv.URL+"/sub")
	bob.subscribe(sub)
	m1 := alice.send(bob, "one")
	fp.waitRequests(1)
	alice.send(bob, "two")
	m3 := alice.send(bob, "three")
	ts.pushSettled()
	if n := len(fp.requests()); n != 1 {
		t.Fatalf("%d pushes inside one window, want 1", n)
	}
	ts.endWindows()
	reqs := fp.waitRequests(2)
	ts.pushSettled()
	if len(fp.requests()) != 2 {
		t.Fatalf("%d pushes, want the first and one folded", len(fp.requests()))
	}
	if p := decodePush(t, sub, reqs[0]); p.ID != m1.ID {
		t.Fatalf("first push is of %d, want %d", p.ID, m1.ID)
	}
	if p := decodePush(t, sub, reqs[1]); p.ID != m3.ID || *p.Preview != "three" {
		t.Fatalf("folded push is of %d, want the newest, %d", p.ID, m3.ID)
	}
	if reqs[0].header.Get("Topic") != reqs[1].header.Get("Topic") {
		t.Fatal("one conversation, two topics")
	}
	// A window with nothing folded ends the conversation's state; the
	// next message pushes at once.
	ts.endWindows()
	ts.endWindows()
	m4 := alice.send(bob, "four")
	if p := decodePush(t, sub, fp.waitRequests(3)[2]); p.ID != m4.ID {
		t.Fatalf("push of %d, want %d", p.ID, m4.ID)
	}
}

func TestPushGoneSubscriptionIsDeleted(t *testing.T) {
	for _, status := range []int{http.StatusGone, http.StatusNotFound} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			ts, _ := pushServer(t)
			fp := newFakePush(t)
			fp.setRespond(answer(status, ""))
			cs := ts.friends("ga", "gb")
			cs[1].as(t).subscribe(newBrowserSub(t, fp.srv.URL+"/gone"))
			keep := newBrowserSub(t, "http://127.0.0.1:9/other") // nothing listens: kept
			cs[1].as(t).subscribe(keep)
			cs[0].as(t).send(cs[1], "hello")
			ts.pushSettled()
			subs, err := ts.app.store.PushSubscriptions(context.Background(), ts.liveUserID(cs[1]))
			if err != nil || len(subs) != 1 || subs[0].Endpoint != keep.endpoint {
				t.Fatalf("subscriptions after %d: %+v (%v), want only the other one", status, subs, err)
			}
			if len(fp.requests()) != 1 {
				t.Fatalf("%d requests, want 1 (no retry of a gone subscription)", len(fp.requests()))
			}
		})
	}
}

func TestPushRetries(t *testing.T) {
	ts, _ := pushServer(t)
	fp := newFakePush(t)
	// 429 asking for a second, then 503, then accepted.
	fp.setRespond(func(n int, w http.ResponseWriter) {
		switch n {
		case 0:
			answer(http.StatusTooManyRequests, "1")(n, w)
		case 1:
			answer(http.StatusServiceUnavailable, "")(n, w)
		}
	})
	cs := ts.friends("ra", "rb")
	sub := newBrowserSub(t, fp.srv.URL+"/busy")
	cs[1].subscribe(sub)
	m := cs[0].send(cs[1], "again")
	reqs := fp.waitRequests(3)
	ts.pushSettled()
	if len(fp.requests()) != 3 {
		t.Fatalf("%d requests, want 3", len(fp.requests()))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < time.Second {
		t.Fatalf("retried after %v, before the Retry-After of 1 s", gap)
	}
	for _, r := range reqs {
		if p := decodePush(t, sub, r); p.ID != m.ID {
			t.Fatalf("retry carries %d, want %d", p.ID, m.ID)
		}
	}
	if ts.app.push.sent.Load() != 1 {
		t.Fatalf("sent %d, want 1", ts.app.push.sent.Load())
	}

	// Always failing: tried pushAttempts times, then dropped; the
	// subscription stays.
	fp.setRespond(answer(http.StatusInternalServerError, ""))
	before := len(fp.requests())
	carol := ts.user("rc")
	befriend(carol, cs[1])
	carol.send(cs[1], "in vain")
	ts.pushSettled()
	if n := len(fp.requests()) - before; n != pushAttempts {
		t.Fatalf("%d tries of an always-failing push, want %d", n, pushAttempts)
	}
	if ts.app.push.failed.Load() != 1 {
		t.Fatalf("failed %d, want 1", ts.app.push.failed.Load())
	}
	if subs, _ := ts.app.store.PushSubscriptions(context.Background(), ts.liveUserID(cs[1])); len(subs) != 1 {
		t.Fatal("a failing (not gone) subscription was deleted")
	}
}

func TestPushOutageDoesNotAffectSends(t *testing.T) {
	ts, _ := pushServer(t)
	release := make(chan struct{})
	hung := newFakePush(t)
	hung.setRespond(func(int, http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) })
	cs := ts.friends("oa", "ob")
	alice, bob := cs[0], cs[1]
	bob.subscribe(newBrowserSub(t, hung.srv.URL+"/hangs"))
	bob.subscribe(newBrowserSub(t, "http://127.0.0.1:9/refused"))
	// Every send answers although every push hangs (one per conversation
	// window, so many conversations to occupy every worker).
	for i := range 3 * pushWorkers {
		c := ts.user("oc")
		befriend(c, bob)
		c.send(bob, fmt.Sprint("hello ", i))
	}
	for i := range 20 {
		alice.send(bob, fmt.Sprint("more ", i))
	}
	if got := len(bob.messages()); got != 20+3*pushWorkers {
		t.Fatalf("bob has %d messages", got)
	}
}

func TestPushRefusedAtSendTime(t *testing.T) {
	ts, res := pushServer(t)
	fp := newFakePush(t)
	port := fp.srv.Listener.Addr().(*net.TCPAddr).Port
	// Public when stored, then the name moves to loopback, where the fake
	// service is: the send must not reach it.
	res.set("rebind.example", "203.0.113.50")
	cs := ts.friends("ba", "bb")
	cs[1].subscribe(newBrowserSub(t, fmt.Sprintf("https://rebind.example:%d/x", port)))
	res.set("rebind.example", "127.0.0.1")
	cs[0].send(cs[1], "to loopback?")
	ts.pushSettled()
	if n := len(fp.requests()); n != 0 {
		t.Fatalf("the push service on loopback got %d requests through a rebound name", n)
	}
	if ts.app.push.failed.Load() != 1 {
		t.Fatalf("failed %d, want 1", ts.app.push.failed.Load())
	}

	// The dialer itself refuses a non-public address, whatever asked.
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", port), "[::1]:443", "[::ffff:127.0.0.1]:443", "rebind.example:443"} {
		if _, err := (&endpointGuard{allow: map[string]bool{}, resolver: res}).dialContext(context.Background(), "tcp", addr); !errors.Is(err, errEndpointRefused) {
			t.Fatalf("dialling %s: %v, want a refusal", addr, err)
		}
	}
}

func TestPushRedirectNotFollowed(t *testing.T) {
	ts, _ := pushServer(t)
	target := newFakePush(t)
	fp := newFakePush(t)
	fp.setRespond(func(_ int, w http.ResponseWriter) {
		w.Header().Set("Location", target.srv.URL+"/elsewhere")
		answer(http.StatusTemporaryRedirect, "")(0, w)
	})
	cs := ts.friends("da", "db")
	cs[1].subscribe(newBrowserSub(t, fp.srv.URL+"/redirects"))
	cs[0].send(cs[1], "follow me")
	ts.pushSettled()
	if len(fp.requests()) != 1 || len(target.requests()) != 0 {
		t.Fatalf("redirect: %d requests, %d at its target; want 1 and 0", len(fp.requests()), len(target.requests()))
	}
}

func TestIsPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "203.0.113.1": true, "2001:4860:4860::8888": true, "::ffff:8.8.8.8": true,
		"127.0.0.1": false, "10.0.0.1": false, "172.31.255.255": false, "192.168.0.1": false,
		"100.64.0.1": false, "100.127.255.255": false, "169.254.1.1": false, "224.0.0.251": false,
		"0.0.0.0": false, "0.1.2.3": false, "255.255.255.255": false, "::": false, "::1": false,
		"fe80::1": false, "fc00::1": false, "fd00::1": false, "ff02::1": false, "ff05::1": false,
		"::ffff:127.0.0.1": false, "::ffff:192.168.1.1": false, "::127.0.0.1": false, "64:ff9b::a00:1": false,
		"2002:7f00:1::": false,
	} {
		if got := isPublicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("isPublicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "junk": 0, "-1": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// A group message pushes each member with no poll open, but not its sender,
// with the group in the payload and a topic of the group's own.
func TestPushGroupMessage(t *testing.T) {
	ts, _ := pushServer(t)
	fp := newFakePush(t)
	cs := ts.friends("pga", "pgb", "pgc")
	alice, bob, carol := cs[0], cs[1], cs[2]
	bobSub, carolSub, aliceSub := newBrowserSub(t, fp.srv.URL+"/sub/bob"), newBrowserSub(t, fp.srv.URL+"/sub/carol"), newBrowserSub(t, fp.srv.URL+"/sub/alice")
	bob.subscribe(bobSub)
	carol.subscribe(carolSub)
	alice.subscribe(aliceSub)
	var created struct {
		Group struct {
			ID int64 `json:"id"`
		} `json:"group"`
	}
	alice.mustJSON("POST", "/api/groups", map[string]any{"name": "Push crew", "members": []string{bob.username, carol.username}}, http.StatusCreated, &created)
	var sent struct{ Message Message }
	alice.mustJSON("POST", "/api/messages", map[string]any{"group": created.Group.ID, "body": "to the group"}, http.StatusCreated, &sent)
	reqs := fp.waitRequests(2)
	ts.pushSettled()
	if n := len(fp.requests()); n != 2 {
		t.Fatalf("%d pushes, want one to each of the two other members", n)
	}
	got := map[string]bool{}
	for _, r := range reqs {
		var sub *browserSub
		switch r.path {
		case "/sub/bob":
			sub = bobSub
		case "/sub/carol":
			sub = carolSub
		default:
			t.Fatalf("a push went to %s", r.path)
		}
		p := decodePush(t, sub, r)
		if p.Group == nil || *p.Group != created.Group.ID || p.ID != sent.Message.ID || p.From != alice.username {
			t.Fatalf("group push payload %+v", p)
		}
		got[r.path] = true
	}
	if !got["/sub/bob"] || !got["/sub/carol"] {
		t.Fatalf("pushes went to %v", got)
	}
}
