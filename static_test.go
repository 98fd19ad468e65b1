package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

// getRaw fetches path with the given request headers and no transparent
// decompression, so the test sees the bytes on the wire.
func getRaw(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func decode(t *testing.T, encoding string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch encoding {
	case "":
		return b
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	default:
		t.Fatalf("unexpected Content-Encoding %q", encoding)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", encoding, err)
	}
	return out
}

func TestStatic_CompressedByAcceptEncodingWithETags(t *testing.T) {
	ts := newTestServer(t)
	for _, path := range []string{"/", "/static/app.js", "/static/style.css", "/static/icon.svg"} {
		name := strings.TrimPrefix(path, "/static/")
		if path == "/" {
			name = "index.html"
		}
		want, err := fs.ReadFile(staticFS, name)
		if err != nil {
			t.Fatal(err)
		}
		etags := map[string]string{}
		for _, c := range []struct{ accept, want string }{
			{"", ""},
			{"gzip", "gzip"},
			{"gzip, deflate, br, zstd", "br"},
			{"br;q=0, gzip;q=0.5", "gzip"},
			{"gzip;q=0, br;q=0", ""},
			{"*", "br"},
			{"identity", ""},
			{"br;q=0.2, gzip;q=0.8", "gzip"},
		} {
			resp, body := getRaw(t, ts.url(path), map[string]string{"Accept-Encoding": c.accept})
			enc := resp.Header.Get("Content-Encoding")
			if path == "/static/icon.svg" && c.want != "" && enc == "" {
				c.want = "" // too small to gain from compression
			}
			if resp.StatusCode != http.StatusOK || enc != c.want {
				t.Errorf("GET %s, Accept-Encoding %q: %d, Content-Encoding %q; want 200 %q", path, c.accept, resp.StatusCode, enc, c.want)
				continue
			}
			if got := decode(t, enc, body); !bytes.Equal(got, want) {
				t.Errorf("GET %s (%q): decoded body differs from the embedded file", path, enc)
			}
			if enc != "" && len(body) >= len(want) {
				t.Errorf("GET %s (%q): %d bytes, not smaller than %d", path, enc, len(body), len(want))
			}
			if v := resp.Header.Get("Vary"); v != "Accept-Encoding" {
				t.Errorf("GET %s: Vary %q", path, v)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("GET %s: Cache-Control %q, want no-cache (always revalidated)", path, cc)
			}
			etag := resp.Header.Get("ETag")
			if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 10 {
				t.Errorf("GET %s: ETag %q, want a strong one", path, etag)
			}
			if prev, ok := etags[enc]; ok && prev != etag {
				t.Errorf("GET %s (%q): ETag changed from %s to %s", path, enc, prev, etag)
			}
			etags[enc] = etag
			// A returning visitor: 304 with no body for the same encoding.
			resp2, body2 := getRaw(t, ts.url(path), map[string]string{"Accept-Encoding": c.accept, "If-None-Match": etag})
			if resp2.StatusCode != http.StatusNotModified || len(body2) != 0 || resp2.Header.Get("ETag") != etag {
				t.Errorf("GET %s with If-None-Match %s: %d, %d bytes, ETag %q; want 304 and nothing", path, etag, resp2.StatusCode, len(body2), resp2.Header.Get("ETag"))
			}
		}
		// Each encoding is its own representation, with its own strong ETag.
		seen := map[string]bool{}
		for _, e := range etags {
			if seen[e] {
				t.Errorf("GET %s: two encodings share the ETag %s", path, e)
			}
			seen[e] = true
		}
		// Another encoding's ETag does not match.
		if gz, ok := etags["gzip"]; ok {
			resp, _ := getRaw(t, ts.url(path), map[string]string{"Accept-Encoding": "br", "If-None-Match": gz})
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s as br with the gzip ETag: %d, want 200", path, resp.StatusCode)
			}
		}
	}
}

func TestStatic_APIAnswersAreNeverCompressed(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.newUser("alice")
	for _, c := range []struct {
		method, path, body string
	}{
		{"POST", "/api/login", `{"username":"` + alice.username + `","password":"` + alice.password + `"}`},
		{"GET", "/api/me", ""},
		{"GET", "/api/config", ""},
		{"GET", "/api/health", ""},
		{"GET", "/metrics", ""},
	} {
		req, _ := http.NewRequest(c.method, ts.url(c.path), strings.NewReader(c.body))
		req.Header.Set("Accept-Encoding", "br, gzip")
		req.Header.Set("Authorization", "Bearer "+alice.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s %s: %d, Content-Encoding %q; want 200 uncompressed", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Encoding"))
		}
		if c.path == "/api/login" {
			alice.login() // the login above replaced alice's session
		}
	}
}

func TestStatic_UnknownFilesAre404InTheAPIShape(t *testing.T) {
	ts := newTestServer(t)
	for _, path := range []string{"/static/", "/static/nope.js", "/static/index.html", "/static/../go.mod", "/static/%2e%2e/go.mod"} {
		resp, body := ts.anon().do("GET", path, nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"not_found"`) {
			t.Errorf("GET %s: %d %s, want 404 not_found", path, resp.StatusCode, body)
		}
	}
}

func TestAcceptedEncodings(t *testing.T) {
	q := acceptedEncodings([]string{"gzip;q=0.5, BR ; q=1.0", "x-gzip;q=0.7, zstd;q=bogus, *;q=0"})
	if q["gzip"] != 0.7 || q["br"] != 1 || q["zstd"] != 0 || q["*"] != 0 {
		t.Errorf("acceptedEncodings = %v", q)
	}
}
