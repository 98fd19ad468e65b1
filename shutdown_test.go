package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestShutdown_SIGTERMAnswersPollsAndFinishesSends sends SIGTERM to the real
// binary with long-polls open and sends in flight: polls are answered, each
// send ends with an answer that tells the truth (201/200 stored, or a JSON
// 503) or with no answer at all, the process exits 0 within API.md's 10 s,
// and the WAL is checkpointed into the main file.
func TestShutdown_SIGTERMAnswersPollsAndFinishesSends(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildWebim(t)
	dbPath := engineDB(t)
	args := []string{"-addr", "127.0.0.1:0", "-db", dbPath, "-rate-limit-exempt", "127.0.0.0/8"}
	p := startWebim(t, bin, args...)
	base := p.url("")
	hc := &http.Client{Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()

	const nPollers, nSenders = 6, 4
	recv := uniqueName("termrecv")
	recvTok := procUser(t, hc, base, recv)
	pollToks := make([]string, nPollers)
	for i := range pollToks {
		pollToks[i] = procUser(t, hc, base, uniqueName("termpoll"))
	}
	sendNames := make([]string, nSenders)
	sendToks := make([]string, nSenders)
	for i := range sendToks {
		sendNames[i] = uniqueName("termsend")
		sendToks[i] = procUser(t, hc, base, sendNames[i])
		procBefriend(t, hc, base, sendNames[i], sendToks[i], recv, recvTok)
	}

	// Long-polls that would wait 50 s.
	type pollEnd struct {
		status int
		err    error
		at     time.Time
	}
	polls := make(chan pollEnd, nPollers)
	for _, tok := range pollToks {
		go func() {
			st, data, err := apiCall(hc, base, tok, "GET", "/api/poll?cursor=999999&timeout=50", nil)
			if err == nil && st == http.StatusOK {
				var pr pollResult
				if jerr := json.Unmarshal(data, &pr); jerr != nil {
					err = fmt.Errorf("poll answer %s: %w", data, jerr)
				}
			}
			polls <- pollEnd{st, err, time.Now()}
		}()
	}
	eventually(t, 10*time.Second, "polls to be open", func() bool {
		st, data, err := apiCall(hc, base, "", "GET", "/metrics", nil)
		return err == nil && st == http.StatusOK && strings.Contains(string(data), fmt.Sprintf("\nwebim_open_polls %d\n", nPollers))
	})

	// Senders that keep sending through the signal.
	type sendEnd struct {
		sender int
		cid    string
		status int
		body   []byte
		err    error
	}
	var mu sync.Mutex
	var ends []sendEnd
	var wg sync.WaitGroup
	started := make(chan struct{}, nSenders)
	for i := range nSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 5000 {
				cid := fmt.Sprintf("%d/%d", i, k)
				st, data, err := apiCall(hc, base, sendToks[i], "POST", "/api/messages",
					map[string]any{"to": recv, "body": "term " + cid, "client_msg_id": cid})
				mu.Lock()
				ends = append(ends, sendEnd{i, cid, st, data, err})
				mu.Unlock()
				if k == 20 {
					started <- struct{}{}
				}
				if err != nil || st == http.StatusServiceUnavailable {
					return // the server is going
				}
			}
		}()
	}
	for range nSenders {
		<-started
	}

	sig := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(15 * time.Second)
	took := time.Since(sig)
	wg.Wait()
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM (took %v)\n%s", code, took, p.log())
	}
	if took > 10*time.Second {
		t.Errorf("exit took %v, API.md allows 10 s", took)
	}
	for range nPollers {
		pe := <-polls
		if pe.err != nil || pe.status != http.StatusOK {
			t.Errorf("open poll ended with %d %v, want an answer", pe.status, pe.err)
		} else if d := pe.at.Sub(sig); d > 5*time.Second {
			t.Errorf("poll answered %v after SIGTERM", d)
		}
	}

	// The WAL went into the main file.
	if isPostgresURL(dbPath) {
		// Postgres keeps its own WAL.
	} else if fi, err := os.Stat(dbPath + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("WAL holds %d bytes after a clean stop", fi.Size())
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}

	// Every send had a truthful end: stored ones are in the file; a JSON 503
	// stored nothing; one without an answer is found by a retry or not at all.
	p = startWebim(t, bin, "-addr", "127.0.0.1:0", "-db", dbPath, "-rate-limit-exempt", "127.0.0.0/8")
	base = p.url("")
	var stored, refused, noAnswer, dialRefused int
	for _, e := range ends {
		switch {
		case e.err != nil:
			noAnswer++
			if errors.Is(e.err, syscall.ECONNREFUSED) {
				dialRefused++
			}
			st, data, err := apiCall(hc, base, sendToks[e.sender], "POST", "/api/messages",
				map[string]any{"to": recv, "body": "term " + e.cid, "client_msg_id": e.cid})
			if err != nil || (st != http.StatusOK && st != http.StatusCreated) {
				t.Errorf("retry of unanswered %s: %d %s %v", e.cid, st, data, err)
			}
		case e.status == http.StatusCreated || e.status == http.StatusOK:
			stored++
			st, data, err := apiCall(hc, base, sendToks[e.sender], "POST", "/api/messages",
				map[string]any{"to": recv, "body": "term " + e.cid, "client_msg_id": e.cid})
			if err != nil || st != http.StatusOK {
				t.Errorf("%s was answered %d before the stop, but a repeat after restart got %d %s %v", e.cid, e.status, st, data, err)
			}
		case e.status == http.StatusServiceUnavailable:
			refused++
			var eb errorBody
			if json.Unmarshal(e.body, &eb) != nil || eb.Error.Code == "" {
				t.Errorf("503 without an error code: %s", e.body)
			}
		default:
			t.Errorf("send %s ended %d %s", e.cid, e.status, e.body)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Errorf("second run exit code %d", code)
	}
	checkDBInvariants(t, openCheckDB(t, dbPath))
	t.Logf("exit 0 in %v; %d polls answered; sends: %d stored, %d refused with 503, %d without an answer (%d of them: connection refused)",
		took.Round(time.Millisecond), nPollers, stored, refused, noAnswer, dialRefused)
}
