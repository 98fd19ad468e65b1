package main

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// peerAddr is the address of the connection's other end.
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func (a *App) isTrustedProxy(addr netip.Addr) bool {
	for _, p := range a.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// fromTrustedProxy reports whether the connection comes from a configured
// reverse proxy, whose X-Forwarded-* headers may then be believed.
func (a *App) fromTrustedProxy(r *http.Request) bool {
	return a.isTrustedProxy(peerAddr(r))
}

// clientAddr is the address rate limits and logs use: the peer, or behind a
// trusted proxy the right-most X-Forwarded-For entry that is not itself a
// trusted proxy (entries further left are whatever the client claimed).
func (a *App) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r)
	if !a.isTrustedProxy(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer
		}
		hop = hop.Unmap()
		if !a.isTrustedProxy(hop) {
			return hop
		}
	}
	return peer
}
