package main

// The page audited as Lighthouse's accessibility and best-practice
// categories do, in CI: axe-core (from npm; .ci/run installs it) run in
// Chromium on the sign-in page, the signed-in list and an open
// conversation, light and dark, plus the console: no error and no warning
// of any source (a failed request included) while those screens load.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// axeSource reads axe-core's script: WEBIM_AXE_JS, or where .ci/run puts it.
func axeSource(t *testing.T) string {
	t.Helper()
	path := os.Getenv("WEBIM_AXE_JS")
	if path == "" {
		path = ".ci/node/node_modules/axe-core/axe.min.js"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("axe-core not found (%v): .ci/run installs it with npm", err)
		}
		t.Skipf("SKIPPING THE PAGE AUDIT: axe-core not found (%v). Install it: npm install --prefix .ci/node axe-core@4.14.1", err)
	}
	return string(b)
}

// consoleWatch records every console message of warning level or above.
type consoleWatch struct {
	mu   sync.Mutex
	msgs []string
}

func watchConsole(tb *tab) *consoleWatch {
	w := &consoleWatch{}
	entries := chromedp.Events(tb.ctx, cdplog.EntryAdded)
	calls := chromedp.Events(tb.ctx, runtime.ConsoleAPICalled)
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if e := ev.Entry; e.Level == cdplog.EntryLevelError || e.Level == cdplog.EntryLevelWarning {
				w.add(fmt.Sprintf("%s %s: %s %s", e.Source, e.Level, e.Text, e.URL))
			}
		}
	}()
	go func() {
		for ev, err := range calls {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				w.add(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		}
	}()
	return w
}

func (w *consoleWatch) add(m string) {
	w.mu.Lock()
	w.msgs = append(w.msgs, m)
	w.mu.Unlock()
}

func (w *consoleWatch) check(t *testing.T, who string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		t.Errorf("%s: console: %s", who, m)
	}
	w.msgs = nil
}

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// audit runs axe-core (WCAG 2.1 A and AA, and its best practices) on the
// tab's document in both colour schemes and fails on any violation.
func audit(t *testing.T, tb *tab, axe, screen string) {
	t.Helper()
	if !eval[bool](tb, `typeof window.axe === 'object'`) {
		// Through the debugger, so the page's CSP does not apply to it.
		tb.do(chromedp.Evaluate[chromedp.Void](axe))
	}
	for _, scheme := range []string{"light", "dark"} {
		tb.colorScheme(scheme)
		// Colours fade over 0.15 s; axe must see where they end.
		tb.waitFor("transitions ended", `document.getAnimations().every(a => !(a instanceof CSSTransition) || a.playState !== 'running')`)
		ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
		vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]axeViolation](`axe.run(document, {
			runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
			resultTypes: ['violations'],
		}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').split('\n').slice(1, 2).join(''))})))`,
			chromedp.EvalAwaitPromise))
		cancel()
		if err != nil {
			t.Fatalf("%s: axe on %s: %v", tb.who, screen, err)
		}
		for _, v := range vs {
			t.Errorf("%s (%s): axe %s (%s): %s at %s", screen, scheme, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "; "))
		}
	}
	tb.colorScheme("light")
}

func TestBrowser_AuditEveryScreen(t *testing.T) {
	axe := axeSource(t)
	env := startBrowserEnv(t)

	// The sign-in page as a first visit finds it, then the sign-up tab.
	visitor := env.newTab(t, "visitor")
	cw := watchConsole(visitor)
	visitor.do(chromedp.Navigate(env.url), chromedp.WaitVisible(chromedp.CSS(`#auth-screen`)))
	if d := eval[string](visitor, `document.querySelector('meta[name=description]')?.content ?? ''`); len(d) < 20 {
		t.Errorf("meta description %q", d)
	}
	audit(t, visitor, axe, "sign-in")
	visitor.do(chromedp.Click(chromedp.CSS(`#show-signup`)), chromedp.WaitVisible(chromedp.CSS(`#signup-username`)))
	audit(t, visitor, axe, "sign-up")
	cw.check(t, "visitor")

	// Signed in: the list, then a conversation with messages both ways, as
	// a returning user reloading the page finds them.
	alice, bob := env.pair(t)
	alice.open(bob.user)
	alice.send("Hello Bob, lunch at noon?")
	bob.open(alice.user)
	bob.waitMessage("Hello Bob, lunch at noon?", true)
	bob.send("Sure!")
	alice.waitMessage("Sure!", true)

	cw = watchConsole(alice)
	alice.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#app-screen`)))
	alice.waitFor("the friend list", fmt.Sprintf(`document.querySelector(%s) !== null`, jsq(friendSel(bob.user))))
	audit(t, alice, axe, "signed-in list")
	alice.open(bob.user)
	alice.waitMessage("Sure!", true)
	audit(t, alice, axe, "conversation")
	cw.check(t, "alice")

	// Every friend button's spoken name holds its visible text.
	for _, n := range eval[[]string](alice, `[...document.querySelectorAll('.friend-btn')].filter(b => b.getAttribute('aria-label')).map(b => b.getAttribute('aria-label'))`) {
		t.Errorf("friend button with aria-label %q: its name must come from its visible text", n)
	}
}
