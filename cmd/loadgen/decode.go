package main

// Decoding of poll answers without reflection. A poll answer is
// {"cursor":N,"events":[{"seq":N,"type":"...","message":{...}},...]}; the
// decoder reads the fields the load generator uses, skips every other value
// (whatever it holds) and reuses the answer's memory from one poll to the
// next. It accepts what encoding/json accepts for these types, and its tests
// compare the two.

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodePoll decodes a poll answer into ans, reusing its events and message
// objects. names, when not nil, interns strings (usernames, event types)
// without allocating; it is only read.
func decodePoll(data []byte, ans *pollAnswer, names map[string]string) error {
	d := jdec{b: data, names: names}
	ans.Cursor = 0
	ans.Events = ans.Events[:0]
	nmsg := 0
	err := d.object(func(key []byte) error {
		switch string(d.fold(key)) {
		case "cursor":
			n, err := d.int()
			ans.Cursor = n
			return err
		case "events":
			ans.Events = ans.Events[:0]
			if d.null() {
				return nil
			}
			return d.array(func() error {
				ans.Events = append(ans.Events, event{})
				ev := &ans.Events[len(ans.Events)-1]
				if d.null() {
					return nil
				}
				return d.object(func(key []byte) error {
					switch string(d.fold(key)) {
					case "seq":
						n, err := d.int()
						ev.Seq = n
						return err
					case "type":
						s, err := d.str()
						ev.Type = s
						return err
					case "message":
						if d.null() {
							ev.Message = nil
							return nil
						}
						if nmsg == len(ans.msgs) {
							ans.msgs = append(ans.msgs, new(message))
						}
						m := ans.msgs[nmsg]
						nmsg++
						*m = message{}
						ev.Message = m
						return d.message(m)
					}
					return d.skip()
				})
			})
		}
		return d.skip()
	})
	if err == nil {
		d.ws()
		if d.i < len(d.b) {
			err = d.errorf("data after the answer")
		}
	}
	return err
}

// decodeRemoved decodes the answer of clean, {"removed":N}.
func decodeRemoved(data []byte) (int64, error) {
	d := jdec{b: data}
	var n int64
	err := d.object(func(key []byte) error {
		if string(d.fold(key)) == "removed" {
			var err error
			n, err = d.int()
			return err
		}
		return d.skip()
	})
	return n, err
}

func (d *jdec) message(m *message) error {
	return d.object(func(key []byte) error {
		var err error
		switch string(d.fold(key)) {
		case "id":
			m.ID, err = d.int()
		case "from":
			m.From, err = d.str()
		case "to":
			m.To, err = d.str()
		case "body":
			m.Body, err = d.str()
		default:
			err = d.skip()
		}
		return err
	})
}

// jdec reads JSON values from b at i.
type jdec struct {
	b       []byte
	i       int
	names   map[string]string
	scratch []byte
	folded  []byte
}

// fold returns key case-folded as encoding/json matches keys to fields
// (bytes.EqualFold): ASCII letters in lower case, and the two non-ASCII
// letters that fold to ASCII ones, U+017F (ſ) and U+212A (K), as s and k.
func (d *jdec) fold(key []byte) []byte {
	plain := true
	for _, c := range key {
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			plain = false
			break
		}
	}
	if plain {
		return key
	}
	out := d.folded[:0]
	for i := 0; i < len(key); {
		r, size := utf8.DecodeRune(key[i:])
		switch {
		case 'A' <= r && r <= 'Z':
			out = append(out, byte(r)+'a'-'A')
		case r == '\u017f':
			out = append(out, 's')
		case r == '\u212a':
			out = append(out, 'k')
		default:
			out = append(out, key[i:i+size]...)
		}
		i += size
	}
	d.folded = out
	return out
}

func (d *jdec) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *jdec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end.
func (d *jdec) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *jdec) literal(lit string) bool {
	if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return true
	}
	return false
}

// null consumes a null, if that is what comes.
func (d *jdec) null() bool {
	return d.peek() == 'n' && d.literal("null")
}

// object reads an object, calling field with each key; field must consume
// the value.
func (d *jdec) object(field func(key []byte) error) error {
	if d.peek() != '{' {
		return d.errorf("want an object")
	}
	d.i++
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.errorf("want a key")
		}
		key, err := d.raw()
		if err != nil {
			return err
		}
		if d.peek() != ':' {
			return d.errorf("want ':'")
		}
		d.i++
		if err := field(key); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.errorf("want ',' or '}'")
		}
	}
}

// array reads an array, calling elem for each element, which it must consume.
func (d *jdec) array(elem func() error) error {
	if d.peek() != '[' {
		return d.errorf("want an array")
	}
	d.i++
	if d.peek() == ']' {
		d.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return nil
		default:
			return d.errorf("want ',' or ']'")
		}
	}
}

// int reads an integer number; null reads as 0 (encoding/json leaves the
// field as it was, and the decoder has zeroed every field beforehand).
func (d *jdec) int() (int64, error) {
	if d.null() {
		return 0, nil
	}
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i == digits || (d.b[digits] == '0' && d.i-digits > 1) {
		return 0, d.errorf("want an integer")
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return 0, d.errorf("want an integer, not a fraction")
	}
	if d.i-digits <= 18 { // cannot overflow
		var n int64
		for _, c := range d.b[digits:d.i] {
			n = n*10 + int64(c-'0')
		}
		if start < digits {
			n = -n
		}
		return n, nil
	}
	n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	if err != nil {
		return 0, d.errorf("%v", err)
	}
	return n, nil
}

// str reads a string (or null, as ""), interning it through d.names.
func (d *jdec) str() (string, error) {
	if d.null() {
		return "", nil
	}
	if d.peek() != '"' {
		return "", d.errorf("want a string")
	}
	b, err := d.raw()
	if err != nil {
		return "", err
	}
	if s, ok := d.names[string(b)]; ok {
		return s, nil
	}
	return string(b), nil
}

// raw reads a string at d.i (its opening quote) and returns its value: a
// slice of d.b when it has no escapes, else of d.scratch, valid until the
// next call.
func (d *jdec) raw() ([]byte, error) {
	d.i++ // the quote
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], nil
		case c == '\\':
			return d.unescape(start)
		case c < 0x20:
			return nil, d.errorf("control character in string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				return d.unescape(start) // invalid UTF-8 becomes U+FFFD
			}
			d.i += size
			continue
		}
		d.i++
	}
	return nil, d.errorf("unterminated string")
}

// unescape decodes the rest of a string that has escapes, as encoding/json
// does (invalid UTF-8 and lone surrogates become U+FFFD).
func (d *jdec) unescape(start int) ([]byte, error) {
	out := append(d.scratch[:0], d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			d.scratch = out
			return out, nil
		case c < 0x20:
			return nil, d.errorf("control character in string")
		case c == '\\':
			if d.i+1 >= len(d.b) {
				return nil, d.errorf("unterminated string")
			}
			e := d.b[d.i+1]
			d.i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return nil, d.errorf("bad \\u escape")
				}
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if save := d.i; d.literal(`\u`) {
						if r2, ok = d.hex4(); !ok {
							return nil, d.errorf("bad \\u escape")
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							continue
						}
						d.i = save
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, d.errorf("bad escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			d.i++
		default:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, d.b[d.i:d.i+size]...)
			}
			d.i += size
		}
	}
	return nil, d.errorf("unterminated string")
}

func (d *jdec) hex4() (rune, bool) {
	if len(d.b)-d.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.i += 4
	return r, true
}

// skip reads over any one value.
func (d *jdec) skip() error {
	switch c := d.peek(); {
	case c == '{':
		return d.object(func([]byte) error { return d.skip() })
	case c == '[':
		return d.array(d.skip)
	case c == '"':
		_, err := d.raw()
		return err
	case c == 't':
		if d.literal("true") {
			return nil
		}
	case c == 'f':
		if d.literal("false") {
			return nil
		}
	case c == 'n':
		if d.literal("null") {
			return nil
		}
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number()
	}
	return d.errorf("want a value")
}

// number reads over a JSON number.
func (d *jdec) number() error {
	b, i := d.b, d.i
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	first := i
	if n := digits(); n == 0 || (n > 1 && b[first] == '0') {
		return d.errorf("bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return d.errorf("bad number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return d.errorf("bad number")
		}
	}
	d.i = i
	return nil
}
