package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// acmeTestDomain is the name certificates are asked for. Nothing outside the
// test resolves it: the test's own DNS server answers 127.0.0.1 for it.
const acmeTestDomain = "chat.webim.test"

// pebble is Let's Encrypt's ACME test server, run in-process on loopback.
type pebble struct {
	dirURL   string
	rootFile string // PEM of the TLS certificate of pebble's own HTTPS
	handler  atomic.Pointer[http.Handler]
	ca       *ca.CAImpl
}

// startPebbleFrontEnd starts pebble's HTTPS listener; its CA and validation
// authority come in begin, once the ports they must reach are known.
func startPebbleFrontEnd(t *testing.T) *pebble {
	t.Helper()
	// Validate at once rather than after a random sleep, and never reject a
	// nonce on purpose (the ACME client would retry, but the test is slower).
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	p := &pebble{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.handler.Load()
		if h == nil {
			http.Error(w, "pebble is not ready", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.dirURL = srv.URL + wfe.DirectoryPath
	p.rootFile = filepath.Join(t.TempDir(), "pebble-https.pem")
	if err := os.WriteFile(p.rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// begin creates pebble's CA and validation authority: it validates HTTP-01
// on httpPort and TLS-ALPN-01 on tlsPort, resolving names with dnsAddr.
func (p *pebble) begin(t *testing.T, httpPort, tlsPort int, dnsAddr string) {
	t.Helper()
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.LstdFlags)
	}
	store := pebbledb.NewMemoryStore()
	p.ca = ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	v := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	w := wfe.New(logger, store, v, p.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := w.Handler()
	p.handler.Store(&h)
}

// roots trusts pebble's CA, which signs the certificates it issues.
func (p *pebble) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca.GetRootCert(0).PEM())
	return pool
}

// startLoopbackDNS answers every A question with 127.0.0.1 (and AAAA with
// nothing) over TCP, which is how pebble's validation authority asks.
func startLoopbackDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestACME_PebbleIssuesCertificate runs the whole ACME path for real: the
// server, started with -acme-domain, gets a certificate from pebble on the
// first TLS handshake for that name, answering pebble's challenge itself,
// and a client that trusts only pebble's CA completes the handshake and an
// HTTPS request. "tls-alpn-01" is answered on the HTTPS port; with that port
// hidden from pebble, autocert falls back to "http-01" on -http-addr.
func TestACME_PebbleIssuesCertificate(t *testing.T) {
	for _, challenge := range []string{"tls-alpn-01", "http-01"} {
		t.Run(challenge, func(t *testing.T) {
			p := startPebbleFrontEnd(t)
			dnsAddr := startLoopbackDNS(t)
			plainAddr := freeLoopbackAddr(t)
			dbPath := filepath.Join(t.TempDir(), "webim.db")
			r := runInProcess(t, "-addr", "127.0.0.1:0", "-http-addr", plainAddr, "-db", dbPath,
				"-acme-domain", acmeTestDomain, "-acme-email", "admin@webim.test",
				"-acme-ca", p.dirURL, "-acme-ca-root", p.rootFile, "-log-level", "debug")
			tlsPort := port(t, r.addr)
			if challenge == "http-01" {
				tlsPort = port(t, freeLoopbackAddr(t)) // nothing listens there
			}
			p.begin(t, port(t, plainAddr), tlsPort, dnsAddr)

			client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: p.roots(), ServerName: acmeTestDomain},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, r.addr)
				},
			}}
			resp, err := client.Get("https://" + acmeTestDomain + "/api/health")
			if err != nil {
				t.Fatalf("HTTPS with an ACME certificate: %v\nserver log:\n%s", err, r.stderr.String())
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("health: %d", resp.StatusCode)
			}
			if v := resp.Header.Get("Strict-Transport-Security"); v != "max-age=63072000" {
				t.Errorf("HTTPS with an ACME certificate: Strict-Transport-Security %q", v)
			}
			if s := resp.TLS.CipherSuite; resp.TLS.Version == tls.VersionTLS12 && !slices.Contains(tls12Suites, s) {
				t.Errorf("ACME HTTPS negotiated %s", tls.CipherSuiteName(s))
			}
			leaf := resp.TLS.PeerCertificates[0]
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeTestDomain {
				t.Fatalf("certificate names %v", leaf.DNSNames)
			}
			if len(resp.TLS.VerifiedChains) == 0 {
				t.Fatal("the chain was not verified against pebble's root")
			}
			// The certificate is cached beside the database for restarts.
			if entries, err := os.ReadDir(dbPath + ".acme"); err != nil || len(entries) == 0 {
				t.Fatalf("ACME cache %s.acme: %v, %d entries", dbPath, err, len(entries))
			}
			// Plain HTTP is redirected to the domain over HTTPS.
			noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err = noFollow.Get("http://" + plainAddr + "/api/me?x=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := "https://" + acmeTestDomain + ":" + strconv.Itoa(port(t, r.addr)) + "/api/me?x=1"
			if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
				t.Fatalf("plain HTTP: %d to %q, want 301 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
			}
			// A name outside -acme-domain gets no certificate.
			conn, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: p.roots(), ServerName: "other.webim.test"})
			if err == nil {
				conn.Close()
				t.Fatal("handshake for a name outside -acme-domain succeeded")
			}
			if challenge != "tls-alpn-01" {
				return
			}
			// A backup restored elsewhere serves the certificate it holds,
			// with the CA out of reach: nothing is asked again.
			restored := filepath.Join(t.TempDir(), "restored.db")
			if _, _, err := runCmd(t, "backup", "-db", dbPath, restored); err != nil {
				t.Fatal(err)
			}
			r2 := runInProcess(t, "-addr", "127.0.0.1:0", "-http-addr", freeLoopbackAddr(t), "-db", restored,
				"-acme-domain", acmeTestDomain, "-acme-ca", "https://127.0.0.1:1/dir", "-acme-ca-root", p.rootFile)
			conn, err = tls.Dial("tcp", r2.addr, &tls.Config{RootCAs: p.roots(), ServerName: acmeTestDomain})
			if err != nil {
				t.Fatalf("handshake with the restored server: %v\nserver log:\n%s", err, r2.stderr.String())
			}
			if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(leaf.SerialNumber) != 0 {
				t.Errorf("the restored server serves certificate %v, not the backed-up %v", got, leaf.SerialNumber)
			}
			conn.Close()
		})
	}
}
