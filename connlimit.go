package main

// The connection cap: beyond -max-conns open connections (and beyond
// -max-conns-per-addr from one client address), a new connection is closed
// the moment it is accepted, before any byte of TLS or HTTP is read, so a
// flood costs the server a file descriptor for an instant and nothing more.
// The process then never meets its file-descriptor limit, which would fail
// the database and uploads as well as new connections.
//
// The cap sits on the TCP listeners, below TLS and below the parking
// listener: a connection counts from accept until it is closed, whoever
// holds it then (net/http, a parked poll, or the parking listener handing it
// back for keep-alive), and is counted once.

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// connLimiter counts the open connections of the server's listeners.
type connLimiter struct {
	max, perAddr int
	// exempt peers (trusted proxies, rate-limit exemptions) have no
	// per-address cap: all of a proxy's clients arrive from its address.
	exempt []netip.Prefix

	open    atomic.Int64
	refused atomic.Int64

	mu     sync.Mutex
	byAddr map[netip.Addr]int
}

func newConnLimiter(max, perAddr int, exempt []netip.Prefix) *connLimiter {
	return &connLimiter{max: max, perAddr: perAddr, exempt: exempt, byAddr: map[netip.Addr]int{}}
}

// addrKey is the per-address key of a peer: its IPv4 address, or its IPv6
// /64, which one subscriber usually holds whole.
func addrKey(a net.Addr) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}

// admit takes a slot for a connection from remote, or reports that there is
// none; key is what release must be given back.
func (l *connLimiter) admit(remote net.Addr) (key netip.Addr, ok bool) {
	key, keyed := addrKey(remote)
	if keyed {
		for _, p := range l.exempt {
			if p.Contains(key) {
				keyed = false
				break
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open.Load() >= int64(l.max) || (keyed && l.byAddr[key] >= l.perAddr) {
		l.refused.Add(1)
		return netip.Addr{}, false
	}
	l.open.Add(1)
	if !keyed {
		return netip.Addr{}, true
	}
	l.byAddr[key]++
	return key, true
}

func (l *connLimiter) release(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open.Add(-1)
	if !key.IsValid() {
		return
	}
	if n := l.byAddr[key] - 1; n > 0 {
		l.byAddr[key] = n
	} else {
		delete(l.byAddr, key)
	}
}

// wrap caps the connections that ln accepts.
func (l *connLimiter) wrap(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l}
}

type limitListener struct {
	net.Listener
	l *connLimiter
}

// Accept returns the next connection within the cap, closing those beyond it.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ok := ll.l.admit(c.RemoteAddr())
		if !ok {
			if tc, isTCP := c.(*net.TCPConn); isTCP {
				// A reset, not a FIN: no TIME_WAIT left on this side per
				// refused connection of a flood.
				tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		lc := &limitedConn{Conn: c, l: ll.l, key: key}
		if tc, isTCP := c.(*net.TCPConn); isTCP {
			// Keeps the half-close that net/http and parked polls use
			// to end a connection gracefully.
			return &limitedTCPConn{limitedConn: lc, tcp: tc}, nil
		}
		return lc, nil
	}
}

// limitedConn gives its slot back when it is first closed.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	key  netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

type limitedTCPConn struct {
	*limitedConn
	tcp *net.TCPConn
}

func (c *limitedTCPConn) CloseWrite() error { return c.tcp.CloseWrite() }

// defaultMaxConns leaves a tenth of the file-descriptor limit (at least 64,
// at most 1024) for the database, its WAL, uploads, downloads, the ACME
// cache and logs; without a known limit, 10,000.
func defaultMaxConns(fds int) int {
	if fds <= 0 {
		return 10_000
	}
	reserve := min(max(64, fds/10), 1024)
	return max(fds-reserve, 16)
}
