package main

// Real-browser tests of the page (issue 4): Debian's Chromium, driven with
// chromedp, against the real server on a loopback port. One browser serves
// every test; each user gets an isolated browser context (its own cookies).
//
//	go test -race -run Browser ./...
//
// Without Chromium the tests skip, unless CI is set: then they fail.
// WEBIM_SCREENSHOTS=DIR writes screenshots into DIR: the chat screen in light
// and dark mode (chat-light.png, chat-dark.png), at phone width
// (chat-phone.png, list-phone-dark.png), sign-in, search, a friend request,
// files and the block list. Failure screenshots go to each test's ArtifactDir
// (kept with `go test -artifacts -outputdir DIR`).
//
// The tests also fail on any uncaught exception or Content-Security-Policy
// error in a page.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// browserWait bounds every single browser step; the flows themselves take
// well under a second each when things work.
const browserWait = 20 * time.Second

// findChromium returns the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// tap sits in front of the server: it counts the /api/poll requests of each
// session cookie (so a test sees that a page stopped polling), records the
// client_msg_id of each send, and can play a broken network.
type tap struct {
	mu    sync.Mutex
	count map[string]int
	cids  []string // client_msg_id of every POST /api/messages, in order

	down     atomic.Bool  // every /api/ request loses its connection
	loseSend atomic.Int32 // this many sends are stored, but their answer is lost

	slowUploads atomic.Bool // the server reads upload bodies slowly
}

func (c *tap) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.down.Load() && strings.HasPrefix(r.URL.Path, "/api/") {
			dropConnection(w)
			return
		}
		if r.URL.Path == "/api/poll" {
			if ck, err := r.Cookie("webim_session"); err == nil {
				c.mu.Lock()
				c.count[ck.Value]++
				c.mu.Unlock()
			}
		}
		if r.Method == http.MethodPost && r.URL.Path == "/api/files" && c.slowUploads.Load() {
			r.Body = slowReader{r.Body}
		}
		if r.Method == http.MethodPost && r.URL.Path == "/api/messages" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				ClientMsgID string `json:"client_msg_id"`
			}
			_ = json.Unmarshal(body, &m)
			c.mu.Lock()
			c.cids = append(c.cids, m.ClientMsgID)
			c.mu.Unlock()
			if c.loseSend.Add(-1) >= 0 {
				// The server stores the message; the answer never arrives.
				next.ServeHTTP(httptest.NewRecorder(), r)
				dropConnection(w)
				return
			}
			c.loseSend.Store(0)
		}
		next.ServeHTTP(w, r)
	})
}

// slowReader reads at about 3 MiB/s, like a slow uplink.
type slowReader struct{ io.ReadCloser }

func (s slowReader) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	time.Sleep(time.Duration(n) * time.Second / (3 << 20))
	return n, err
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(fmt.Sprintf("hijacking the connection: %v", err))
	}
	conn.Close()
}

func (c *tap) polls(token string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[token]
}

// sends returns how many POST /api/messages carried this client_msg_id.
func (c *tap) sends(cid string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, x := range c.cids {
		if x == cid {
			n++
		}
	}
	return n
}

// lastCID returns the client_msg_id of the latest send.
func (c *tap) lastCID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cids) == 0 {
		return ""
	}
	return c.cids[len(c.cids)-1]
}

// browserEnv is the server and the browser that the browser tests share.
type browserEnv struct {
	url     string
	srv     *httptest.Server
	browser context.Context // a chromedp context with a running browser
	tap     *tap
	shots   string // WEBIM_SCREENSHOTS, or ""
	names   atomic.Int64
}

// startBrowserEnv starts the real server (its Config changed by configure) on a
// loopback port and one headless Chromium, both stopped when t ends.
func startBrowserEnv(t *testing.T, configure ...func(*Config)) *browserEnv {
	t.Helper()
	chrome := findChromium()
	if chrome == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, google-chrome): CI must install Debian's chromium package")
		}
		t.Skip("SKIPPING BROWSER TESTS: no Chromium found. Install it (apt-get install chromium) to run them; in CI they fail instead.")
	}

	cfg := Config{
		DBPath:      filepath.Join(t.TempDir(), "webim.db"),
		MaxFileSize: 8 << 20,
		MaxQueue:    10_000,
		RateLimitExempt: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("::1/128"),
		},
	}
	for _, o := range configure {
		o(&cfg)
	}
	app, err := newApp(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	tp := &tap{count: map[string]int{}}
	srv := httptest.NewServer(tp.wrap(app.Handler()))
	t.Cleanup(func() {
		// Open long-polls answer at once, so Close does not wait for them.
		app.BeginShutdown()
		srv.CloseClientConnections()
		srv.Close()
		if err := app.Close(); err != nil {
			t.Errorf("closing the app: %v", err)
		}
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("starting Chromium (%s): %v", chrome, err)
	}
	return &browserEnv{url: srv.URL, srv: srv, browser: browser, tap: tp, shots: os.Getenv("WEBIM_SCREENSHOTS")}
}

// name returns a fresh username with the given prefix.
func (env *browserEnv) name(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, env.names.Add(1))
}

// tab is one browser window in its own browser context: one signed-in person.
type tab struct {
	t    *testing.T
	env  *browserEnv
	ctx  context.Context
	who  string
	user string // username once signed in

	mu       sync.Mutex
	problems []string // exceptions and CSP errors seen in the page
}

// newTab opens the page in a new, isolated browser context. On failure of t
// it saves a screenshot of the tab into t's artifact directory.
// Any uncaught exception or Content-Security-Policy violation in the page
// fails the test.
func (env *browserEnv) newTab(t *testing.T, who string) *tab {
	t.Helper()
	return env.newTabWith(t, who, "")
}

// newTabWith is newTab with a script that runs before the page's own.
func (env *browserEnv) newTabWith(t *testing.T, who, initScript string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(env.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens the tab with no deadline
		t.Fatalf("%s: opening a tab: %v", who, err)
	}
	tb := &tab{t: t, env: env, ctx: ctx, who: who}
	tb.watchProblems()
	failDir := t.ArtifactDir() // before the cleanup below, so it is removed after it
	t.Cleanup(func() {
		tb.mu.Lock()
		for _, p := range tb.problems {
			t.Errorf("%s: %s", who, p)
		}
		tb.mu.Unlock()
		if t.Failed() {
			tb.saveFailureScreenshot(failDir)
		}
	})
	if initScript != "" {
		if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
			page.AddScriptToEvaluateOnNewDocumentParams{Source: initScript}); err != nil {
			t.Fatalf("%s: adding the start script: %v", who, err)
		}
	}
	tb.do(chromedp.Navigate(env.url), chromedp.WaitVisible(chromedp.CSS(`#auth-screen`)))
	return tb
}

// watchProblems records uncaught exceptions and security (CSP) errors.
func (tb *tab) watchProblems() {
	exceptions := chromedp.Events(tb.ctx, runtime.ExceptionThrown)
	entries := chromedp.Events(tb.ctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			tb.problem(fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
		}
	}()
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			e := ev.Entry
			if e.Level == cdplog.EntryLevelError && (e.Source == cdplog.EntrySourceSecurity || e.Source == cdplog.EntrySourceJavascript) {
				tb.problem(fmt.Sprintf("console %s error: %s", e.Source, e.Text))
			}
		}
	}()
}

func (tb *tab) problem(p string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.problems = append(tb.problems, p)
}

func (tb *tab) saveFailureScreenshot(dir string) {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Logf("%s: no failure screenshot: %v", tb.who, err)
		return
	}
	path := filepath.Join(dir, "failure-"+tb.who+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.t.Logf("%s: writing failure screenshot: %v", tb.who, err)
		return
	}
	tb.t.Logf("%s: failure screenshot saved to %s", tb.who, path)
}

// do runs browser steps with a deadline, failing the test on error.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", tb.who, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("%s: evaluating %s: %v", tb.who, expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is truthy.
func (tb *tab) waitFor(what, expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		tb.t.Fatalf("%s: waiting until %s: %v", tb.who, what, err)
	}
}

// text returns the trimmed text of the first element matching a CSS selector.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`(document.querySelector(%s)?.textContent ?? "").trim()`, strconv.Quote(sel)))
}

// jsq quotes s as a JavaScript string literal.
func jsq(s string) string { return strconv.Quote(s) }

// signUp creates an account from the sign-up form and waits for the chat.
func (tb *tab) signUp(username, displayName string) {
	tb.t.Helper()
	tb.user = username
	tb.do(
		chromedp.Click(chromedp.CSS(`#show-signup`)),
		chromedp.WaitVisible(chromedp.CSS(`#signup-username`)),
		chromedp.SendKeys(chromedp.CSS(`#signup-username`), username),
		chromedp.SendKeys(chromedp.CSS(`#signup-password`), testPassword),
		chromedp.SendKeys(chromedp.CSS(`#signup-display-name`), displayName),
		chromedp.Click(chromedp.CSS(`#signup-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#app-screen`)),
	)
	tb.waitFor("my name is shown", fmt.Sprintf(`document.querySelector('#me-username').textContent === %s`, jsq("@"+username)))
}

// logIn signs in from the log-in form and waits for the chat.
func (tb *tab) logIn(username string) {
	tb.t.Helper()
	tb.user = username
	tb.do(
		chromedp.WaitVisible(chromedp.CSS(`#login-username`)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#login-username').value = ''`),
		chromedp.SendKeys(chromedp.CSS(`#login-username`), username),
		chromedp.SendKeys(chromedp.CSS(`#login-password`), testPassword),
		chromedp.Click(chromedp.CSS(`#login-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#app-screen`)),
	)
	tb.waitFor("my name is shown", fmt.Sprintf(`document.querySelector('#me-username').textContent === %s`, jsq("@"+username)))
}

// logOut uses the account menu.
func (tb *tab) logOut() {
	tb.t.Helper()
	tb.do(
		chromedp.Click(chromedp.CSS(`#account-menu-btn`)),
		chromedp.WaitVisible(chromedp.CSS(`#logout-btn`)),
		chromedp.Click(chromedp.CSS(`#logout-btn`)),
		chromedp.WaitVisible(chromedp.CSS(`#auth-screen`)),
	)
}

func friendSel(username string) string {
	return fmt.Sprintf(`#friend-list li[data-username=%q]`, username)
}

// waitPresence waits until the friend list shows username online or offline.
func (tb *tab) waitPresence(username string, online bool) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%s shows as online=%v", username, online),
		fmt.Sprintf(`document.querySelector(%s)?.querySelector('.presence-dot')?.dataset.online === %s`,
			jsq(friendSel(username)), jsq(strconv.FormatBool(online))))
}

// befriendInBrowser makes a and b friends through the page: a searches, asks, b accepts.
// With shots, it writes screenshots of the search and the request (WEBIM_SCREENSHOTS).
func befriendInBrowser(a, b *tab, shots bool) {
	a.t.Helper()
	a.do(chromedp.SendKeys(chromedp.CSS(`#user-search`), b.user))
	add := fmt.Sprintf(`#search-results li[data-username=%q] [data-testid="add-friend"]`, b.user)
	a.do(chromedp.WaitVisible(chromedp.CSS(add)))
	if shots {
		a.screenshot("search")
	}
	a.do(chromedp.Click(chromedp.CSS(add)))
	a.waitFor("the request shows as pending",
		fmt.Sprintf(`!!document.querySelector('#outgoing-list li[data-username=%q]')`, b.user))
	accept := fmt.Sprintf(`#incoming-list li[data-username=%q] [data-testid="accept"]`, a.user)
	b.do(chromedp.WaitVisible(chromedp.CSS(accept)))
	if shots {
		b.screenshot("request")
	}
	b.do(chromedp.Click(chromedp.CSS(accept)))
	b.do(chromedp.WaitVisible(chromedp.CSS(friendSel(a.user))))
	a.do(chromedp.WaitVisible(chromedp.CSS(friendSel(b.user))))
	a.waitFor("the pending request is gone",
		fmt.Sprintf(`!document.querySelector('#outgoing-list li[data-username=%q]')`, b.user))
	// Clear the search box so the sidebar shows the lists again.
	a.do(chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#user-search'); s.value = ''; s.dispatchEvent(new Event('input')); })()`))
}

// open opens the conversation with username.
func (tb *tab) open(username string) {
	tb.t.Helper()
	tb.do(
		chromedp.Click(chromedp.CSS(friendSel(username)+` .friend-btn`)),
		chromedp.WaitVisible(chromedp.CSS(`#conversation`)),
	)
	tb.waitFor("the conversation is open", fmt.Sprintf(`document.querySelector('#conv-title').textContent !== '' && document.querySelector('#friend-list li[data-username=%q] .friend-btn').getAttribute('aria-current') === 'true'`, username))
}

// send types text into the composer and presses Enter.
func (tb *tab) send(text string) {
	tb.t.Helper()
	tb.do(chromedp.SendKeys(chromedp.CSS(`#message-input`), text), pressEnter)
}

// pressEnter presses Enter as a person does: a key-down whose default the
// page may cancel, with no separate character event.
var pressEnter = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		})
		if err != nil {
			return err
		}
	}
	return nil
})

// messageBodies returns the texts of the message bodies shown, oldest first.
func (tb *tab) messageBodies() []string {
	tb.t.Helper()
	return eval[[]string](tb, `[...document.querySelectorAll('#message-list [data-testid="message-body"]')].map(e => e.textContent)`)
}

// waitMessage waits until a message with exactly this text is shown and, when
// sent is true, marked as sent.
func (tb *tab) waitMessage(text string, sent bool) {
	tb.t.Helper()
	cond := fmt.Sprintf(`[...document.querySelectorAll('#message-list [data-testid="message"]')].some(m => m.querySelector('[data-testid="message-body"]')?.textContent === %s%s)`,
		jsq(text), map[bool]string{true: ` && m.dataset.status === 'sent'`, false: ``}[sent])
	tb.waitFor(fmt.Sprintf("message %q is shown", text), cond)
}

// setup signs up two users in separate browser contexts and makes them friends.
func (env *browserEnv) pair(t *testing.T) (alice, bob *tab) {
	return env.pairShots(t, false)
}

func (env *browserEnv) pairShots(t *testing.T, shots bool) (alice, bob *tab) {
	t.Helper()
	alice = env.newTab(t, "alice")
	bob = env.newTab(t, "bob")
	alice.signUp(env.name("alice"), "Alice Liddell")
	bob.signUp(env.name("bob"), "Bob Builder")
	befriendInBrowser(alice, bob, shots)
	return alice, bob
}

// screenshot writes a PNG of the tab into WEBIM_SCREENSHOTS, when set.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	if tb.env.shots == "" {
		return
	}
	if err := os.MkdirAll(tb.env.shots, 0o755); err != nil {
		tb.t.Fatalf("WEBIM_SCREENSHOTS: %v", err)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	// A passing toast would hide part of the screen.
	tb.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#toast').hidden = true`))
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("%s: screenshot: %v", tb.who, err)
	}
	path := filepath.Join(tb.env.shots, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.t.Fatalf("writing %s: %v", path, err)
	}
	tb.t.Logf("screenshot: %s", path)
}

// colorScheme emulates prefers-color-scheme for the tab.
func (tb *tab) colorScheme(scheme string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		tb.t.Fatalf("%s: emulating %s: %v", tb.who, scheme, err)
	}
}

// sessionToken reads the tab's session cookie (HttpOnly, so not from the page).
func (tb *tab) sessionToken() string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.env.url}})
	if err != nil {
		tb.t.Fatalf("%s: reading cookies: %v", tb.who, err)
	}
	for _, c := range res.Cookies {
		if c.Name == "webim_session" {
			return c.Value
		}
	}
	tb.t.Fatalf("%s: no webim_session cookie", tb.who)
	return ""
}

// apiSend sends a message with the HTTP API directly (bearer token), as
// another client of the same user would.
func apiSend(t *testing.T, base, token, to, body string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"to": to, "body": body})
	req, err := http.NewRequest(http.MethodPost, base+"/api/messages", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/messages: %d", res.StatusCode)
	}
}

func TestBrowser(t *testing.T) {
	env := startBrowserEnv(t)

	// 1. Both sign up, alice finds bob and asks, bob accepts; both see each other online.
	t.Run("FriendRequestAndPresence", func(t *testing.T) {
		// A wrong password gets the API's message, inline.
		stranger := env.newTab(t, "stranger")
		stranger.do(
			chromedp.SendKeys(chromedp.CSS(`#login-username`), "nobody-here"),
			chromedp.SendKeys(chromedp.CSS(`#login-password`), "wrong password"),
			chromedp.Click(chromedp.CSS(`#login-submit`)),
		)
		stranger.waitFor("the log-in error is shown", `document.querySelector('#login-error').textContent === 'The username or password is wrong.'`)
		stranger.screenshot("sign-in")
		stranger.do(
			chromedp.Click(chromedp.CSS(`#show-signup`)),
			chromedp.SendKeys(chromedp.CSS(`#signup-username`), "No Spaces!"),
			chromedp.SendKeys(chromedp.CSS(`#signup-password`), testPassword),
			chromedp.Click(chromedp.CSS(`#signup-submit`)),
		)
		stranger.waitFor("the sign-up error is shown", `document.querySelector('#signup-error').textContent.startsWith('A username is 3 to 32 characters')`)

		alice, bob := env.pairShots(t, true)
		alice.waitPresence(bob.user, true)
		bob.waitPresence(alice.user, true)
		if got := alice.text(friendSel(bob.user) + ` .person-name`); got != "Bob Builder" {
			t.Errorf("alice sees bob as %q, want his display name", got)
		}
	})

	// 2. Messages both ways without reload; unread count and title for a closed conversation.
	t.Run("MessagesUnreadAndTitle", func(t *testing.T) {
		alice, bob := env.pair(t)
		alice.open(bob.user)
		alice.send("Hi Bob! Lunch at https://example.com/menu?")
		alice.waitMessage("Hi Bob! Lunch at https://example.com/menu?", true)

		// bob has no conversation open: an unread badge and the title tell him.
		bob.waitFor("an unread count of 1 for alice",
			fmt.Sprintf(`document.querySelector(%s)?.textContent === '1'`, jsq(friendSel(alice.user)+` [data-testid="unread-count"]`)))
		bob.waitFor("the title counts 1 unread", `document.title === '(1) webim'`)

		bob.open(alice.user)
		bob.waitMessage("Hi Bob! Lunch at https://example.com/menu?", true)
		bob.waitFor("the title has no count once read", `document.title === 'webim'`)
		if n := eval[int](bob, fmt.Sprintf(`document.querySelectorAll(%s).length`, jsq(friendSel(alice.user)+` [data-testid="unread-count"]`))); n != 0 {
			t.Errorf("bob still sees an unread badge after opening the conversation")
		}
		// The link is clickable, safe, and opens a new tab.
		link := eval[map[string]string](bob, `(() => { const a = document.querySelector('#message-list [data-testid="message-body"] a'); return a ? {href: a.href, rel: a.rel, target: a.target} : {}; })()`)
		if link["href"] != "https://example.com/menu" || link["rel"] != "noopener noreferrer" || link["target"] != "_blank" {
			t.Errorf("link in message = %v, want https://example.com/menu with rel=noopener noreferrer target=_blank", link)
		}

		// The emoji picker inserts at the caret.
		bob.do(
			chromedp.SendKeys(chromedp.CSS(`#message-input`), "ab"),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('#message-input').setSelectionRange(1, 1)`),
			chromedp.Click(chromedp.CSS(`#emoji-btn`)),
			chromedp.WaitVisible(chromedp.CSS(`#emoji-picker`)),
			chromedp.Click(chromedp.CSS(`#emoji-picker button[aria-label="thumbs up"]`)),
		)
		if got := eval[string](bob, `document.querySelector('#message-input').value`); got != "a👍b" {
			t.Errorf("after picking an emoji the message reads %q, want %q", got, "a👍b")
		}
		bob.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#message-input').value = ''`),
			chromedp.KeyEvent(kb.Escape))

		// Shift+Enter makes a new line; Enter sends.
		bob.do(
			chromedp.SendKeys(chromedp.CSS(`#message-input`), "Sure,"),
			chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierShift)),
			chromedp.SendKeys(chromedp.CSS(`#message-input`), "see you at noon"),
			pressEnter,
		)
		bob.waitMessage("Sure,\nsee you at noon", true)
		alice.waitMessage("Sure,\nsee you at noon", true)
		if got := alice.messageBodies(); len(got) != 2 {
			t.Errorf("alice sees messages %q, want exactly 2 (no duplicates of her own)", got)
		}

		// alice has the conversation open, so nothing is unread for her.
		alice.waitFor("alice has nothing unread", `document.title === 'webim'`)

		// A hidden conversation: carol writes to alice while alice reads bob.
		carol := env.newTab(t, "carol")
		carol.signUp(env.name("carol"), "Carol")
		befriendInBrowser(carol, alice, false)
		alice.open(bob.user)
		carol.open(alice.user)
		carol.send("psst")
		carol.waitMessage("psst", true)
		alice.waitFor("an unread count for carol",
			fmt.Sprintf(`document.querySelector(%s)?.textContent === '1'`, jsq(friendSel(carol.user)+` [data-testid="unread-count"]`)))
		alice.waitFor("the title counts carol's message", `document.title === '(1) webim'`)
		if got := alice.messageBodies(); len(got) != 2 {
			t.Errorf("carol's message leaked into alice's conversation with bob: %q", got)
		}

		alice.screenshot("chat-light")
		alice.colorScheme("dark")
		alice.waitFor("dark mode applies", `matchMedia('(prefers-color-scheme: dark)').matches`)
		alice.screenshot("chat-dark")
		alice.colorScheme("light")
	})

	// 3. <script> and <img onerror> payloads are literal text and run nothing.
	t.Run("HTMLIsShownAsText", func(t *testing.T) {
		alice, bob := env.pair(t)
		payloads := []string{
			`<script>window.__pwned = 1</script>`,
			`<img src=x onerror="window.__pwned = 2">`,
			`<a href="javascript:window.__pwned=3">click</a> javascript:window.__pwned=4`,
		}
		alice.open(bob.user)
		bob.open(alice.user)
		for _, p := range payloads {
			alice.send(p)
			alice.waitMessage(p, true)
		}
		for _, p := range payloads {
			bob.waitMessage(p, true)
		}
		for _, tb := range []*tab{alice, bob} {
			if v := eval[string](tb, `String(window.__pwned)`); v != "undefined" {
				t.Errorf("%s: a payload ran: window.__pwned = %s", tb.who, v)
			}
			n := eval[int](tb, `document.querySelectorAll('#message-list script, #message-list img, #message-list [onerror], #message-list a[href^="javascript"]').length`)
			if n != 0 {
				t.Errorf("%s: %d elements were made from message text", tb.who, n)
			}
		}
	})

	// 4. bob logs out: alice sees him offline; alice writes; bob logs in and reads it.
	t.Run("OfflineDelivery", func(t *testing.T) {
		alice, bob := env.pair(t)
		alice.waitPresence(bob.user, true)
		bob.logOut()
		alice.waitPresence(bob.user, false)
		alice.open(bob.user)
		alice.waitFor("the header says offline", `document.querySelector('#conv-status').textContent === 'Offline'`)
		alice.send("Call me when you are back")
		alice.waitMessage("Call me when you are back", true)

		bob.logIn(bob.user)
		alice.waitPresence(bob.user, true)
		bob.waitFor("an unread count for alice",
			fmt.Sprintf(`document.querySelector(%s)?.textContent === '1'`, jsq(friendSel(alice.user)+` [data-testid="unread-count"]`)))
		bob.open(alice.user)
		bob.waitMessage("Call me when you are back", true)
	})

	// 5. Clean removes what was received, also after a reload; later messages stay.
	t.Run("CleanSurvivesReload", func(t *testing.T) {
		alice, bob := env.pair(t)
		bob.open(alice.user)
		alice.open(bob.user)
		bob.send("old one")
		bob.send("old two")
		alice.waitMessage("old one", true)
		alice.waitMessage("old two", true)

		alice.do(chromedp.Click(chromedp.CSS(`#clean-btn`)))
		alice.waitFor("the removed count is shown", `document.querySelector('#toast').textContent === 'Removed 2 messages.'`)
		alice.waitFor("the cleaned messages are gone", `document.querySelectorAll('#message-list [data-testid="message"]').length === 0`)

		bob.send("new one")
		alice.waitMessage("new one", true)

		alice.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#app-screen`)))
		alice.waitFor("bob's last message is listed again",
			fmt.Sprintf(`document.querySelector(%s)?.textContent === 'new one'`, jsq(friendSel(bob.user)+` .person-sub`)))
		// It was read before the reload, and stays read.
		if n := eval[int](alice, fmt.Sprintf(`document.querySelectorAll(%s).length`, jsq(friendSel(bob.user)+` [data-testid="unread-count"]`))); n != 0 {
			t.Errorf("a message read before the reload counts as unread after it")
		}
		alice.open(bob.user)
		alice.waitMessage("new one", true)
		if got := alice.messageBodies(); len(got) != 1 || got[0] != "new one" {
			t.Errorf("after reload alice sees %q, want only the uncleaned %q", got, "new one")
		}
		// bob's own copies are his to clean: he still has all three.
		bob.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#app-screen`)))
		bob.open(alice.user)
		bob.waitMessage("new one", true)
		if got := bob.messageBodies(); len(got) != 3 {
			t.Errorf("bob sees %q after reload, want his 3 sent messages", got)
		}
	})

	// 6. bob signs in from a third context: the second shows the notice and stops polling.
	t.Run("SessionReplaced", func(t *testing.T) {
		alice, bob := env.pair(t)
		oldToken := bob.sessionToken()
		bob.waitFor("bob's page is polling", `document.querySelector('#conn-status').hidden`)

		bob2 := env.newTab(t, "bob-elsewhere")
		bob2.logIn(bob.user)

		bob.do(chromedp.WaitVisible(chromedp.CSS(`#replaced-notice`)))
		if got := bob.text(`#replaced-title`); got != "You signed in somewhere else" {
			t.Errorf("notice title = %q", got)
		}
		// The replaced page makes no more polls with its old session.
		before := env.tap.polls(oldToken)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if n := env.tap.polls(oldToken); n != before {
				t.Fatalf("the replaced page kept polling: %d polls, then %d", before, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The new window works: alice's message reaches it.
		alice.open(bob.user)
		alice.send("which window is this?")
		bob2.open(alice.user)
		bob2.waitMessage("which window is this?", true)

		// "Sign in here again" brings back the log-in form, with the username filled in.
		bob.do(chromedp.Click(chromedp.CSS(`#signin-again-btn`)), chromedp.WaitVisible(chromedp.CSS(`#login-password`)))
		if got := eval[string](bob, `document.querySelector('#login-username').value`); got != bob.user {
			t.Errorf("log-in form username = %q, want %q", got, bob.user)
		}
	})

	// 7. An uploaded image shows as a thumbnail for the recipient.
	t.Run("ImageThumbnail", func(t *testing.T) {
		alice, bob := env.pair(t)
		img := image.NewRGBA(image.Rect(0, 0, 64, 48))
		for y := range 48 {
			for x := range 64 {
				img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 200, 255})
			}
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "sunset.png")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		doc := filepath.Join(t.TempDir(), "notes.txt")
		if err := os.WriteFile(doc, []byte(strings.Repeat("plain text\n", 300)), 0o644); err != nil {
			t.Fatal(err)
		}

		alice.open(bob.user)
		bob.open(alice.user)
		alice.do(chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{path}))
		thumbLoaded := `(() => { const i = document.querySelector('#message-list [data-testid="thumbnail"]'); return !!i && i.complete && i.naturalWidth === 64 && i.getAttribute('src').startsWith('/api/files/'); })()`
		bob.waitFor("the image thumbnail loads", thumbLoaded)
		alice.waitFor("alice sees her image from the server too", thumbLoaded)
		if alt := eval[string](bob, `document.querySelector('#message-list [data-testid="thumbnail"]').alt`); alt != "sunset.png" {
			t.Errorf("thumbnail alt = %q, want the file name", alt)
		}

		// A slow upload shows its progress, then the file.
		blob := make([]byte, 6<<20)
		for i := range blob {
			blob[i] = byte(i*7919 + i>>9)
		}
		bigPath := filepath.Join(t.TempDir(), "archive.bin")
		if err := os.WriteFile(bigPath, blob, 0o644); err != nil {
			t.Fatal(err)
		}
		env.tap.slowUploads.Store(true) // the server reads the upload slowly
		alice.do(chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{bigPath}))
		alice.waitFor("upload progress is shown",
			`[...document.querySelectorAll('#message-list progress.upload-progress')].some(p => p.value > 0 && p.value < 1)`)
		env.tap.slowUploads.Store(false)
		bob.waitFor("the big file arrives",
			`[...document.querySelectorAll('#message-list [data-testid="file-link"] .file-name')].some(n => n.textContent === 'archive.bin')`)

		// Drag and drop works too: drop a PNG drawn in the page onto the conversation.
		alice.do(chromedp.Evaluate[chromedp.Void](`(async () => {
			const c = document.createElement('canvas'); c.width = 30; c.height = 20;
			const g = c.getContext('2d'); g.fillStyle = '#e33'; g.fillRect(0, 0, 30, 20);
			const blob = await new Promise(r => c.toBlob(r, 'image/png'));
			const dt = new DataTransfer();
			dt.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
			const zone = document.querySelector('#message-scroll');
			for (const type of ['dragenter', 'dragover', 'drop']) {
				zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
			}
		})()`, chromedp.EvalAwaitPromise))
		bob.waitFor("the dropped image shows as a thumbnail",
			`[...document.querySelectorAll('#message-list [data-testid="thumbnail"]')].some(i => i.alt === 'dropped.png' && i.complete && i.naturalWidth === 30)`)

		// Any other file is a download link with its name and size.
		alice.do(chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{doc}))
		const notes = `[...document.querySelectorAll('#message-list [data-testid="file-link"]')].find(a => a.querySelector('.file-name').textContent === 'notes.txt')`
		bob.waitFor("the file link is shown", notes)
		link := eval[map[string]string](bob, `(() => { const a = `+notes+`; return {href: a.getAttribute('href'), name: a.querySelector('.file-name').textContent, size: a.querySelector('.file-size').textContent}; })()`)
		if !strings.HasPrefix(link["href"], "/api/files/") || link["name"] != "notes.txt" || link["size"] != "3.3 KB" {
			t.Errorf("file link = %v, want /api/files/…, notes.txt, 3.3 KB", link)
		}
		bob.screenshot("files")
	})

	// The poll loop shows "Reconnecting…" while the server is away and resumes;
	// a send retries with the same client_msg_id, so nothing doubles.
	t.Run("ReconnectAndRetry", func(t *testing.T) {
		alice, bob := env.pair(t)
		alice.open(bob.user)
		bob.open(alice.user)

		// The server goes away: open polls break, new requests fail.
		env.tap.down.Store(true)
		env.srv.CloseClientConnections()
		alice.do(chromedp.WaitVisible(chromedp.CSS(`#conn-status`)))
		if got := alice.text(`#conn-text`); got != "Reconnecting…" {
			t.Errorf("connection indicator says %q", got)
		}
		alice.send("sent while the server was away")
		alice.waitFor("the message shows as pending",
			`[...document.querySelectorAll('#message-list [data-testid="message"]')].some(m => m.dataset.status === 'pending')`)
		env.tap.down.Store(false)
		alice.do(chromedp.WaitNotVisible(chromedp.CSS(`#conn-status`)))
		alice.waitMessage("sent while the server was away", true)
		bob.waitMessage("sent while the server was away", true)

		// The answer to a stored send is lost: the retry gets the same message back.
		env.tap.loseSend.Store(1)
		alice.send("answer lost once")
		alice.waitMessage("answer lost once", true)
		bob.waitMessage("answer lost once", true)
		cid := env.tap.lastCID()
		if n := env.tap.sends(cid); n < 2 {
			t.Errorf("the send was made %d times with client_msg_id %q, want a retry with the same id", n, cid)
		}
		for _, tb := range []*tab{alice, bob} {
			got := tb.messageBodies()
			want := []string{"sent while the server was away", "answer lost once"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("%s sees %q, want %q exactly once each", tb.who, got, want)
			}
		}
		// After a reload, the queue holds each message once too.
		bob.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#app-screen`)))
		bob.open(alice.user)
		bob.waitMessage("answer lost once", true)
		if got := bob.messageBodies(); len(got) != 2 {
			t.Errorf("after reload bob sees %q, want 2 messages", got)
		}
	})

	// Notifications: permission is asked only from a click; a message that
	// arrives while the page is hidden makes a desktop notification.
	t.Run("NotificationWhenHidden", func(t *testing.T) {
		// alice's page counts permission requests from the very start.
		alice := env.newTabWith(t, "alice", `
			window.__asked = 0;
			if (window.Notification) {
				const ask = Notification.requestPermission.bind(Notification);
				Notification.requestPermission = (...a) => { window.__asked++; return ask(...a); };
			}`)
		bob := env.newTab(t, "bob")
		alice.signUp(env.name("alice"), "Alice Liddell")
		bob.signUp(env.name("bob"), "Bob Builder")
		befriendInBrowser(alice, bob, false)
		alice.do(chromedp.WaitVisible(chromedp.CSS(`#notify-btn`)))
		if n := eval[int](alice, `window.__asked`); n != 0 {
			t.Errorf("the page asked for notification permission %d times without a click", n)
		}
		alice.do(chromedp.Click(chromedp.CSS(`#notify-btn`)))
		alice.waitFor("a click asks for permission", `window.__asked === 1`)

		// bob allows notifications; his page records them and is then hidden.
		_, err := chromedp.CallBrowser(bob.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission:       &browser.PermissionDescriptor{Name: "notifications"},
			Setting:          browser.PermissionSettingGranted,
			Origin:           env.url,
			BrowserContextID: chromedp.FromContext(bob.ctx).BrowserContextID,
		})
		if err != nil {
			t.Fatalf("granting notifications: %v", err)
		}
		bob.open(alice.user)
		bob.do(chromedp.Evaluate[chromedp.Void](`(() => {
			window.__notes = [];
			const Real = window.Notification;
			window.Notification = class extends Real {
				constructor(title, options) {
					window.__notes.push({title, body: options && options.body});
					return {addEventListener() {}, close() {}};
				}
			};
			Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
			document.dispatchEvent(new Event('visibilitychange'));
		})()`))
		if p := eval[string](bob, `Notification.permission`); p != "granted" {
			t.Fatalf("notification permission = %q", p)
		}

		alice.open(bob.user)
		alice.send("are you there?")
		bob.waitFor("a notification is shown", `window.__notes.length === 1`)
		note := eval[map[string]string](bob, `window.__notes[0]`)
		if note["title"] != "Alice Liddell" || note["body"] != "are you there?" {
			t.Errorf("notification = %v, want title Alice Liddell and the message", note)
		}
		// Hidden, even the open conversation counts as unread.
		bob.waitFor("the title counts the message", `document.title === '(1) webim'`)
		bob.do(chromedp.Evaluate[chromedp.Void](`(() => {
			Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
			document.dispatchEvent(new Event('visibilitychange'));
		})()`))
		bob.waitFor("the message is read once the page shows", `document.title === 'webim'`)
	})

	// Unfriend, block and unblock from the friend menu and the block list.
	t.Run("UnfriendBlockUnblock", func(t *testing.T) {
		alice, bob := env.pair(t)
		alice.open(bob.user)
		alice.send("see you")
		bob.waitFor("bob lists alice", fmt.Sprintf(`!!document.querySelector(%s)`, jsq(friendSel(alice.user))))

		alice.do(
			chromedp.Click(chromedp.CSS(`#friend-menu-btn`)),
			chromedp.WaitVisible(chromedp.CSS(`#unfriend-btn`)),
			chromedp.Click(chromedp.CSS(`#unfriend-btn`)),
		)
		alice.waitFor("the composer is disabled", `document.querySelector('#message-input').disabled && !document.querySelector('#composer-note').hidden`)
		// bob learns at once: alice is no longer a friend (no presence dot).
		bob.waitFor("alice is no longer bob's friend",
			fmt.Sprintf(`(() => { const li = document.querySelector(%s); return li && !li.querySelector('.presence-dot'); })()`, jsq(friendSel(alice.user))))

		alice.do(
			chromedp.Click(chromedp.CSS(`#friend-menu-btn`)),
			chromedp.WaitVisible(chromedp.CSS(`#block-btn`)),
			chromedp.Click(chromedp.CSS(`#block-btn`)),
		)
		alice.waitFor("the header says blocked", `document.querySelector('#conv-status').textContent === 'Blocked'`)

		// bob cannot ask again: the server refuses and the page says so.
		bob.do(chromedp.SendKeys(chromedp.CSS(`#user-search`), alice.user))
		add := fmt.Sprintf(`#search-results li[data-username=%q] [data-testid="add-friend"]`, alice.user)
		bob.do(chromedp.WaitVisible(chromedp.CSS(add)), chromedp.Click(chromedp.CSS(add)))
		bob.waitFor("the refusal is shown", `document.querySelector('#toast').textContent === 'One of you has blocked the other.'`)

		// The block list shows bob; Unblock empties it.
		alice.do(
			chromedp.Click(chromedp.CSS(`#account-menu-btn`)),
			chromedp.WaitVisible(chromedp.CSS(`#blocks-btn`)),
			chromedp.Click(chromedp.CSS(`#blocks-btn`)),
			chromedp.WaitVisible(chromedp.CSS(`#blocks-view`)),
		)
		unblock := fmt.Sprintf(`#blocked-list li[data-username=%q] [data-testid="unblock"]`, bob.user)
		alice.do(chromedp.WaitVisible(chromedp.CSS(unblock)))
		alice.screenshot("blocked")
		alice.do(chromedp.Click(chromedp.CSS(unblock)))
		alice.do(chromedp.WaitVisible(chromedp.CSS(`#blocks-empty`)))
		// The friendship is not restored by unblocking.
		alice.open(bob.user)
		alice.waitFor("bob is not a friend again", `document.querySelector('#message-input').disabled`)
	})

	// Two tabs of one session share its polls without a storm of requests,
	// and both get the messages.
	t.Run("TwoTabsOneSession", func(t *testing.T) {
		alice, bob := env.pair(t)
		ctx, cancel := chromedp.NewContext(alice.ctx) // a second tab, same cookies
		t.Cleanup(cancel)
		if err := chromedp.Do(ctx); err != nil {
			t.Fatal(err)
		}
		alice2 := &tab{t: t, env: env, ctx: ctx, who: "alice-tab2", user: alice.user}
		alice2.do(chromedp.Navigate(env.url), chromedp.WaitVisible(chromedp.CSS(`#app-screen`)))
		alice2.waitFor("bob is listed", fmt.Sprintf(`!!document.querySelector(%s)`, jsq(friendSel(bob.user))))

		token := alice.sessionToken()
		before := env.tap.polls(token)
		bob.open(alice.user)
		for i := range 3 {
			bob.send(fmt.Sprintf("to both tabs %d", i))
		}
		for _, tb := range []*tab{alice, alice2} {
			tb.waitFor("the last message is listed",
				fmt.Sprintf(`document.querySelector(%s)?.textContent === 'to both tabs 2'`, jsq(friendSel(bob.user)+` .person-sub`)))
		}
		time.Sleep(2 * time.Second) // a window in which to count polls
		if n := env.tap.polls(token) - before; n > 30 {
			t.Errorf("two tabs made %d polls in a few seconds: they fight over the session's poll", n)
		} else {
			t.Logf("two tabs made %d polls", n)
		}
	})

	// The page and its modules come with the security headers the page relies on.
	t.Run("PageHeaders", func(t *testing.T) {
		for path, ctype := range map[string]string{
			"/":                 "text/html",
			"/static/app.js":    "text/javascript",
			"/static/api.js":    "text/javascript",
			"/static/style.css": "text/css",
		} {
			res, err := http.Get(env.url + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) {
				t.Errorf("GET %s: %d %q, want 200 %s", path, res.StatusCode, res.Header.Get("Content-Type"), ctype)
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no X-Content-Type-Options: nosniff", path)
			}
		}
	})

	// The layout fits a phone: nothing scrolls sideways at 390 px.
	t.Run("PhoneWidth", func(t *testing.T) {
		alice, bob := env.pair(t)
		alice.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		alice.open(bob.user)
		for _, text := range []string{strings.Repeat("a-very-long-word-without-spaces-", 12), "https://example.com/" + strings.Repeat("path/", 40)} {
			alice.do(chromedp.SetValue(chromedp.CSS(`#message-input`), text), chromedp.Focus(chromedp.CSS(`#message-input`)), pressEnter)
		}
		alice.waitMessage("https://example.com/"+strings.Repeat("path/", 40), true)
		if w := eval[int](alice, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("conversation is %d px wide at 390 px: it scrolls sideways", w)
		}
		alice.screenshot("chat-phone")

		// Reading further up, a new message shows a "New messages" button instead of jumping.
		bobToken := bob.sessionToken()
		for i := range 15 {
			apiSend(t, env.url, bobToken, alice.user, fmt.Sprintf("filler %d", i))
		}
		alice.waitMessage("filler 14", true)
		alice.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#message-scroll').scrollTop = 0`))
		alice.waitFor("the view is scrolled up", `document.querySelector('#message-scroll').scrollTop === 0`)
		apiSend(t, env.url, bobToken, alice.user, "look down here")
		alice.waitMessage("look down here", true)
		alice.do(chromedp.WaitVisible(chromedp.CSS(`#new-below`)))
		if top := eval[int](alice, `document.querySelector('#message-scroll').scrollTop`); top != 0 {
			t.Errorf("the view jumped to %d while reading further up", top)
		}
		alice.do(chromedp.Click(chromedp.CSS(`#new-below`)))
		alice.do(chromedp.WaitNotVisible(chromedp.CSS(`#new-below`)))
		alice.waitFor("the view is at the newest message",
			`(() => { const s = document.querySelector('#message-scroll'); return s.scrollHeight - s.scrollTop - s.clientHeight < 80; })()`)
		alice.do(chromedp.Click(chromedp.CSS(`#back-btn`)), chromedp.WaitVisible(chromedp.CSS(`#friend-list`)))
		if w := eval[int](alice, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("friend list is %d px wide at 390 px: it scrolls sideways", w)
		}
		alice.colorScheme("dark")
		alice.screenshot("list-phone-dark")
		alice.colorScheme("light")
	})
}
