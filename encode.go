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

	"webim/internal/jsonstr"
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
	// Undelivered are the group members at their queue cap.
	Undelivered []string `json:"undelivered,omitempty"`
}

func (a sendAnswer) appendJSON(b []byte) []byte {
	b = append(b, `{"message":`...)
	b = a.Message.appendJSON(b)
	if len(a.Undelivered) > 0 {
		b = append(b, `,"undelivered":[`...)
		for i, u := range a.Undelivered {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonstr.Append(b, u)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (e *Event) appendJSON(b []byte) []byte {
	if len(e.User) > 0 || len(e.Group) > 0 {
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
	b = jsonstr.Append(b, e.Type)
	b = append(b, `,"at":`...)
	b = jsonstr.Append(b, e.At)
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
	b = jsonstr.Append(b, m.From)
	if m.To != "" {
		b = append(b, `,"to":`...)
		b = jsonstr.Append(b, m.To)
	}
	if m.Group != 0 {
		b = append(b, `,"group":`...)
		b = strconv.AppendInt(b, m.Group, 10)
	}
	b = append(b, `,"body":`...)
	b = jsonstr.Append(b, m.Body)
	b = append(b, `,"sent_at":`...)
	b = jsonstr.Append(b, m.SentAt)
	if f := m.File; f != nil {
		b = append(b, `,"file":{"id":`...)
		b = strconv.AppendInt(b, f.ID, 10)
		b = append(b, `,"name":`...)
		b = jsonstr.Append(b, f.Name)
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, f.Size, 10)
		b = append(b, `,"content_type":`...)
		b = jsonstr.Append(b, f.ContentType)
		b = append(b, `,"url":`...)
		b = jsonstr.Append(b, f.URL)
		b = append(b, '}')
	}
	if m.ClientMsgID != "" {
		b = append(b, `,"client_msg_id":`...)
		b = jsonstr.Append(b, m.ClientMsgID)
	}
	return append(b, '}')
}
