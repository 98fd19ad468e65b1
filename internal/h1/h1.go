// Package h1 is a small HTTP/1.1 keep-alive client for load generators.
//
// net/http's client costs its process about as much CPU per request as a
// server spends answering it (a reader and a writer goroutine per
// connection, header maps, contexts), so on a shared machine a load
// generator built on it measures itself. A Conn writes pre-formatted
// request bytes on one connection and parses the answer's status line and
// the few headers it needs (Content-Length, Transfer-Encoding, Connection,
// Retry-After); bodies are read by Content-Length, chunked transfer coding
// or until close.
package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Dialer makes the connections of Conns to one server.
type Dialer struct {
	addr     string // host:port
	host     string // Host header
	tls      *tls.Config
	spread   int
	next     atomic.Uint32
	d        net.Dialer
	requests atomic.Int64
}

// NewDialer returns a dialer for base (http:// or https://, no path). With
// spread > 1 and an IPv4 loopback server, connections come from spread
// source addresses 127.0.0.2, 127.0.0.3... so that tens of thousands of them
// do not run out of ephemeral ports on one address pair.
func NewDialer(base string, spread int) (*Dialer, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	d := &Dialer{host: u.Host, spread: spread, d: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
		d.tls = &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}
	default:
		return nil, fmt.Errorf("URL scheme %q: want http or https", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("URL %q: the API must be at the root", base)
	}
	d.addr = net.JoinHostPort(u.Hostname(), port)
	return d, nil
}

// Requests returns how many requests the Conns of d have written (retries
// included).
func (d *Dialer) Requests() int64 { return d.requests.Load() }

func (d *Dialer) dial(ctx context.Context) (net.Conn, error) {
	nd := d.d
	host, _, _ := net.SplitHostPort(d.addr)
	if ip := net.ParseIP(host); d.spread > 1 && ip != nil && ip.To4() != nil && ip.IsLoopback() {
		n := d.next.Add(1) % uint32(d.spread)
		nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+n))}
	}
	c, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil || d.tls == nil {
		return c, err
	}
	tc := tls.Client(c, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// Conn is one keep-alive connection, used by one goroutine at a time; it
// redials when the server closed it. Its context, once done, aborts whatever
// request is under way and every later one.
type Conn struct {
	d    *Dialer
	ctx  context.Context
	stop func() bool

	mu      sync.Mutex // guards c against the abort of ctx
	c       net.Conn
	br      *bufio.Reader
	dl      time.Time       // the read/write deadline set on c
	req     []byte          // the request being built
	scratch []byte          // its body, being built
	buf     []byte          // the last answer's body
	raw     syscall.RawConn // of c, when it has one (TCP)

	reused bool // c has answered a request before
}

// Answer is an answer's status, Retry-After header and body; Body is valid
// until the next request on the same Conn.
type Answer struct {
	Status     int
	RetryAfter string
	Body       []byte
}

// NewConn returns a connection to d's server, made at its first request.
// Once ctx is done, the request under way and every later one fail.
func NewConn(ctx context.Context, d *Dialer) *Conn {
	c := &Conn{d: d, ctx: ctx}
	c.stop = context.AfterFunc(ctx, c.abort)
	return c
}

// abort closes the connection under way; later requests fail at once.
func (c *Conn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// Close closes the connection and stops watching the context.
func (c *Conn) Close() {
	c.stop()
	c.abort()
}

func (c *Conn) drop() {
	c.mu.Lock()
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
	c.mu.Unlock()
}

func (c *Conn) connect() (net.Conn, error) {
	c.mu.Lock()
	nc := c.c
	c.mu.Unlock()
	if nc != nil {
		return nc, nil
	}
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	nc, err := c.d.dial(c.ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ctx.Err(); err != nil { // aborted while dialling
		nc.Close()
		return nil, err
	}
	c.c, c.dl, c.reused, c.raw = nc, time.Time{}, false, nil
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 4<<10) // larger bodies are read past it
	} else {
		c.br.Reset(nc)
	}
	return nc, nil
}

// Start begins a request with its method and path. extend, when not nil,
// appends the rest of the path (a query, say) to b and returns it, so that
// no string need be built for it.
func (c *Conn) Start(method, path string, extend func(b []byte) []byte) {
	c.req = append(append(append(c.req[:0], method...), ' '), path...)
	if extend != nil {
		c.req = extend(c.req)
	}
}

// Finish ends the request begun by Start with the Host header,
// "Authorization: Bearer token" when token is not empty, and, when body is
// not nil, the JSON body that body appends to b (with its Content-Type and
// Content-Length).
func (c *Conn) Finish(token string, body func(b []byte) []byte) {
	b := append(c.req, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.d.host...)
	if token != "" {
		b = append(b, "\r\nAuthorization: Bearer "...)
		b = append(b, token...)
	}
	b = append(b, "\r\n"...)
	if body == nil {
		c.req = append(b, "\r\n"...)
		return
	}
	c.scratch = body(c.scratch[:0])
	b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(c.scratch)), 10)
	b = append(b, "\r\n\r\n"...)
	c.req = append(b, c.scratch...)
}

// write writes c.req on nc and calls wrote (when not nil) once it is out.
//
// On a TCP connection it writes from inside a wait for the answer: the
// runtime's read readiness is reset before the write, so the answer cannot
// be missed, and the first read is tried only once the answer has come. A
// plain Write followed by Read would try that read at once, while the
// server is still working, and fail with EAGAIN: a system call per request
// that this saves.
func (c *Conn) write(nc net.Conn, wrote func()) error {
	if c.raw == nil || c.br.Buffered() > 0 {
		if _, err := nc.Write(c.req); err != nil {
			return err
		}
		if wrote != nil {
			wrote()
		}
		return nil
	}
	n, tried := 0, false
	var werr error
	err := c.raw.Read(func(fd uintptr) bool {
		if tried {
			return true // readable: readAnswer reads
		}
		tried = true
		for n < len(c.req) {
			m, err := syscall.Write(int(fd), c.req[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				if err != syscall.EAGAIN {
					werr = err
				}
				return true // the rest below, by a blocking Write
			}
			n += m
		}
		if wrote != nil {
			wrote()
		}
		return false // wait until the answer is there
	})
	switch {
	case werr != nil:
		return os.NewSyscallError("write", werr)
	case err != nil:
		return err
	case n < len(c.req):
		if _, err := nc.Write(c.req[n:]); err != nil {
			return err
		}
		if wrote != nil {
			wrote()
		}
	}
	return nil
}

// errAnswerStarted marks a failure after the answer began: not to repeat.
var errAnswerStarted = errors.New("answer started")

// RoundTrip writes the request built by Start and Finish and reads the
// answer. The exchange fails after timeout at the earliest (deadlines are
// renewed only now and then, so at most half as much again). wrote, when not
// nil, is called once the request is written. A request on a reused
// connection that the server had closed meanwhile is written once more on a
// new one, as net/http does.
func (c *Conn) RoundTrip(timeout time.Duration, wrote func()) (Answer, error) {
	for attempt := 0; ; attempt++ {
		nc, err := c.connect()
		if err != nil {
			return Answer{}, err
		}
		reused := c.reused
		if now := time.Now(); c.dl.Before(now.Add(timeout)) {
			// Deadlines are set once for a while, not per request.
			c.dl = now.Add(timeout + timeout/2)
			if err := nc.SetDeadline(c.dl); err != nil {
				c.drop()
				return Answer{}, err
			}
		}
		c.d.requests.Add(1)
		err = c.write(nc, wrote)
		var a Answer
		var keep bool
		if err == nil {
			a, keep, err = c.readAnswer()
		}
		if err == nil {
			c.reused = true
			if !keep {
				c.drop()
			}
			return a, nil
		}
		c.drop()
		if cerr := c.ctx.Err(); cerr != nil {
			return Answer{}, cerr
		}
		if reused && attempt == 0 && !errors.Is(err, errAnswerStarted) && !isTimeout(err) {
			continue
		}
		return Answer{}, err
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readAnswer reads one answer (skipping 1xx ones); keep is false when the
// connection cannot carry another request.
func (c *Conn) readAnswer() (a Answer, keep bool, err error) {
	br := c.br
	if _, err := br.Peek(1); err != nil {
		return a, false, err // nothing came: the server may have closed an idle connection
	}
	started := func(err error) error {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w: %w", errAnswerStarted, err)
	}
	for {
		line, err := readLine(br)
		if err != nil {
			return a, false, started(err)
		}
		// HTTP/1.x SSS reason
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return a, false, started(fmt.Errorf("malformed status line %q", line))
		}
		http10 := line[7] == '0'
		keep = !http10
		st, ok := parseDigits(line[9:12])
		if !ok || (len(line) > 12 && line[12] != ' ') {
			return a, false, started(fmt.Errorf("malformed status line %q", line))
		}
		a.Status = st
		length, chunked := int64(-1), false
		for {
			line, err := readLine(br)
			if err != nil {
				return a, false, started(err)
			}
			if len(line) == 0 {
				break
			}
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return a, false, started(fmt.Errorf("malformed header line %q", line))
			}
			name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
			switch {
			case asciiEqualFold(name, "content-length"):
				n, ok := parseDigits(value)
				if !ok || (length >= 0 && int64(n) != length) {
					return a, false, started(fmt.Errorf("bad Content-Length %q", value))
				}
				length = int64(n)
			case asciiEqualFold(name, "transfer-encoding"):
				if !asciiEqualFold(value, "chunked") {
					return a, false, started(fmt.Errorf("unsupported Transfer-Encoding %q", value))
				}
				chunked = true
			case asciiEqualFold(name, "connection"):
				for _, opt := range bytes.Split(value, []byte(",")) {
					opt = bytes.TrimSpace(opt)
					if asciiEqualFold(opt, "close") {
						keep = false
					} else if asciiEqualFold(opt, "keep-alive") && http10 {
						keep = true
					}
				}
			case asciiEqualFold(name, "retry-after"):
				a.RetryAfter = string(value)
			}
		}
		if st >= 100 && st < 200 {
			if st == 101 {
				return a, false, started(errors.New("unexpected 101 Switching Protocols"))
			}
			continue // 100 Continue and the like: the real answer follows
		}
		body := c.buf[:0]
		switch {
		case st == 204 || st == 304:
		case chunked:
			body, err = readChunked(br, body)
		case length >= 0:
			if int64(cap(body)) < length {
				body = make([]byte, length)
			}
			body = body[:length]
			_, err = io.ReadFull(br, body)
		default: // the body ends with the connection
			keep = false
			bb := bytes.NewBuffer(body)
			_, err = bb.ReadFrom(br)
			body = bb.Bytes()
		}
		if err != nil {
			return a, false, started(err)
		}
		c.buf, a.Body = body, body
		return a, keep, nil
	}
}

// readLine returns a line without its CRLF (or LF); it is valid until the
// next read of br.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errors.New("header line too long")
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readChunked appends a chunked body to body and reads its trailer.
func readChunked(br *bufio.Reader, body []byte) ([]byte, error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return body, err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 62)
		if err != nil {
			return body, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailer fields, then an empty line
				line, err := readLine(br)
				if err != nil {
					return body, err
				}
				if len(line) == 0 {
					return body, nil
				}
			}
		}
		at := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(br, body[at:]); err != nil {
			return body, err
		}
		if line, err := readLine(br); err != nil || len(line) != 0 {
			if err == nil {
				err = errors.New("chunk not followed by CRLF")
			}
			return body, err
		}
	}
}

// parseDigits parses a decimal number of 1 to 15 digits.
func parseDigits(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
