package main

// Parked polls: an idle long-poll on HTTP/1.1 that has waited parkAfter
// with nothing to answer gives up its goroutines. The handler hijacks the
// connection and keeps only a parkedPoll (the connection, the session, the
// cursor, a deadline timer); net/http's goroutines for the connection end.
// Whatever would have woken the waiting handler (a commit for the user, a
// newer poll of the session, the session ending, the deadline, shutdown)
// wakes the parked poll instead: a short-lived goroutine answers with the
// bytes the handler would have written and hands the connection back to the
// http.Server through parkListener, for the next request on it.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const (
	// parkAfter is how long a poll waits on its goroutine before it parks:
	// polls of active chats are answered before that, on the plain path.
	parkAfter = time.Second
	// parkedWriteTimeout bounds writing a parked poll's answer.
	parkedWriteTimeout = 5 * time.Second
	// parkedReadTimeout bounds the database read of a parked poll's answer.
	parkedReadTimeout = 10 * time.Second
)

// errParked tells serve that the handler handed its connection to a parked
// poll, which answers (and is timed) later.
var errParked = errors.New("poll parked")

// waker is something parked that a notification wakes.
type waker interface{ wake() }

// parker keeps the parked polls. Parking is off until a parkListener is
// made for the server (Handler alone, as under httptest, never parks).
type parker struct {
	after time.Duration

	mu     sync.Mutex
	ln     *parkListener
	polls  map[*parkedPoll]struct{}
	header http.Header // the common answer header, shared by parked polls
	// wg counts parked polls until their answer is written.
	wg sync.WaitGroup
}

func newParker() *parker {
	return &parker{after: parkAfter, polls: map[*parkedPoll]struct{}{}}
}

// ParkingListener wraps ln (above TLS, if any) so that connections of
// answered parked polls are served again, and turns parking on.
func (a *App) ParkingListener(ln net.Listener) net.Listener {
	pl := newParkListener(ln)
	a.parker.mu.Lock()
	a.parker.ln = pl
	a.parker.mu.Unlock()
	return pl
}

func (pk *parker) listener() *parkListener {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	return pk.ln
}

// parked counts parked polls.
func (pk *parker) parked() int {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	return len(pk.polls)
}

// wakeAll wakes every parked poll (at shutdown).
func (pk *parker) wakeAll() {
	pk.mu.Lock()
	ps := make([]*parkedPoll, 0, len(pk.polls))
	for p := range pk.polls {
		ps = append(ps, p)
	}
	pk.mu.Unlock()
	for _, p := range ps {
		p.wake()
	}
}

// sharedHeader returns h, or an equal header shared with other parked
// polls, so that each holds no copy of the usual one.
func (pk *parker) sharedHeader(h http.Header) http.Header {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.header != nil && headersEqual(pk.header, h) {
		return pk.header
	}
	c := h.Clone()
	if pk.header == nil {
		pk.header = c
	}
	return c
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if av[i] != bv[i] {
				return false
			}
		}
	}
	return true
}

// canPark reports whether r's poll may be parked: an HTTP/1.1 GET (not a
// HEAD, whose answer has no body) without a body, on a connection that
// stays open, of a server that can take the connection back. Anything else
// (HTTP/2 above all) waits on its goroutine.
func (a *App) canPark(r *http.Request) bool {
	return a.parker.listener() != nil && r.Method == http.MethodGet && r.ProtoMajor == 1 && r.ProtoMinor == 1 && !r.Close &&
		r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// parkedPoll is what a parked poll holds.
type parkedPoll struct {
	a          *App
	conn       net.Conn
	s          *Session
	superseded <-chan struct{}
	endPoll    func()
	cursor     int64
	deadline   time.Time
	started    time.Time
	pattern    string
	header     http.Header // shared: cloned before use
	// closeAfter: bytes past the request were already read from the
	// connection, so it is closed after the answer, not served again.
	closeAfter bool

	mu      sync.Mutex
	timer   *time.Timer
	running bool // a check is under way
	again   bool // woken during the check: check again
	done    bool
}

// park hijacks the poll's connection and parks it. It returns false, with
// nothing changed, when the connection cannot be taken; the caller then
// goes on waiting. On true the parked poll owns the poll's bookkeeping
// (endPoll, presence, metrics) and the handler must return errParked.
func (a *App) park(w http.ResponseWriter, r *http.Request, s *Session, superseded <-chan struct{}, endPoll func(),
	cursor int64, deadline, started time.Time) bool {
	pk := a.parker
	header := pk.sharedHeader(w.Header())
	// Counted before the connection leaves net/http's hands: once it has,
	// the server's Shutdown no longer waits for it, and App.Close must.
	pk.wg.Add(1)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		pk.wg.Done()
		return false
	}
	p := &parkedPoll{
		a: a, conn: conn, s: s, superseded: superseded, endPoll: endPoll,
		cursor: cursor, deadline: deadline, started: started, pattern: r.Pattern, header: header,
		closeAfter: brw.Reader.Buffered() > 0,
	}
	pk.mu.Lock()
	pk.polls[p] = struct{}{}
	pk.mu.Unlock()
	// Registered with everything that can wake it before the first check,
	// so nothing that happens from here on is missed.
	a.notifier.park(s.User.ID, p)
	s.park(superseded, p)
	p.mu.Lock()
	p.running = true
	p.timer = time.AfterFunc(time.Until(deadline), p.wake)
	p.mu.Unlock()
	p.run()
	return true
}

// wake makes the poll check whether it has an answer, on a goroutine of its
// own; a wake during a check makes it check again.
func (p *parkedPoll) wake() {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.done:
	case p.running:
		p.again = true
	default:
		p.running = true
		go p.run()
	}
}

func (p *parkedPoll) run() {
	for {
		p.mu.Lock()
		p.again = false
		p.mu.Unlock()
		if p.check() {
			return
		}
		p.mu.Lock()
		if !p.again {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// due reports whether the poll must answer even with nothing new, as the
// waiting handler does when its select ends.
func (p *parkedPoll) due() bool {
	if p.s.EndReason() != nil || !time.Now().Before(p.deadline) {
		return true
	}
	select {
	case <-p.superseded:
		return true
	case <-p.a.shuttingDown:
		return true
	default:
		return false
	}
}

// check answers the poll if there is anything to answer, as handlePoll
// would, and reports whether it did. Like the handler's select ending on
// the deadline, a newer poll, the session's end or shutdown, a due poll
// answers without reading the queue.
func (p *parkedPoll) check() bool {
	a := p.a
	ctx, cancel := context.WithTimeout(context.Background(), parkedReadTimeout)
	defer cancel()
	var events []Event
	var err error
	due := p.due()
	if !due {
		events, err = a.pollEvents(ctx, p.s.User.ID, p.cursor)
		// A failed read (the database away) is no answer: a wake is only a
		// hint, and the poll answers as usual, empty, at its deadline.
		if err != nil {
			a.log.Debug("parked poll could not read its queue", "err", err)
			return false
		}
		if len(events) == 0 {
			return false
		}
	}
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/api/poll", nil)
	rw := &bufferedResponse{header: p.header.Clone()}
	switch {
	case err != nil:
		a.writeError(rw, r, err)
	case len(events) > 0:
		a.countDelivered(events)
		writeJSON(rw, http.StatusOK, pollAnswer{Cursor: events[len(events)-1].Seq, Events: events})
	default:
		if err := a.answerEmptyOrEnded(rw, r, p.s, p.cursor); err != nil {
			a.writeError(rw, r, err)
		}
	}
	p.finish(rw)
	return true
}

// finish lets go of everything the poll was registered with, ends its
// bookkeeping as the handler's return would, and writes the answer.
func (p *parkedPoll) finish(rw *bufferedResponse) {
	a := p.a
	p.mu.Lock()
	p.done = true
	p.timer.Stop()
	p.mu.Unlock()
	a.notifier.unpark(p.s.User.ID, p)
	p.s.unpark(p)
	p.endPoll()
	a.presence.PollEnded(p.s.User)
	a.metrics.openPolls.Add(-1)
	a.metrics.observe(p.pattern, time.Since(p.started))
	a.log.Debug("request", "method", http.MethodGet, "path", "/api/poll", "status", rw.status, "dur", time.Since(p.started), "parked", true)
	pk := a.parker
	pk.mu.Lock()
	delete(pk.polls, p)
	pk.mu.Unlock()
	defer pk.wg.Done()

	closeAfter := p.closeAfter
	select {
	case <-a.shuttingDown:
		// As net/http does while shutting down: no keep-alive.
		closeAfter = true
	default:
	}
	conn := p.conn
	conn.SetWriteDeadline(time.Now().Add(parkedWriteTimeout))
	_, err := conn.Write(rw.bytes(closeAfter))
	conn.SetWriteDeadline(time.Time{})
	switch {
	case err != nil:
		conn.Close()
	case closeAfter:
		closeGracefully(conn)
	default:
		if ln := pk.listener(); ln != nil {
			ln.reinject(conn)
		} else {
			conn.Close()
		}
	}
}

// closeGracefully closes conn after its answer, as net/http does: the write
// side first, and the rest a moment later, so that unread bytes from the
// client do not make the kernel reset the connection before the answer
// arrives.
func closeGracefully(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		time.AfterFunc(500*time.Millisecond, func() { conn.Close() })
		return
	}
	conn.Close()
}

// bufferedResponse collects an answer to write on a hijacked connection.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// bytes is the whole HTTP/1.1 response: the status line, the header (with
// Date and Content-Length, as net/http adds them) and the body.
func (b *bufferedResponse) bytes(closeConn bool) []byte {
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	h := b.header
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.Itoa(b.body.Len()))
	if closeConn {
		h.Set("Connection", "close")
	}
	var out bytes.Buffer
	out.Grow(256 + b.body.Len())
	out.WriteString("HTTP/1.1 ")
	out.WriteString(strconv.Itoa(status))
	out.WriteByte(' ')
	out.WriteString(http.StatusText(status))
	out.WriteString("\r\n")
	h.Write(&out)
	out.WriteString("\r\n")
	out.Write(b.body.Bytes())
	return out.Bytes()
}

// parkListener is the server's listener plus the connections that parked
// polls hand back after answering: Accept returns both.
type parkListener struct {
	net.Listener
	back     chan net.Conn
	accepted chan acceptResult
	done     chan struct{}
	once     sync.Once
}

type acceptResult struct {
	conn net.Conn
	err  error
}

func newParkListener(ln net.Listener) *parkListener {
	l := &parkListener{
		Listener: ln,
		back:     make(chan net.Conn, 64),
		accepted: make(chan acceptResult),
		done:     make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

// acceptLoop accepts from the wrapped listener, one connection ahead of the
// server at most.
func (l *parkListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			// Closed under us (the server never ran, or stopped): Accept
			// says so from now on.
			l.once.Do(func() { close(l.done) })
			return
		}
	}
}

func (l *parkListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	default:
	}
	select {
	case c := <-l.back:
		return c, nil
	case r := <-l.accepted:
		return r.conn, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *parkListener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	// Connections handed back but not taken are closed.
	for {
		select {
		case c := <-l.back:
			c.Close()
		default:
			return err
		}
	}
}

// reinject hands conn back to the server; once the listener is closed, it
// closes conn instead.
func (l *parkListener) reinject(conn net.Conn) {
	select {
	case <-l.done:
		conn.Close()
		return
	default:
	}
	select {
	case l.back <- conn:
		// Close may have drained back just before this send.
		select {
		case <-l.done:
			l.Close()
		default:
		}
	case <-l.done:
		conn.Close()
	}
}
