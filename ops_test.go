package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOps_Health(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	resp, data := ts.anon().do("GET", "/api/health", nil)
	checkJSON(t, resp, data, http.StatusOK)
	var out map[string]any
	json.Unmarshal(data, &out)
	if out["status"] != "ok" {
		t.Fatalf("health answered %s", data)
	}
}

// metricValue reads an unlabelled sample from the Prometheus text.
func metricValue(t testing.TB, text, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("metric %s missing from:\n%s", name, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s = %q", name, m[1])
	}
	return v
}

func TestOps_Metrics(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	scrape := func() string {
		t.Helper()
		resp, data := ts.anon().do("GET", "/metrics", nil)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return string(data)
	}
	text := scrape()
	for _, name := range []string{"webim_online_users", "webim_open_polls", "webim_messages_sent_total", "webim_messages_delivered_total", "webim_queued_messages"} {
		metricValue(t, text, name)
		if !strings.Contains(text, "# TYPE "+name+" ") {
			t.Fatalf("%s has no TYPE line", name)
		}
	}
	if !strings.Contains(text, "# TYPE webim_http_request_duration_seconds histogram") ||
		!regexp.MustCompile(`(?m)^webim_http_request_duration_seconds_bucket\{.*le="\+Inf".*\} \d+$`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^webim_http_request_duration_seconds_sum(\{.*\})? \S+$`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^webim_http_request_duration_seconds_count(\{.*\})? \d+$`).MatchString(text) {
		t.Fatalf("no request duration histogram in:\n%s", text)
	}
	if v := metricValue(t, text, "webim_online_users"); v != 2 {
		t.Fatalf("webim_online_users %v, want 2", v)
	}
	sent0 := metricValue(t, text, "webim_messages_sent_total")
	delivered0 := metricValue(t, text, "webim_messages_delivered_total")

	alice.send(bob, "one")
	alice.send(bob, "two")
	_, cursor := bob.drain(0)
	polled := bob.pollAsync(cursor, 30)
	ts.waitPolling(1)
	text = scrape()
	if v := metricValue(t, text, "webim_messages_sent_total"); v != sent0+2 {
		t.Fatalf("webim_messages_sent_total %v, want %v", v, sent0+2)
	}
	if v := metricValue(t, text, "webim_messages_delivered_total"); v < delivered0+2 {
		t.Fatalf("webim_messages_delivered_total %v, want at least %v", v, delivered0+2)
	}
	if v := metricValue(t, text, "webim_queued_messages"); v != 4 { // two copies each
		t.Fatalf("webim_queued_messages %v, want 4", v)
	}
	if v := metricValue(t, text, "webim_open_polls"); v != 1 {
		t.Fatalf("webim_open_polls %v, want 1", v)
	}
	// The open poll's handler at least, and the writer.
	if v := metricValue(t, text, "webim_goroutines"); v < 2 {
		t.Fatalf("webim_goroutines %v, want 2 or more", v)
	}
	alice.send(bob, "wake")
	receive(t, polled, "bob's poll")
	bob.clean(1 << 40)
	if v := metricValue(t, scrape(), "webim_queued_messages"); v != 3 {
		t.Fatalf("after bob's clean webim_queued_messages %v, want 3", v)
	}
}

// startRun runs the whole program on a free port and returns its address
// and a channel with run's result.
func startRun(t *testing.T, ctx context.Context, dbPath string) (string, <-chan error) {
	t.Helper()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	env := func(string) string { return "" }
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-db", dbPath, "-log-level", "error"}, env, strings.NewReader(""), io.Discard, io.Discard, ready)
	}()
	select {
	case addr := <-ready:
		return "http://" + addr, done
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start")
	}
	return "", nil
}

func TestOps_RunAndGracefulShutdown(t *testing.T) {
	t.Parallel()
	dbPath := filepath.Join(t.TempDir(), "webim.db")
	ctx, cancel := context.WithCancel(context.Background())
	base, done := startRun(t, ctx, dbPath)

	post := func(path, token string, body any) (*http.Response, []byte) {
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, data := post("/api/signup", "", map[string]any{"username": "runner", "password": "12345678"}); resp.StatusCode != 201 {
		t.Fatalf("signup: %d %s", resp.StatusCode, data)
	}
	resp, data := post("/api/login", "", map[string]any{"username": "runner", "password": "12345678"})
	var li struct{ Token string }
	json.Unmarshal(data, &li)
	if resp.StatusCode != 200 || li.Token == "" {
		t.Fatalf("login: %d %s", resp.StatusCode, data)
	}

	// An open poll is answered at shutdown, and run returns nil in time.
	pollDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/api/poll?cursor=0&timeout=60", nil)
		req.Header.Set("Authorization", "Bearer "+li.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			pollDone <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		pollDone <- resp.StatusCode
	}()
	time.Sleep(200 * time.Millisecond) // let the poll start waiting; its answer is checked either way
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10 s of the signal")
	}
	if code := <-pollDone; code != http.StatusOK {
		t.Fatalf("the open poll was answered %d at shutdown", code)
	}

	// The database was closed cleanly: the session is there on the next start.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	base, done = startRun(t, ctx2, dbPath)
	req, _ := http.NewRequest("GET", base+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+li.Token)
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 200 {
		t.Fatalf("after a restart of the program: %d", resp2.StatusCode)
	}
	cancel2()
	if err := <-done; err != nil {
		t.Fatalf("second run returned %v", err)
	}
}

func TestOps_Version(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-version"}, func(string) string { return "" }, strings.NewReader(""), &out, io.Discard, nil)
	if err != nil || !strings.HasPrefix(out.String(), "webim ") {
		t.Fatalf("-version: %v, %q", err, out.String())
	}
	if err := run(context.Background(), []string{"-no-such-flag"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard, nil); err == nil {
		t.Fatal("an unknown flag was accepted")
	}
}

func TestConfig_FlagsAndEnvironment(t *testing.T) {
	t.Parallel()
	envOf := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := parseConfig(nil, envOf(), io.Discard)
	if err != nil || c.Addr != ":8000" || c.DBPath != "./webim.db" || c.MaxFileSize != 10<<20 || c.MaxQueue != 100000 || len(c.RateLimitExempt) != 0 {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	c, err = parseConfig(nil, envOf("WEBIM_ADDR", "127.0.0.1:9000", "WEBIM_DB", "/tmp/x.db", "WEBIM_MAX_FILE_SIZE", "1048576",
		"WEBIM_MAX_QUEUE", "50", "WEBIM_RATE_LIMIT_EXEMPT", "10.0.0.0/8, 192.168.1.1"), io.Discard)
	if err != nil || c.Addr != "127.0.0.1:9000" || c.DBPath != "/tmp/x.db" || c.MaxFileSize != 1<<20 || c.MaxQueue != 50 ||
		fmt.Sprint(c.RateLimitExempt) != "[10.0.0.0/8 192.168.1.1/32]" {
		t.Fatalf("from the environment: %+v, %v", c, err)
	}
	c, err = parseConfig([]string{"-addr", ":1", "-db", "a.db", "-max-file-size", "10MiB", "-max-queue", "7", "-rate-limit-exempt", "::1/128"},
		envOf("WEBIM_ADDR", "127.0.0.1:9000", "WEBIM_MAX_FILE_SIZE", "1", "WEBIM_MAX_QUEUE", "50"), io.Discard)
	if err != nil || c.Addr != ":1" || c.DBPath != "a.db" || c.MaxFileSize != 10<<20 || c.MaxQueue != 7 || fmt.Sprint(c.RateLimitExempt) != "[::1/128]" {
		t.Fatalf("flags over the environment: %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{"-max-file-size", "ten"}, {"-max-file-size", "0"}, {"-max-file-size", "-5"},
		{"-max-queue", "0"}, {"-max-queue", "many"},
		{"-rate-limit-exempt", "10.0.0.0/33"}, {"-rate-limit-exempt", "not-an-ip"},
		{"stray"},
	} {
		if _, err := parseConfig(args, envOf(), io.Discard); err == nil {
			t.Fatalf("%v was accepted", args)
		}
	}
	if _, err := parseConfig(nil, envOf("WEBIM_MAX_FILE_SIZE", "lots"), io.Discard); err == nil {
		t.Fatal("a bad WEBIM_MAX_FILE_SIZE was accepted")
	}
}
