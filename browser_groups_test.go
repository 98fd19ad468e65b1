package main

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// Real-browser test of groups, ticks, typing and unread badges (issue 14):
// three people in three browser contexts.

func groupSel(id string) string { return fmt.Sprintf(`#group-list li[data-group=%q]`, id) }

func TestBrowserGroups(t *testing.T) {
	axe := axeSource(t)
	env := startBrowserEnv(t)
	alice := env.newTab(t, "alice")
	bob := env.newTab(t, "bob")
	carol := env.newTab(t, "carol")
	alice.signUp(env.name("alice"), "Alice")
	bob.signUp(env.name("bob"), "Bob")
	carol.signUp(env.name("carol"), "Carol")
	befriendInBrowser(alice, bob, false)
	befriendInBrowser(alice, carol, false)

	// ✓ then ✓✓ on a 1:1 message once bob reads it.
	alice.open(bob.user)
	alice.send("are you there?")
	alice.waitMessage("are you there?", true)
	mineStatus := `[...document.querySelectorAll('#message-list [data-testid="message"].mine')].pop()?.querySelector('[data-testid="msg-status"]')?.textContent`
	alice.waitFor("a single tick while unread", mineStatus+` === '✓'`)
	bob.open(alice.user)
	bob.waitMessage("are you there?", true)
	alice.waitFor("two ticks once bob has read it", mineStatus+` === '✓✓'`)

	// alice makes a group with both from the dialog, by keyboard where it can.
	alice.do(chromedp.Click(chromedp.CSS(`#new-group-btn`)), chromedp.WaitVisible(chromedp.CSS(`#create-group-dialog`)))
	alice.waitFor("the name field has focus", `document.activeElement === document.querySelector('#create-group-name')`)
	audit(t, alice, axe, "create-group dialog")
	alice.do(chromedp.SendKeys(chromedp.CSS(`#create-group-name`), "Weekend plans"))
	for _, u := range []string{bob.user, carol.user} {
		alice.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#create-group-friends input[value=%q]`, u))))
	}
	alice.do(chromedp.Click(chromedp.CSS(`#create-group-submit`)))
	alice.waitFor("the group conversation opens", `document.querySelector('#conv-title').textContent === 'Weekend plans'`)
	id := eval[string](alice, `document.querySelector('#group-list li[data-group]').dataset.group`)

	// bob and carol see it in their sidebars, with the message count.
	bob.do(chromedp.WaitVisible(chromedp.CSS(groupSel(id))))
	carol.do(chromedp.WaitVisible(chromedp.CSS(groupSel(id))))
	alice.send("Hike on Saturday?")
	alice.waitMessage("Hike on Saturday?", true)
	for _, tb := range []*tab{bob, carol} {
		tb.waitFor("an unread badge of 1 on the group",
			fmt.Sprintf(`document.querySelector(%s)?.textContent === '1'`, jsq(groupSel(id)+` [data-testid="unread-count"]`)))
	}
	carol.waitFor("the title counts the group's unread", `document.title === '(1) webim'`)
	alice.waitFor("read by 0 of 2", mineStatus+` === '✓ read by 0 of 2'`)

	// bob opens it: the badge clears, alice sees read by 1 of 2.
	bob.do(chromedp.Click(chromedp.CSS(groupSel(id) + ` .friend-btn`)))
	bob.waitMessage("Hike on Saturday?", true)
	bob.waitFor("bob's badge is gone", fmt.Sprintf(`!document.querySelector(%s)`, jsq(groupSel(id)+` [data-testid="unread-count"]`)))
	alice.waitFor("read by 1 of 2", mineStatus+` === '✓ read by 1 of 2'`)
	// In a group each sender's name shows.
	if got := bob.text(`#message-list [data-testid="message"].theirs .msg-sender`); got != "Alice" {
		t.Errorf("bob sees the sender as %q, want Alice", got)
	}

	// bob types: alice, in the group, sees "Bob is typing…", until his message.
	bob.do(chromedp.SendKeys(chromedp.CSS(`#message-input`), "Sure"))
	alice.waitFor("Bob is typing", `document.querySelector('#typing-indicator').textContent === 'Bob is typing…' && !document.querySelector('#typing-indicator').hidden`)
	bob.do(pressEnter)
	alice.waitMessage("Sure", true)
	alice.waitFor("the typing line is gone with his message", `document.querySelector('#typing-indicator').hidden`)

	// carol opens the group: everything read, alice sees read by 2 of 2.
	carol.do(chromedp.Click(chromedp.CSS(groupSel(id) + ` .friend-btn`)))
	carol.waitMessage("Sure", true)
	carol.waitFor("carol's title is clear", `document.title === 'webim'`)
	alice.waitFor("read by 2 of 2", `[...document.querySelectorAll('#message-list [data-testid="message"].mine')].find(m => m.querySelector('[data-testid="message-body"]')?.textContent === 'Hike on Saturday?')?.querySelector('[data-testid="msg-status"]')?.textContent === '✓ read by 2 of 2'`)

	// The members panel: alice (owner) renames and removes carol.
	alice.do(chromedp.Click(chromedp.CSS(`#members-btn`)), chromedp.WaitVisible(chromedp.CSS(`#members-panel`)))
	alice.waitFor("three members listed", `document.querySelectorAll('#member-list [data-testid="member"]').length === 3`)
	audit(t, alice, axe, "group conversation with its members panel")
	alice.do(
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#rename-input').value = ''`),
		chromedp.SendKeys(chromedp.CSS(`#rename-input`), "Hiking"),
		chromedp.Click(chromedp.CSS(`[data-testid="rename-btn"]`)),
	)
	bob.waitFor("bob sees the new name", `document.querySelector('#conv-title').textContent === 'Hiking'`)
	alice.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#member-list li[data-username=%q] [data-testid="remove-member"]`, carol.user))))
	carol.waitFor("carol is told she is out", `document.querySelector('#composer-note').textContent === 'You are no longer in this group.'`)
	bob.waitFor("bob's header counts two", `document.querySelector('#conv-status').textContent === '2 members'`)

	// bob leaves; alice is alone and the owner still.
	bob.do(chromedp.Click(chromedp.CSS(`#members-btn`)), chromedp.WaitVisible(chromedp.CSS(`#leave-btn`)), chromedp.Click(chromedp.CSS(`#leave-btn`)))
	bob.waitFor("the group left bob's sidebar", fmt.Sprintf(`!document.querySelector(%s)`, jsq(groupSel(id))))
	alice.waitFor("alice's header counts one", `document.querySelector('#conv-status').textContent === '1 member'`)
	alice.screenshot("group")
}
