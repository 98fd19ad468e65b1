package main

import (
	"path/filepath"
	"testing"
)

// TestBrowser_SignupClosed: with -signup=closed the page offers no sign-up,
// and an account made on the shell logs in from the page.
func TestBrowser_SignupClosed(t *testing.T) {
	db := filepath.Join(t.TempDir(), "closed.db")
	env := startBrowserEnv(t, func(c *Config) {
		c.DBPath = db
		c.SignupClosed = true
	})
	tb := env.newTab(t, "visitor")
	tb.waitFor("the sign-up tab is hidden", `document.querySelector('#show-signup').hidden === true`)
	tb.waitFor("the log-in form is shown", `!document.querySelector('#login-form').hidden && document.querySelector('#signup-form').hidden`)

	if _, stderr, err := runCLI(t, testPassword+"\n", "user", "add", "-db", db, "-display", "From Shell", "shelluser"); err != nil {
		t.Fatalf("user add: %v\n%s", err, stderr)
	}
	tb.logIn("shelluser")
}
