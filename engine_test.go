package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"webim/internal/pgtest"
)

// One suite, two engines. TestMain runs the package's tests on SQLite, then
// runs again, on PostgreSQL, every test that stored something through an
// engine the first time (it called newTestServer or engineDB). Each such
// test gets a fresh database of its own on a private, throw-away Postgres
// cluster (internal/pgtest); restarts reopen the same database.
//
// WEBIM_TEST_ENGINES chooses the passes (default "sqlite,postgres"). Where
// Postgres cannot be started the second pass skips its tests, loudly, except
// under CI=true, where that fails.

// engine is the engine of the current pass: "sqlite" or "postgres".
var engine = "sqlite"

// engineTests are the top-level tests that used an engine in the SQLite
// pass: the ones worth running on the next engine.
var engineTests struct {
	sync.Mutex
	names map[string]bool
}

// usesEngine records that t's top-level test stores through the engine.
func usesEngine(t testing.TB) {
	name, _, _ := strings.Cut(t.Name(), "/")
	engineTests.Lock()
	defer engineTests.Unlock()
	if engineTests.names == nil {
		engineTests.names = map[string]bool{}
	}
	engineTests.names[name] = true
}

// engineDB returns what -db should name for a new database of the current
// pass: a file in the test's temp dir, or a fresh Postgres database.
func engineDB(t testing.TB) string {
	t.Helper()
	usesEngine(t)
	if engine == "postgres" {
		return pgtest.NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), "webim.db")
}

// sqliteOnly skips t on every engine but SQLite: it tests SQLite's file.
func sqliteOnly(t testing.TB) {
	t.Helper()
	if engine != "sqlite" {
		t.Skip("about the SQLite engine's own file")
	}
}

// secondPassSkips are engine-neutral tests that happen to start a server:
// the page is the same whatever stores its data, and driving Chromium twice
// would only double the suite's longest tests.
var secondPassSkips = regexp.MustCompile(`^TestBrowser`)

func TestMain(m *testing.M) {
	code := 0
	passes := strings.Split(envOr("WEBIM_TEST_ENGINES", "sqlite,postgres"), ",")
	for i, pass := range passes {
		engine = strings.TrimSpace(pass)
		if i > 0 {
			// A failure in one pass does not stop the next: CI then tells
			// both engines' results at once.
			names := secondPassTests()
			if len(names) == 0 {
				continue
			}
			if err := restrictRun(names); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
				break
			}
		}
		fmt.Printf("=== engine %s\n", engine)
		if c := m.Run(); c != 0 {
			code = c
		}
	}
	pgtest.Stop()
	os.Exit(code)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// secondPassTests are the engine tests of the first pass, less the skips.
func secondPassTests() []string {
	engineTests.Lock()
	defer engineTests.Unlock()
	var names []string
	for name := range engineTests.names {
		if !secondPassSkips.MatchString(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// restrictRun narrows -test.run to exactly names for the next m.Run (which
// reads the flag anew each time); -test.run's sub-test part, if any, stays.
func restrictRun(names []string) error {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	run := "^(" + strings.Join(quoted, "|") + ")$"
	if prev := flagValue("test.run"); prev != "" {
		if _, sub, ok := strings.Cut(prev, "/"); ok {
			run += "/" + sub
		}
	}
	return setFlag("test.run", run)
}

func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

func setFlag(name, value string) error { return flag.Set(name, value) }
