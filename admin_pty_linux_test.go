package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's controlling side and its terminal.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("naming the pty: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("opening the pty: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptmx, tty
}

// TestAdmin_PasswordPromptOnTerminal: on a terminal "user add" asks twice,
// without echo, and refuses two different answers.
func TestAdmin_PasswordPromptOnTerminal(t *testing.T) {
	ts := newTestServer(t)
	add := func(name string, answers ...string) (string, error) {
		ptmx, tty := openPTY(t)
		go func() {
			// Drain what the terminal echoes, so writes never block.
			buf := make([]byte, 1024)
			for {
				if _, err := ptmx.Read(buf); err != nil {
					return
				}
			}
		}()
		var stderr bytes.Buffer
		done := make(chan error, 1)
		go func() {
			done <- run(context.Background(), []string{"user", "add", "-db", ts.cfg.DBPath, name},
				func(string) string { return "" }, tty, &bytes.Buffer{}, &stderr, nil)
		}()
		for _, a := range answers {
			time.Sleep(100 * time.Millisecond) // let the prompt turn echo off first
			if _, err := ptmx.Write([]byte(a + "\r")); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case err := <-done:
			return stderr.String(), err
		case <-time.After(20 * time.Second):
			t.Fatal("user add on a terminal did not finish")
			return "", nil
		}
	}
	prompts, err := add("termuser", "terminal password", "terminal password")
	if err != nil {
		t.Fatalf("user add on a terminal: %v\n%s", err, prompts)
	}
	if !strings.Contains(prompts, "New password: ") || !strings.Contains(prompts, "Repeat it: ") || strings.Contains(prompts, "terminal password") {
		t.Fatalf("prompts %q", prompts)
	}
	c := &client{ts: ts, t: t, username: "termuser", password: "terminal password"}
	c.login()

	if _, err := add("termuser2", "one password", "another password"); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Fatalf("two different answers: %v", err)
	}
}
