package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
)

// encodingJSON is what the hand-written encoder must equal byte for byte.
func encodingJSON(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func handWritten(v jsonAppender) []byte {
	return append(v.appendJSON(nil), '\n')
}

func sampleAnswer(body, name string) pollAnswer {
	file := &FileInfo{ID: 7, Name: name, Size: 1 << 40, ContentType: "image/png", URL: fileURL(7)}
	return pollAnswer{Cursor: 42, Events: []Event{
		{Seq: 40, Type: "message", At: "2026-11-25T16:00:00.000Z", Message: &Message{
			ID: 1, From: "alice", To: "bob", Body: body, SentAt: "2026-11-25T16:00:00.000Z"}},
		{Seq: 41, Type: "message", At: "2026-11-25T16:00:00.001Z", Message: &Message{
			ID: -2, From: "bob", To: "alice", Body: body, SentAt: "x", File: file, ClientMsgID: body}},
		{Seq: 42, Type: "presence", At: "t", User: json.RawMessage(`{"username":"carol", "online":true,"display_name":"<b>&"}`)},
		{Seq: 43, Type: "session_replaced", At: "t"},
	}}
}

func TestHandWrittenJSONMatchesEncodingJSON(t *testing.T) {
	bodies := []string{
		"", "hello", `quote " backslash \ slash /`, "<script>&amp;</script>",
		"tab\tnewline\nreturn\rback\bform\f", "\x00\x01\x1f\x7f", "é ü 中文 😀",
		"line\u2028para\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate",
	}
	for i, body := range bodies {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			a := sampleAnswer(body, body+".png")
			if got, want := handWritten(a), encodingJSON(t, a); !bytes.Equal(got, want) {
				t.Errorf("poll answer\n got %s\nwant %s", got, want)
			}
			s := sendAnswer{Message: *a.Events[1].Message}
			if got, want := handWritten(s), encodingJSON(t, s); !bytes.Equal(got, want) {
				t.Errorf("send answer\n got %s\nwant %s", got, want)
			}
		})
	}
	for _, a := range []pollAnswer{{Cursor: 3}, {Cursor: 0, Events: []Event{}}} {
		if got, want := handWritten(a), encodingJSON(t, a); !bytes.Equal(got, want) {
			t.Errorf("empty answer\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzHandWrittenJSON(f *testing.F) {
	for _, s := range []string{"", "a<b>&c", "\u2028\xff\"\\\n", "😀\x00"} {
		f.Add(s, s, int64(5))
	}
	f.Fuzz(func(t *testing.T, body, name string, n int64) {
		a := sampleAnswer(body, name)
		a.Cursor = n
		a.Events[0].Message.ID = n
		if got, want := handWritten(a), encodingJSON(t, a); !bytes.Equal(got, want) {
			t.Fatalf("poll answer\n got %q\nwant %q", got, want)
		}
	})
}

func TestWriteJSONSetsLengthAndType(t *testing.T) {
	for _, v := range []any{sampleAnswer("hi", "f"), map[string]int{"removed": 3}} {
		rec := httptest.NewRecorder()
		writeJSON(rec, 201, v)
		if rec.Code != 201 || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
		}
		if n, _ := strconv.Atoi(rec.Header().Get("Content-Length")); n != rec.Body.Len() {
			t.Fatalf("Content-Length %q for %d bytes", rec.Header().Get("Content-Length"), rec.Body.Len())
		}
		if !bytes.Equal(rec.Body.Bytes(), encodingJSON(t, v)) {
			t.Fatalf("body %s", rec.Body.Bytes())
		}
	}
}
