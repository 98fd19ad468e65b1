package main

// The hot path's requests (sends, polls, cleans) on internal/h1's
// keep-alive client: see that package for why not net/http's.

import (
	"fmt"
	"strconv"
	"time"

	"webim/internal/h1"
	"webim/internal/jsonstr"
)

// answerError turns a non-2xx answer into *apiError.
func answerError(a h1.Answer) error {
	return decodeAPIError(a.Status, a.RetryAfter, a.Body)
}

// Timeout of one send or clean, as sendOne had it per attempt.
const requestTimeout = 30 * time.Second

// send posts a message; created is true for 201, false for 200 (a repeat of
// a client_msg_id already stored).
func send(c *h1.Conn, token, to, body, clientMsgID string) (created bool, err error) {
	c.Start("POST", "/api/messages", nil)
	c.Finish(token, func(b []byte) []byte {
		b = append(b, `{"to":`...)
		b = jsonstr.Append(b, to)
		b = append(b, `,"body":`...)
		b = jsonstr.Append(b, body)
		b = append(b, `,"client_msg_id":`...)
		b = jsonstr.Append(b, clientMsgID)
		return append(b, '}')
	})
	a, err := c.RoundTrip(requestTimeout, nil)
	if err != nil {
		return false, err
	}
	switch a.Status {
	case 201:
		return true, nil
	case 200:
		return false, nil
	}
	return false, answerError(a)
}

// poll asks for the events after cursor, waiting up to timeout seconds, and
// decodes the answer into ans (reusing its memory). wrote, when not nil, is
// called once the request is on the wire.
func poll(c *h1.Conn, token string, cursor int64, timeout int, wrote func(), ans *pollAnswer, names map[string]string) error {
	c.Start("GET", "/api/poll?cursor=", func(b []byte) []byte {
		b = strconv.AppendInt(b, cursor, 10)
		b = append(b, "&timeout="...)
		return strconv.AppendInt(b, int64(timeout), 10)
	})
	c.Finish(token, nil)
	a, err := c.RoundTrip(time.Duration(timeout)*time.Second+requestTimeout, wrote)
	if err != nil {
		return err
	}
	if a.Status < 200 || a.Status > 299 {
		return answerError(a)
	}
	if err := decodePoll(a.Body, ans, names); err != nil {
		return fmt.Errorf("GET /api/poll: decoding answer: %w", err)
	}
	return nil
}

// clean acknowledges every message event with seq <= upto; it returns how
// many the server removed.
func clean(c *h1.Conn, token string, upto int64) (int64, error) {
	c.Start("POST", "/api/clean", nil)
	c.Finish(token, func(b []byte) []byte {
		b = append(b, `{"upto":`...)
		b = strconv.AppendInt(b, upto, 10)
		return append(b, '}')
	})
	a, err := c.RoundTrip(requestTimeout, nil)
	if err != nil {
		return 0, err
	}
	if a.Status < 200 || a.Status > 299 {
		return 0, answerError(a)
	}
	return decodeRemoved(a.Body)
}
