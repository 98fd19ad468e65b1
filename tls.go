package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// certRecheck bounds how often the -tls-cert/-tls-key files are looked at
// for a renewal (certbot and the like replace them in place).
const certRecheck = 30 * time.Second

// tls12Suites are the TLS 1.2 suites of Mozilla's "intermediate" profile:
// ECDHE key exchange (forward secrecy) with AEAD ciphers only. Go's default
// list also has ECDHE with CBC and SHA-1 (LUCKY13's ground); TLS 1.3 suites
// are Go's own and not configurable, all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// hstsMaxAge is two years, as Mozilla's "intermediate" profile has it.
const hstsMaxAge = "max-age=63072000"

// hardenTLS limits c to TLS 1.2 and 1.3 with tls12Suites.
func hardenTLS(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	c.CipherSuites = tls12Suites
}

// parseTLS checks the HTTPS flags together and fills in the defaults that
// depend on them; isSet reports whether a flag was given (or its variable).
func (c *Config) parseTLS(acmeDomains string, isSet func(flag string) bool) error {
	for _, d := range strings.Split(acmeDomains, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" {
			continue
		}
		if !strings.Contains(d, ".") || strings.ContainsAny(d, ":/ ") || net.ParseIP(d) != nil {
			return fmt.Errorf("-acme-domain %q: want a fully qualified domain name such as chat.example.com", d)
		}
		c.ACMEDomains = append(c.ACMEDomains, d)
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("-tls-cert and -tls-key go together")
	case c.TLSCert != "" && len(c.ACMEDomains) > 0:
		return errors.New("use either -tls-cert/-tls-key or -acme-domain, not both")
	}
	if len(c.ACMEDomains) == 0 {
		for flag, v := range map[string]string{"acme-email": c.ACMEEmail, "acme-ca": c.ACMEDirectory, "acme-ca-root": c.ACMERoot} {
			if v != "" {
				return fmt.Errorf("-%s needs -acme-domain", flag)
			}
		}
		if c.HTTPAddr != "" && c.TLSCert == "" {
			return errors.New("-http-addr redirects to HTTPS: it needs -tls-cert/-tls-key or -acme-domain")
		}
		return nil
	}
	if !isSet("addr") {
		c.Addr = ":443"
	}
	if !isSet("http-addr") {
		c.HTTPAddr = ":80"
	}
	return nil
}

// listeners are the sockets the server answers on: the main one (HTTPS when
// tls is set) and, optionally, a plain-HTTP one that redirects to it and
// answers ACME HTTP-01 challenges.
type listeners struct {
	main  net.Listener
	tls   *tls.Config // nil: the main listener speaks plain HTTP
	plain *http.Server
	plnLn net.Listener
}

// listen opens cfg's listeners and prepares their TLS; lim, if not nil,
// caps the connections of both.
func listen(cfg Config, log *slog.Logger, lim *connLimiter) (*listeners, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if lim != nil {
		ln = lim.wrap(ln)
	}
	l := &listeners{main: ln}
	_, httpsPort, _ := net.SplitHostPort(ln.Addr().String())
	redirect := redirectToHTTPS(httpsPort, cfg.ACMEDomains)
	var plain http.Handler
	switch {
	case cfg.TLSCert != "":
		cf := &certFiles{cert: cfg.TLSCert, key: cfg.TLSKey, log: log}
		if _, err := cf.load(); err != nil {
			ln.Close()
			return nil, err
		}
		l.tls = &tls.Config{GetCertificate: cf.get}
		hardenTLS(l.tls)
		plain = redirect
	case len(cfg.ACMEDomains) > 0:
		m, err := acmeManager(cfg)
		if err != nil {
			ln.Close()
			return nil, err
		}
		l.tls = m.TLSConfig()
		hardenTLS(l.tls)
		if cfg.HTTPAddr != "" {
			// Also offers HTTP-01, so only when something serves it.
			plain = m.HTTPHandler(redirect)
		}
	}
	if cfg.HTTPAddr != "" && plain != nil {
		pln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("-http-addr: %w", err)
		}
		if lim != nil {
			pln = lim.wrap(pln)
		}
		l.plnLn = pln
		next := plain
		l.plain = &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.Debug("plain HTTP request", "method", r.Method, "host", r.Host, "path", r.URL.Path)
				// The ACME host policy compares bare names; a port (as on
				// a test port or behind a port forward) is not part of it.
				if h, _, err := net.SplitHostPort(r.Host); err == nil {
					r.Host = h
				}
				next.ServeHTTP(w, r)
			}),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	return l, nil
}

// serve runs srv on the listeners until they close; the first error of
// either is returned. wrap, if not nil, wraps the main listener above TLS,
// so that what it hands the server are the connections the server reads
// HTTP from (*tls.Conn for HTTPS).
func (l *listeners) serve(srv *http.Server, wrap func(net.Listener) net.Listener) error {
	errs := make(chan error, 2)
	if l.plain != nil {
		go func() { errs <- l.plain.Serve(l.plnLn) }()
	}
	ln := l.main
	if l.tls != nil {
		// What srv.ServeTLS does, with the listener in our hands: offer
		// HTTP/2 and HTTP/1.1 by ALPN (srv.Serve then sets up HTTP/2
		// because the config names h2).
		cfg := l.tls.Clone()
		cfg.NextProtos = slices.Clone(cfg.NextProtos)
		for _, p := range []string{"h2", "http/1.1"} {
			if !slices.Contains(cfg.NextProtos, p) {
				cfg.NextProtos = append(cfg.NextProtos, p)
			}
		}
		srv.TLSConfig = cfg
		ln = tls.NewListener(ln, cfg)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	go func() { errs <- srv.Serve(ln) }()
	return <-errs
}

// shutdown stops the plain-HTTP listener, if any; the main server is the
// caller's.
func (l *listeners) shutdown(ctx context.Context) {
	if l.plain != nil {
		if err := l.plain.Shutdown(ctx); err != nil {
			l.plain.Close()
		}
	}
}

// close releases the sockets when serving never began.
func (l *listeners) close() {
	l.main.Close()
	if l.plnLn != nil {
		l.plnLn.Close()
	}
}

// redirectToHTTPS answers plain HTTP with a permanent redirect to the same
// URL over HTTPS on httpsPort. With domains given, a Host outside them is
// sent to the first, so the redirect never points at a name the server has
// no certificate for.
func redirectToHTTPS(httpsPort string, domains []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.Trim(host, "[]"))
		if len(domains) > 0 && !slices.Contains(domains, host) {
			host = domains[0]
		}
		if host == "" {
			http.Error(w, "Use HTTPS.", http.StatusBadRequest)
			return
		}
		if httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		status := http.StatusMovedPermanently
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			status = http.StatusPermanentRedirect // keeps the method and body
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), status)
	})
}

// acmeManager obtains and renews certificates for cfg.ACMEDomains, keeping
// them (and the ACME account key) in <db>.acme/ beside the database
// (acmeCacheDir).
func acmeManager(cfg Config) (*autocert.Manager, error) {
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(acmeCacheDir(cfg.DBPath)),
		HostPolicy: autocert.HostWhitelist(cfg.ACMEDomains...),
		Email:      cfg.ACMEEmail,
	}
	if cfg.ACMEDirectory == "" && cfg.ACMERoot == "" {
		return m, nil // Let's Encrypt, trusted through the system's roots
	}
	client := &acme.Client{DirectoryURL: cfg.ACMEDirectory}
	if cfg.ACMERoot != "" {
		pem, err := os.ReadFile(cfg.ACMERoot)
		if err != nil {
			return nil, fmt.Errorf("-acme-ca-root: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-acme-ca-root %s: no PEM certificate in it", cfg.ACMERoot)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: tr, Timeout: time.Minute}
	}
	m.Client = client
	return m, nil
}

// certFiles serves the -tls-cert/-tls-key pair, reloading it when the
// files change so a renewed certificate needs no restart.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	modTime time.Time // newer of the two files' times when loaded
	checked time.Time
}

// load reads the pair and remembers the files' times.
func (c *certFiles) load() (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
	}
	c.current, c.modTime, c.checked = &pair, c.newest(), time.Now()
	return c.current, nil
}

// newest is the later modification time of the two files.
func (c *certFiles) newest() time.Time {
	var t time.Time
	for _, f := range []string{c.cert, c.key} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

// get is tls.Config.GetCertificate: the loaded pair, reloaded at most every
// certRecheck when a file is newer. A broken new pair keeps the old one.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < certRecheck {
		return c.current, nil
	}
	c.checked = time.Now()
	if !c.newest().After(c.modTime) {
		return c.current, nil
	}
	old := c.current
	if _, err := c.load(); err != nil {
		c.log.Error("reloading the TLS certificate failed; keeping the old one", "err", err)
		c.current = old
		return old, nil
	}
	c.log.Info("TLS certificate reloaded", "file", c.cert)
	return c.current, nil
}
