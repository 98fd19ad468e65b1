package jsonstr

import (
	"encoding/json"
	"testing"
)

func FuzzAppendMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", `"\`, "<a href='x'>&</a>", "\x00\x1f\x7f\b\f\n\r\t",
		"é 中文 😀", "\u2028\u2029", "\xff\xfe bad \xc3", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := Append(nil, s); string(got) != string(want) {
			t.Fatalf("Append(%q) = %s, encoding/json says %s", s, got, want)
		}
	})
}
