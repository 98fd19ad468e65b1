package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// checkDecodeErr fails unless err is nil or a 400/413 API error.
func checkDecodeErr(t *testing.T, body []byte, err error) {
	t.Helper()
	if err == nil {
		if !json.Valid(body) {
			t.Fatalf("decodeJSONBytes accepted invalid JSON %q", body)
		}
		return
	}
	e, ok := asAPIError(err)
	if !ok || e.Status != http.StatusBadRequest {
		t.Fatalf("decodeJSONBytes(%q) = %v, want a 400 API error", body, err)
	}
}

func FuzzDecodeJSONBytes(f *testing.F) {
	for _, s := range malformedBodies {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"username":"bob","password":"12345678","display_name":"Bob"}`,
		`{"to":"bob","body":"hi","client_msg_id":"x"}`,
		`{"upto":5}`, `{"upto":-5}`, `{"upto":1e400}`, `{"upto":"5"}`, `null`, `{}`,
		`{"to":null}`, `{"body":"\ud800"}`, `{"to":"a","to":"b"}`, "{\"body\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var s signupRequest
		checkDecodeErr(t, body, decodeJSONBytes(body, &s))
		var l loginRequest
		checkDecodeErr(t, body, decodeJSONBytes(body, &l))
		var m messageRequest
		checkDecodeErr(t, body, decodeJSONBytes(body, &m))
		var c cleanRequest
		checkDecodeErr(t, body, decodeJSONBytes(body, &c))
	})
}

func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"abc", "ABC", "a.b-c_d", "ab", "\u212Aelvin", "jür", "ﬀab", strings.Repeat("x", 33), "ıııı", "ſſſ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := normalizeUsername(in)
		if err != nil {
			if !errors.Is(err, errInvalidUsername) {
				t.Fatalf("normalizeUsername(%q): %v", in, err)
			}
			return
		}
		n := utf8.RuneCountInString(got)
		if n < 3 || n > 32 || got != strings.ToLower(in) || !strings.EqualFold(got, in) {
			t.Fatalf("normalizeUsername(%q) = %q", in, got)
		}
		for _, r := range got {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
				t.Fatalf("normalizeUsername(%q) = %q holds %q", in, got, r)
			}
		}
		if again, err := normalizeUsername(got); err != nil || again != got {
			t.Fatalf("not idempotent on %q", got)
		}
	})
}

func FuzzValidateBody(f *testing.F) {
	for _, s := range []string{"x", " ", "", "\u00a0", strings.Repeat("é", 4000), strings.Repeat("é", 4001), "\xff", " \xff "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		err := validateBody(in)
		hasText := strings.IndexFunc(in, func(r rune) bool { return !unicode.IsSpace(r) }) >= 0
		want := hasText && utf8.RuneCountInString(in) <= 4000
		if (err == nil) != want {
			t.Fatalf("validateBody(%q) = %v, want ok=%v", in, err, want)
		}
		if err != nil && !errors.Is(err, errInvalidBody) {
			t.Fatalf("validateBody(%q) = %v", in, err)
		}
	})
}

func FuzzValidateDisplayName(f *testing.F) {
	for _, s := range []string{"a", "Bob", "", " ", "a\nb", strings.Repeat("é", 64), strings.Repeat("é", 65), "\xff", "\u200b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		err := validateDisplayName(in)
		if err == nil {
			n := utf8.RuneCountInString(in)
			if !utf8.ValidString(in) || n < 1 || n > 64 {
				t.Fatalf("validateDisplayName accepted %q", in)
			}
			for _, r := range in {
				if !unicode.IsPrint(r) && r != '\u200c' && r != '\u200d' {
					t.Fatalf("validateDisplayName accepted %q with %U", in, r)
				}
			}
		} else if !errors.Is(err, errInvalidDisplayName) {
			t.Fatalf("validateDisplayName(%q) = %v", in, err)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "10MiB", "1kıB", "ſB", "1 GB", "-1", "99999999999GiB", "B", "", "1e3", "4611686018427387904"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := parseSize(in)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseSize(%q) = %d", in, n)
		}
	})
}
