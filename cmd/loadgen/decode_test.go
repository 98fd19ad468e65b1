package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

var pollSamples = []string{
	`{"cursor":0,"events":[]}`,
	`{"cursor":12,"events":[{"seq":12,"type":"message","at":"2026-01-01T00:00:00.000Z","message":{"id":5,"from":"a","to":"b","body":"lg abc 7","sent_at":"2026-01-01T00:00:00.000Z","client_msg_id":"x-1-7"}}]}` + "\n",
	` { "events" : [ {"type":"presence","seq":3,"user":{"username":"c","online":true,"tags":[1,2.5e3,-0.1,null,false,true,{"x":[]}]}},
	   {"seq":4,"type":"message","message":{"id":6,"from":"b","to":"a","body":"\u003cb\u003e \"q\" \\ \/ \n\t\u00e9 \ud83d\ude00 \ud800 x"}} ], "cursor" : 4 } `,
	`{"cursor":9,"events":null}`,
	`{"cursor":9,"events":[{"seq":1,"type":"message","message":null}]}`,
	`{"events":[{"seq":1,"type":"session_replaced","at":"x"}],"cursor":1,"extra":{"a":"\u0000"}}`,
	`{"cursor":1,"events":[{"seq":1,"type":"message","message":{"body":"bad utf8 \xff\xfe é"}}]}`,
	`{"cursor":1,"events":[{"seq":1,"type":"message","message":{"body":"bad \xc3 and escape \\n"}}]}`,
	`{"cursor":-42,"events":[{"seq":999999999999999999,"type":"message","message":{"id":-0}}]}`,
	`{"cursor":9223372036854775807,"events":[{"seq":-9223372036854775808}]}`,
	`{"cursor":9223372036854775808}`,
	// Not answers: both must refuse them.
	`{"cursor":1.5,"events":[]}`,
	`{"cursor":1,"events":[}`,
	`{"cursor":"1"}`,
	`{"cursor":1} x`,
	`{"cursor":01}`,
	`{"cursor":1,"events":[{"type":"a` + "\x01" + `"}]}`,
	`[]`,
	``,
}

// decodePoll agrees with encoding/json, on fresh and on reused answers.
func TestDecodePoll_AgreesWithEncodingJSON(t *testing.T) {
	var reused pollAnswer
	for _, in := range pollSamples {
		checkDecodePoll(t, in, &reused)
	}
}

func checkDecodePoll(t *testing.T, in string, reused *pollAnswer) {
	t.Helper()
	var want pollAnswer
	werr := json.Unmarshal([]byte(in), &want)
	var got pollAnswer
	gerr := decodePoll([]byte(in), &got, map[string]string{"a": "a", "message": "message"})
	rerr := decodePoll([]byte(in), reused, nil)
	if (werr == nil) != (gerr == nil) || (gerr == nil) != (rerr == nil) {
		t.Fatalf("%q: encoding/json %v, decodePoll %v, reused %v", in, werr, gerr, rerr)
	}
	if werr != nil {
		return
	}
	norm := func(a pollAnswer) pollAnswer {
		a.msgs = nil
		if len(a.Events) == 0 {
			a.Events = nil
		}
		return a
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		t.Fatalf("%q:\ndecodePoll    %s\nencoding/json %s", in, gj, wj)
	}
	if g, w := norm(*reused), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%q: reused answer differs", in)
	}
}

func FuzzDecodePoll(f *testing.F) {
	for _, s := range pollSamples {
		f.Add(s)
	}
	var reused pollAnswer
	f.Fuzz(func(t *testing.T, in string) {
		checkDecodePoll(t, in, &reused)
	})
}

func TestDecodeRemoved(t *testing.T) {
	if n, err := decodeRemoved([]byte(`{"removed":42}` + "\n")); err != nil || n != 42 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := decodeRemoved([]byte(`{"removed":"x"}`)); err == nil {
		t.Fatal("accepted a string")
	}
}

func BenchmarkDecodePoll(b *testing.B) {
	in := []byte(pollSamples[1])
	names := map[string]string{"a": "a", "b": "b", "message": "message"}
	var ans pollAnswer
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := decodePoll(in, &ans, names); err != nil {
			b.Fatal(err)
		}
	}
}
