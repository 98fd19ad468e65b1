package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"
)

// TestBrowserPush registers the page's service worker in Chromium, delivers
// pushes to it through DevTools as a push service would, and reads the
// notifications it shows.
func TestBrowserPush(t *testing.T) {
	env := startBrowserEnv(t)
	alice, bob := env.pair(t)
	ctx := bob.ctx
	origin := env.url

	bc := chromedp.FromContext(ctx).BrowserContextID
	if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: browser.PermissionSettingGranted,
		Origin: origin, BrowserContextID: bc,
	}); err != nil {
		t.Fatalf("granting notifications: %v", err)
	}

	regs := chromedp.Events(ctx, serviceworker.WorkerRegistrationUpdated)
	if _, err := chromedp.Call(ctx, serviceworker.Enable, struct{}{}); err != nil {
		t.Fatalf("ServiceWorker.enable: %v", err)
	}
	bob.waitFor("the service worker is active", `navigator.serviceWorker.ready.then(() => true) && navigator.serviceWorker.controller !== undefined`)
	bob.waitFor("the registration is at /", `(async () => { const r = await navigator.serviceWorker.getRegistration('/'); return !!(r && r.active && r.scope === location.origin + '/'); })()`)
	var regID serviceworker.RegistrationID
	deadline := time.Now().Add(browserWait)
	for ev, err := range regs {
		if err != nil {
			t.Fatalf("registration events: %v", err)
		}
		for _, r := range ev.Registrations {
			if r.ScopeURL == origin+"/" && !r.IsDeleted {
				regID = r.RegistrationID
			}
		}
		if regID != "" || time.Now().After(deadline) {
			break
		}
	}
	if regID == "" {
		t.Fatal("no service worker registration for the page's scope")
	}

	deliver := func(p map[string]any) {
		t.Helper()
		data, _ := json.Marshal(p)
		if _, err := chromedp.Call(ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: origin, RegistrationID: regID, Data: string(data),
		}); err != nil {
			t.Fatalf("deliverPushMessage: %v", err)
		}
	}
	notifications := `(async () => { const r = await navigator.serviceWorker.getRegistration('/');
		return (await r.getNotifications()).map(n => ({title: n.title, body: n.body, tag: n.tag})); })()`
	type shown struct{ Title, Body, Tag string }
	shownNow := func() []shown {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, browserWait)
		defer cancel()
		v, err := chromedp.Run(c, chromedp.Evaluate[[]shown](notifications, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("reading notifications: %v", err)
		}
		return v
	}

	// Bob looks at no conversation: alice's message is shown, by her
	// display name, with its preview; one without a preview says so.
	deliver(map[string]any{"type": "message", "from": alice.user, "id": 1, "preview": "Tea at five?"})
	bob.waitFor("a notification", notifications+`.then(ns => ns.length === 1)`)
	ns := shownNow()
	if ns[0].Title != "Alice Liddell" || ns[0].Body != "Tea at five?" || ns[0].Tag != "u:"+alice.user {
		t.Fatalf("notification %+v", ns[0])
	}
	bob.do(chromedp.Evaluate[chromedp.Void](`navigator.serviceWorker.getRegistration('/').then(r => r.getNotifications()).then(ns => ns.forEach(n => n.close()))`))
	bob.waitFor("no notification left", notifications+`.then(ns => ns.length === 0)`)
	deliver(map[string]any{"type": "message", "from": alice.user, "id": 2})
	bob.waitFor("a notification", notifications+`.then(ns => ns.length === 1)`)
	if ns := shownNow(); ns[0].Body != "New message" {
		t.Fatalf("notification without a preview: %+v", ns[0])
	}
	bob.do(chromedp.Evaluate[chromedp.Void](`navigator.serviceWorker.getRegistration('/').then(r => r.getNotifications()).then(ns => ns.forEach(n => n.close()))`))
	bob.waitFor("no notification left", notifications+`.then(ns => ns.length === 0)`)

	// Looking at alice's conversation: a push of hers shows nothing; then
	// one from someone else still does.
	bob.open(alice.user)
	deliver(map[string]any{"type": "message", "from": alice.user, "id": 3, "preview": "seen already"})
	deliver(map[string]any{"type": "message", "from": "somebody", "id": 4, "preview": "other"})
	bob.waitFor("the other conversation's notification", notifications+`.then(ns => ns.length >= 1)`)
	ns = shownNow()
	if len(ns) != 1 || ns[0].Tag != "u:somebody" {
		t.Fatalf("notifications while looking at alice's conversation: %+v", ns)
	}

	// The settings dialog has the toggle, labelled, and opens from the
	// account menu with the keyboard.
	bob.do(
		chromedp.Click(chromedp.CSS(`#account-menu-btn`)),
		chromedp.WaitVisible(chromedp.CSS(`#settings-btn`)),
		chromedp.Click(chromedp.CSS(`#settings-btn`)),
		chromedp.WaitVisible(chromedp.CSS(`#settings-dialog`)),
	)
	if got := bob.text(`label[for="settings-push"]`); got != "Notify me when this tab is closed" {
		t.Fatalf("push toggle label %q", got)
	}
}
