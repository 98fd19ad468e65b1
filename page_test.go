package main

import (
	"io/fs"
	"regexp"
	"slices"
	"testing"
)

// TestPage_EveryModuleIsPreloaded: index.html names in modulepreload hints
// exactly the modules app.js reaches, so a module added later (and its
// imports) does not load a round trip behind the others, which Lighthouse
// counts against the page.
func TestPage_EveryModuleIsPreloaded(t *testing.T) {
	importRe := regexp.MustCompile(`(?m)(?:^import\s[^;]*?from\s*|^import\s*|\bimport\()['"]\./([\w.-]+\.js)['"]`)
	reached := map[string]bool{}
	var walk func(name string)
	walk = func(name string) {
		if reached[name] {
			return
		}
		reached[name] = true
		src, err := fs.ReadFile(staticFS, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, m := range importRe.FindAllStringSubmatch(string(src), -1) {
			walk(m[1])
		}
	}
	walk("app.js")
	delete(reached, "app.js")
	var want []string
	for n := range reached {
		want = append(want, n)
	}
	slices.Sort(want)

	html, err := fs.ReadFile(staticFS, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range regexp.MustCompile(`<link rel="modulepreload" href="/static/([\w.-]+\.js)">`).FindAllStringSubmatch(string(html), -1) {
		got = append(got, m[1])
	}
	slices.Sort(got)
	if len(want) < 5 {
		t.Fatalf("found only %v imported from app.js: the import pattern is out of date", want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("modulepreload hints %v, want the modules app.js reaches: %v", got, want)
	}
}
