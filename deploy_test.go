package main

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const unitFile = "deploy/webim.service"

// TestDeploy_CrossCompileLinuxARM64 builds the binary as the README tells a
// VPS owner to: static, for linux/arm64. A cold build cache makes it take
// minutes (the SQLite translation is large); -short skips it.
func TestDeploy_CrossCompileLinuxARM64(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling takes long with a cold build cache")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out := filepath.Join(t.TempDir(), "webim")
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Fatalf("built for %v, want aarch64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a dynamic loader; want a static one")
		}
	}
}

// TestDeploy_UnitFile checks the systemd unit's hardening and that
// systemd-analyze verify accepts it. Without systemd-analyze the check is
// skipped, except in CI (CI set), where it must run.
func TestDeploy_UnitFile(t *testing.T) {
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"User=webim", "StateDirectory=webim", "WorkingDirectory=/var/lib/webim",
		"Environment=WEBIM_DB=/var/lib/webim/webim.db", "ExecStart=/usr/local/bin/webim",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"Restart=on-failure", "WantedBy=multi-user.target",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(unit) {
			t.Errorf("%s lacks the line %s", unitFile, want)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing in CI: install systemd (.ci/run)")
		}
		t.Skip("systemd-analyze is not installed")
	}
	// verify also checks that ExecStart exists: point it at an executable
	// that does (this test binary), keeping every other line.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	patched := regexp.MustCompile(`(?m)^ExecStart=\S+`).ReplaceAll(unit, []byte("ExecStart="+self))
	path := filepath.Join(dir, "webim.service")
	if err := os.WriteFile(path, patched, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, analyze, "verify", path)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// verify exits 0 on some warnings (a misspelt value is "ignored"): any
	// output about our unit is a failure.
	if err := cmd.Run(); err != nil || strings.Contains(stderr.String(), "webim.service") {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unitFile, err, stderr.String())
	}
}
