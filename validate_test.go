package main

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidate_NormalizeUsername(t *testing.T) {
	for in, want := range map[string]string{
		"abc": "abc", "ABC": "abc", "a.b-c_d": "a.b-c_d", "Zed99": "zed99", "...": "...", "---": "---",
		strings.Repeat("x", 32): strings.Repeat("x", 32),
	} {
		got, err := normalizeUsername(in)
		if err != nil || got != want {
			t.Fatalf("normalizeUsername(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "ab", strings.Repeat("x", 33), "a b", "a@b", "jür", "\u212Aelvin", "ab\x00", "a/b", "a+b", "ﬀab", "ab\n"} {
		if got, err := normalizeUsername(in); !errors.Is(err, errInvalidUsername) {
			t.Fatalf("normalizeUsername(%q) = %q, %v; want invalid_username", in, got, err)
		}
	}
}

func TestValidate_DisplayNameAndPassword(t *testing.T) {
	// Emoji joined by U+200D (one glyph each) and scripts that need the
	// zero-width (non-)joiner are printable names.
	for _, ok := range []string{"a", "Bob", "Zoë 🎉", strings.Repeat("é", 64), "日本語の名前", "Ana 👩‍💻", "👨‍👩‍👧", "می‌خواهم", "🏳️‍🌈"} {
		if err := validateDisplayName(ok); err != nil {
			t.Fatalf("validateDisplayName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("é", 65), "a\nb", "a\tb", "\x00", "a\u200bb\u0007", "\xff", "evil\u202egnp.exe", "\u200d", "a\u2066b"} {
		if err := validateDisplayName(bad); !errors.Is(err, errInvalidDisplayName) {
			t.Fatalf("validateDisplayName(%q) = %v", bad, err)
		}
	}
	for _, ok := range []string{"12345678", "éééééééé", strings.Repeat("🔑", 1024)} {
		if err := validatePassword(ok); err != nil {
			t.Fatalf("validatePassword(%d code points) = %v", utf8.RuneCountInString(ok), err)
		}
	}
	for _, bad := range []string{"", "1234567", "ééééééé", strings.Repeat("x", 1025)} {
		if err := validatePassword(bad); !errors.Is(err, errWeakPassword) {
			t.Fatalf("validatePassword(%d code points) = %v", utf8.RuneCountInString(bad), err)
		}
	}
}

func TestValidate_Body(t *testing.T) {
	for _, ok := range []string{"x", " x ", "\n\tx", strings.Repeat("🎉", 4000), "\u200b", "a\x00b"} {
		if err := validateBody(ok); err != nil {
			t.Fatalf("validateBody(%.20q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", " ", "\n\t\r ", "\u00a0\u3000\u2028", strings.Repeat("é", 4001)} {
		if err := validateBody(bad); !errors.Is(err, errInvalidBody) {
			t.Fatalf("validateBody(%.20q) = %v", bad, err)
		}
	}
	if err := validateClientMsgID(strings.Repeat("🔑", 64)); err != nil {
		t.Fatal(err)
	}
	if err := validateClientMsgID(strings.Repeat("k", 65)); !errors.Is(err, errBadRequest) {
		t.Fatal(err)
	}
}

func TestValidate_DecodeJSONBytes(t *testing.T) {
	var dst messageRequest
	if err := decodeJSONBytes([]byte(` {"to":"bob","body":"hi","extra":[1,{"x":null}]} `+"\n"), &dst); err != nil || *dst.To != "bob" || *dst.Body != "hi" {
		t.Fatalf("decode: %v %+v", err, dst)
	}
	for _, bad := range malformedBodies {
		var dst messageRequest
		if err := decodeJSONBytes([]byte(bad), &dst); !errors.Is(err, errBadRequest) {
			t.Fatalf("decodeJSONBytes(%.30q) = %v, want bad_request", bad, err)
		}
	}
	var c cleanRequest
	if err := decodeJSONBytes([]byte(`{"upto": 1.5}`), &c); !errors.Is(err, errBadRequest) {
		t.Fatalf("a fraction for an integer: %v", err)
	}
}

// Request shapes of the handlers, for decoding tests and fuzzing.
type signupRequest struct {
	Username    *string `json:"username"`
	Password    *string `json:"password"`
	DisplayName *string `json:"display_name"`
}

type loginRequest struct {
	Username *string `json:"username"`
	Password *string `json:"password"`
}

type messageRequest struct {
	To          *string `json:"to"`
	Body        *string `json:"body"`
	ClientMsgID *string `json:"client_msg_id"`
}

type cleanRequest struct {
	Upto *int64 `json:"upto"`
}
