package main

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Fuzz targets for what reads attacker-controlled bytes outside the JSON
// decoder and the field validators (fuzz_test.go): tokens, upload names and
// bytes, CIDR lists, Origin and X-Forwarded-For. Plain go test runs the
// seeds; go test -fuzz=FuzzX explores.

func FuzzHashToken(f *testing.F) {
	tok, _, _ := newToken()
	for _, s := range []string{tok, "", "A", strings.Repeat("A", 43), strings.Repeat("A", 44), strings.Repeat("=", 43), tok + "=", "Bearer " + tok, "\x00" + tok[1:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := hashToken(s)
		if !ok {
			return
		}
		if len(s) != 43 || strings.ContainsAny(s, "=+/ \x00") {
			t.Fatalf("hashToken accepted %q", s)
		}
		if h != tokenHash(sha256.Sum256([]byte(s))) {
			t.Fatalf("hashToken(%q) is not its SHA-256", s)
		}
	})
}

func FuzzCleanFileName(f *testing.F) {
	for _, s := range []string{"a.txt", "../../etc/passwd", `C:\Windows\x.exe`, "", ".", "..", "\x00", "a\u202egnp.exe", "\u2028", "evil\"; filename=x.html", "\xff\xfe", strings.Repeat("é", 300), " / "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := cleanFileName(s)
		switch {
		case got == "" || got == "." || got == "..":
			t.Fatalf("cleanFileName(%q) = %q", s, got)
		case !utf8.ValidString(got):
			t.Fatalf("cleanFileName(%q) = %q, not UTF-8", s, got)
		case strings.ContainsAny(got, `/\`):
			t.Fatalf("cleanFileName(%q) = %q has a separator", s, got)
		case utf8.RuneCountInString(got) > maxFileNameLen:
			t.Fatalf("cleanFileName(%q) is %d code points", s, utf8.RuneCountInString(got))
		}
		for _, r := range got {
			if unicode.IsControl(r) || r == 0x2028 || r == 0x2029 || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("cleanFileName(%q) = %q keeps %U", s, got, r)
			}
		}
	})
}

func FuzzSniffContentType(f *testing.F) {
	for _, s := range []string{"\x89PNG\r\n\x1a\n", "GIF89a", "\xff\xd8\xff", "RIFF\x00\x00\x00\x00WEBPVP", "<svg xmlns='http://www.w3.org/2000/svg'>", "<html><script>", "%PDF-", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		ct := sniffContentType(head)
		if !inlineImageTypes[ct] {
			return
		}
		// Inline only what carries an image format's magic number.
		magic := map[string][]string{
			"image/png":  {"\x89PNG\r\n\x1a\n"},
			"image/jpeg": {"\xff\xd8\xff"},
			"image/gif":  {"GIF87a", "GIF89a"},
			"image/webp": {"RIFF"},
		}
		for _, m := range magic[ct] {
			if bytes.HasPrefix(head, []byte(m)) {
				return
			}
		}
		t.Fatalf("%q sniffed as inline %s", head, ct)
	})
}

func FuzzParsePrefixes(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8", "10.0.0.1, ::1/128", "", ",,,", "1.2.3.4/33", "::ffff:1.2.3.4", "fe80::1%eth0", "0.0.0.0/0", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parsePrefixes(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("parsePrefixes(%q) gave %v", s, p)
			}
		}
	})
}

func FuzzOriginAndForwardedFor(f *testing.F) {
	f.Add("http://chat.example", "chat.example", "10.0.0.1")
	f.Add("null", "chat.example", "")
	f.Add("http://chat.example:80", "chat.example", "1.2.3.4, 127.0.0.1")
	f.Add("https://chat.example@evil.example", "chat.example", "::1, garbage")
	f.Add("HTTP://CHAT.EXAMPLE", "chat.example:80", "\x00")
	a := &App{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	f.Fuzz(func(t *testing.T, origin, host, xff string) {
		r := httptest.NewRequest(http.MethodPost, "/api/messages", nil)
		r.RemoteAddr = "127.0.0.1:5555"
		r.Host = host
		r.Header.Set("Origin", origin)
		r.Header.Set("X-Forwarded-For", xff)
		same := a.sameOrigin(r)
		if origin == "null" && same {
			t.Fatal(`Origin "null" passed as same-origin`)
		}
		if same && strings.ContainsAny(strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(origin), "http://"), "https://"), "/?#@") {
			t.Fatalf("Origin %q with a path or user info passed for host %q", origin, host)
		}
		addr := a.clientAddr(r)
		if !addr.IsValid() {
			t.Fatalf("clientAddr gave an invalid address for X-Forwarded-For %q", xff)
		}
		if a.isTrustedProxy(addr) && addr != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("clientAddr gave trusted proxy %v for %q", addr, xff)
		}
	})
}
