package main

// JSON answers. Poll answers and sends are most of the traffic, so their
// shapes are written by hand instead of by encoding/json's reflection; the
// bytes are exactly what encoding/json would write (a fuzz test holds them
// to it). Every answer is built in a pooled buffer and sent with its
// Content-Length in one write, never chunked.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"
)

// jsonAppender is a value that writes its own JSON, as encoding/json would.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// largeAnswer is the size above which a buffer is not kept for reuse, so one
// huge answer does not pin its memory in the pool.
const largeAnswer = 64 << 10

func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := answerBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= largeAnswer {
			answerBuffers.Put(buf)
		}
	}()
	if a, ok := v.(jsonAppender); ok {
		buf.Write(a.appendJSON(buf.AvailableBuffer()))
		buf.WriteByte('\n')
	} else if err := json.NewEncoder(buf).Encode(v); err != nil {
		// Only a bug can make an answer unencodable: say so plainly.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"Something went wrong on the server."}}` + "\n")
	}
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	w.WriteHeader(status)
	// A write error means the client is gone; nothing better can be said.
	w.Write(buf.Bytes())
}

var contentTypeJSON = []string{"application/json"}

func (a pollAnswer) appendJSON(b []byte) []byte {
	b = append(b, `{"cursor":`...)
	b = strconv.AppendInt(b, a.Cursor, 10)
	b = append(b, `,"events":`...)
	if a.Events == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i := range a.Events {
		if i > 0 {
			b = append(b, ',')
		}
		b = a.Events[i].appendJSON(b)
	}
	return append(b, "]}"...)
}

// sendAnswer is the answer to a send: {"message": ...}.
type sendAnswer struct {
	Message Message `json:"message"`
}

func (a sendAnswer) appendJSON(b []byte) []byte {
	b = append(b, `{"message":`...)
	b = a.Message.appendJSON(b)
	return append(b, '}')
}

func (e *Event) appendJSON(b []byte) []byte {
	if len(e.User) > 0 {
		// Notices are rare; their raw user object gets encoding/json's
		// own checks and compaction.
		out, err := json.Marshal(e)
		if err != nil {
			return append(b, "null"...)
		}
		return append(b, out...)
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"at":`...)
	b = appendJSONString(b, e.At)
	if e.Message != nil {
		b = append(b, `,"message":`...)
		b = e.Message.appendJSON(b)
	}
	return append(b, '}')
}

func (m *Message) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, m.ID, 10)
	b = append(b, `,"from":`...)
	b = appendJSONString(b, m.From)
	b = append(b, `,"to":`...)
	b = appendJSONString(b, m.To)
	b = append(b, `,"body":`...)
	b = appendJSONString(b, m.Body)
	b = append(b, `,"sent_at":`...)
	b = appendJSONString(b, m.SentAt)
	if f := m.File; f != nil {
		b = append(b, `,"file":{"id":`...)
		b = strconv.AppendInt(b, f.ID, 10)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, f.Name)
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, f.Size, 10)
		b = append(b, `,"content_type":`...)
		b = appendJSONString(b, f.ContentType)
		b = append(b, `,"url":`...)
		b = appendJSONString(b, f.URL)
		b = append(b, '}')
	}
	if m.ClientMsgID != "" {
		b = append(b, `,"client_msg_id":`...)
		b = appendJSONString(b, m.ClientMsgID)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with HTML escaping on:
// <, > and & as \u escapes, U+2028 and U+2029 escaped, invalid UTF-8 as
// U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
