package main

// Push endpoints are URLs that users give the server, which then makes
// requests to them: without care, a way to reach the server's own network
// (request forgery). An endpoint is checked when it is stored and again on
// every send, because what a name resolves to can change in between; the
// send dials only the addresses it has just checked.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

const (
	maxEndpointLen = 2048
	// pushTimeout bounds one request to a push service, connection included.
	pushTimeout = 10 * time.Second
	// pushResponseCap is the most of a push service's answer that is read.
	pushResponseCap = 64 << 10
)

// resolver is what the guard asks for a name's addresses; tests replace it
// so that no real DNS is needed.
type resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// endpointGuard decides which push endpoints the server may call.
type endpointGuard struct {
	allow    map[string]bool // exact hosts that need not be public (-push-allow-hosts)
	resolver resolver
}

func newEndpointGuard(allow []string) *endpointGuard {
	g := &endpointGuard{allow: map[string]bool{}, resolver: net.DefaultResolver}
	for _, h := range allow {
		g.allow[h] = true
	}
	return g
}

// nonPublic are ranges outside netip's own predicates that no push service
// is in: "this network", shared address space (carrier-grade NAT), IETF
// protocol assignments, benchmarking, reserved, and IPv6 forms that embed an
// IPv4 address (IPv4-compatible, NAT64, 6to4) and so could name a private one.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("fec0::/10"),
}

// isPublicAddr reports whether a is an address the server may send pushes
// to. IPv4-mapped IPv6 is judged as the IPv4 address it carries.
func isPublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

var errEndpointRefused = errors.New("push endpoint refused")

// canonicalHost is how hosts are compared with the allow list: an address
// in its canonical form, a name lower-case without a final dot. An
// IPv4-mapped address stays mapped: allowing 127.0.0.1 for a test push
// service is not meant to allow every spelling of loopback.
func canonicalHost(host string) string {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a.String()
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// check parses an endpoint and refuses what the server must not call: any
// scheme but https (http too for an allowed host), user info, and hosts
// that are or resolve to a non-public address.
func (g *endpointGuard) check(ctx context.Context, raw string) (*url.URL, error) {
	if len(raw) > maxEndpointLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errEndpointRefused, maxEndpointLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: not an absolute URL", errEndpointRefused)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: user info", errEndpointRefused)
	}
	host := canonicalHost(u.Hostname())
	if host == "" {
		return nil, fmt.Errorf("%w: no host", errEndpointRefused)
	}
	allowed := g.allow[host]
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowed:
	default:
		return nil, fmt.Errorf("%w: scheme %q", errEndpointRefused, u.Scheme)
	}
	if allowed {
		return u, nil
	}
	if _, err := g.publicAddrs(ctx, host); err != nil {
		return nil, err
	}
	return u, nil
}

// publicAddrs resolves host and returns its addresses if every one of them
// is public. One non-public address refuses the whole name: a push service
// has no reason to publish one, and a name that does is not to be trusted
// with a choice between them.
func (g *endpointGuard) publicAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if !isPublicAddr(a) {
			return nil, fmt.Errorf("%w: %s is not a public address", errEndpointRefused, a)
		}
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("%w: resolving %s: %w", errEndpointRefused, host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: %s has no address", errEndpointRefused, host)
	}
	for _, a := range addrs {
		if !isPublicAddr(a) {
			return nil, fmt.Errorf("%w: %s resolves to %s, not a public address", errEndpointRefused, host, a)
		}
	}
	return addrs, nil
}

// dialContext dials addr ("host:port" of an endpoint) at an address checked
// just now; an allowed host is dialled as it is. The dialer's Control hook
// checks the address actually connected to once more, so no path through
// the standard library can reach a non-public one.
func (g *endpointGuard) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if g.allow[canonicalHost(host)] {
		return (&net.Dialer{Timeout: pushTimeout}).DialContext(ctx, network, addr)
	}
	addrs, err := g.publicAddrs(ctx, canonicalHost(host))
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: pushTimeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !isPublicAddr(ap.Addr()) {
			return fmt.Errorf("%w: dialling %s", errEndpointRefused, address)
		}
		return nil
	}}
	var firstErr error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// httpClient is the client pushes are sent with: no proxy from the
// environment (it would dial for us, unchecked), no redirects followed, a
// short timeout.
func (g *endpointGuard) httpClient() *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            g.dialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    pushTimeout,
		ResponseHeaderTimeout:  pushTimeout,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   pushTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
