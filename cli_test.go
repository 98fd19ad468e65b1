package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// runCLI runs the program in-process with stdin and returns its output.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(string) string { return "" }, strings.NewReader(stdin), &out, &errOut, nil)
	return out.String(), errOut.String(), err
}

func TestRun_Version(t *testing.T) {
	out, _, err := runCLI(t, "", "-version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "webim "+version) || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("-version printed %q", out)
	}
}

func TestRun_HelpExitsCleanly(t *testing.T) {
	_, stderr, err := runCLI(t, "", "-h")
	if !errors.Is(err, errHelpShown) || exitCode(err) != 0 {
		t.Fatalf("-h: %v (exit %d)", err, exitCode(err))
	}
	for _, f := range []string{"-tls-cert", "-acme-domain", "-http-addr", "-log-format", "-signup", "webim user ...", "webim stats ..."} {
		if !strings.Contains(stderr, f) {
			t.Errorf("-h does not mention %s", f)
		}
	}
}

func TestNewLogger_Formats(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "info", "json").Info("hello", "n", 1)
	newLogger(&buf, "info", "json").Debug("hidden")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("json log line %q: %v", buf.String(), err)
	}
	if rec["msg"] != "hello" || rec["level"] != "INFO" || rec["n"] != 1.0 {
		t.Fatalf("json log line %v", rec)
	}
	buf.Reset()
	newLogger(&buf, "debug", "text").Debug("hello")
	if !strings.Contains(buf.String(), "level=DEBUG msg=hello") {
		t.Fatalf("text log line %q", buf.String())
	}
}

func TestConfig_LogFormatFromEnvironment(t *testing.T) {
	c, err := parseConfig(nil, func(k string) string { return map[string]string{"WEBIM_LOG_FORMAT": "json"}[k] }, io.Discard)
	if err != nil || c.LogFormat != "json" {
		t.Fatalf("WEBIM_LOG_FORMAT=json: %+v %v", c, err)
	}
	if c, _ := parseConfig(nil, func(string) string { return "" }, io.Discard); c.LogFormat != "text" {
		t.Fatalf("default log format %q", c.LogFormat)
	}
}

func TestRun_LogFormatJSON(t *testing.T) {
	r := runInProcess(t, "-addr", "127.0.0.1:0", "-log-format", "json")
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr.String()), "\n")
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q is not JSON", l)
		}
	}
	if len(lines) < 2 {
		t.Fatalf("expected start and stop lines, got %q", lines)
	}
}

func TestCLI_HelpListsCommands(t *testing.T) {
	out, _, err := runCLI(t, "", "help")
	if err != nil {
		t.Fatalf("webim help: %v", err)
	}
	for _, want := range []string{"backup", "user", "stats", "help"} {
		if !strings.Contains(out, "webim "+want) {
			t.Errorf("webim help lacks %q:\n%s", want, out)
		}
	}
}
