package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of API.md, counted in Unicode code points.
const (
	minUsernameLen    = 3
	maxUsernameLen    = 32
	maxDisplayNameLen = 64
	minPasswordLen    = 8
	maxPasswordLen    = 1024
	maxBodyLen        = 4000
	maxClientMsgIDLen = 64

	// maxJSONBody bounds every JSON request. The largest valid one is a
	// 4000-code-point message written entirely as \u escapes of surrogate
	// pairs (12 bytes each), well under this.
	maxJSONBody = 128 << 10

	// jsonBodyTimeout bounds reading a JSON request body.
	jsonBodyTimeout = 15 * time.Second
)

// normalizeUsername validates a username and returns its stored, lower-case form.
// Only ASCII is accepted, so Unicode case folding can never turn a look-alike
// (such as the Kelvin sign) into a valid name.
func normalizeUsername(s string) (string, error) {
	if len(s) < minUsernameLen || len(s) > maxUsernameLen {
		return "", errInvalidUsername
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		case c >= 'A' && c <= 'Z':
			b[i] = c + ('a' - 'A')
		default:
			return "", errInvalidUsername
		}
	}
	return string(b), nil
}

// validateDisplayName accepts 1 to 64 printable code points, not all spaces.
// The zero-width joiner and non-joiner count as printable: emoji such as
// 👩‍💻 and scripts such as Persian need them. Other format characters
// (bidi overrides among them) do not.
func validateDisplayName(s string) error {
	if !utf8.ValidString(s) {
		return errInvalidDisplayName
	}
	n := utf8.RuneCountInString(s)
	if n < 1 || n > maxDisplayNameLen {
		return errInvalidDisplayName
	}
	visible := false
	for _, r := range s {
		switch {
		case r == '\u200c' || r == '\u200d':
		case !unicode.IsPrint(r):
			return errInvalidDisplayName
		case !unicode.IsSpace(r):
			visible = true
		}
	}
	if !visible {
		return errInvalidDisplayName
	}
	return nil
}

func validatePassword(s string) error {
	n := utf8.RuneCountInString(s)
	if n < minPasswordLen || n > maxPasswordLen {
		return errWeakPassword
	}
	return nil
}

// validateBody accepts at most 4000 code points with at least one that is not
// white space; the body is otherwise stored exactly as sent.
func validateBody(s string) error {
	if utf8.RuneCountInString(s) > maxBodyLen {
		return errInvalidBody
	}
	if strings.TrimFunc(s, unicode.IsSpace) == "" {
		return errInvalidBody
	}
	return nil
}

func validateClientMsgID(s string) error {
	if utf8.RuneCountInString(s) > maxClientMsgIDLen {
		return errBadRequest.withMessage("client_msg_id is at most %d characters.", maxClientMsgIDLen)
	}
	return nil
}

// decodeJSON reads one JSON object of at most maxJSONBody bytes into dst.
// Unknown fields are ignored (newer clients, older servers); trailing data,
// wrong types and oversize bodies are client errors.
//
// The body is read as JSON whatever Content-Type says: a client that forgot
// the header still works, and anything that is not JSON is a 400 all the
// same. Cross-site forms are kept out by the Origin check and the
// SameSite=Strict cookie, not by the media type.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	// The server's ReadTimeout is sized for a 10 MiB upload; a JSON body
	// of at most maxJSONBody gets far less, so a client that dribbles it
	// cannot hold the connection for minutes. The deadline is lifted once
	// the body is in; after a failed read it stays, so the server's drain
	// of the unread rest fails too and the connection closes.
	// (ErrNotSupported, as from a recorder, is ignored.)
	rc := http.NewResponseController(w)
	deadlineSet := rc.SetReadDeadline(time.Now().Add(jsonBodyTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err == nil && deadlineSet {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errTooLarge
		}
		return errBadRequest.withMessage("The request body could not be read.")
	}
	return decodeJSONBytes(body, dst)
}

// decodeJSONBytes is decodeJSON's parser, apart so it can be fuzzed.
func decodeJSONBytes(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return errBadRequest.withMessage("The field %q has the wrong type.", typeErr.Field)
		}
		if errors.Is(err, io.EOF) {
			return errBadRequest.withMessage("The request body is empty; send a JSON object.")
		}
		return errBadRequest.withMessage("The request body is not valid JSON.")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errBadRequest.withMessage("The request body has data after the JSON object.")
	}
	return nil
}
