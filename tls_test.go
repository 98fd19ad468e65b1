package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// running is the whole program started by run in-process.
type running struct {
	addr   string
	stderr *syncBuffer
	stop   func() error
}

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runInProcess runs the server with args (plus a temp -db unless given) until
// the test ends, and returns once it listens.
func runInProcess(t *testing.T, args ...string) *running {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "-db") {
		args = append(args, "-db", filepath.Join(t.TempDir(), "webim.db"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	r := &running{stderr: &syncBuffer{}}
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, strings.NewReader(""), io.Discard, r.stderr, ready)
	}()
	select {
	case r.addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("run %v: %v\n%s", args, err, r.stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("run %v did not start\n%s", args, r.stderr.String())
	}
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("run %v did not stop", args)
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("run stopped with %v", err)
		}
	})
	return r
}

// freeLoopbackAddr returns a loopback address with a port free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeSelfSigned writes a fresh self-signed certificate for names (DNS
// names or IPs) and its key, and returns their paths and a pool trusting it.
func writeSelfSigned(t *testing.T, names ...string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func httpsClient(pool *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestTLS_CertFilesServeHTTPSAndRedirect(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t, "127.0.0.1")
	plainAddr := freeLoopbackAddr(t)
	r := runInProcess(t, "-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile, "-http-addr", plainAddr)
	c := httpsClient(pool)

	// A real handshake against the certificate from the files.
	resp, err := c.Get("https://" + r.addr + "/api/health")
	if err != nil {
		t.Fatalf("GET over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || !resp.TLS.HandshakeComplete {
		t.Fatalf("health over HTTPS: status %d, TLS %v", resp.StatusCode, resp.TLS)
	}

	// Plain HTTP is refused on the HTTPS port...
	if resp, err := http.Get("http://" + r.addr + "/api/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the HTTPS port answered plain HTTP")
		}
	}

	// ...and redirected on the HTTP one, path and query kept.
	_, httpsPort, _ := net.SplitHostPort(r.addr)
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "http://"+plainAddr+"/api/poll?cursor=3", nil)
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := map[string]int{"GET": http.StatusMovedPermanently, "POST": http.StatusPermanentRedirect}[method]
		if loc := resp.Header.Get("Location"); resp.StatusCode != want || loc != "https://127.0.0.1:"+httpsPort+"/api/poll?cursor=3" {
			t.Fatalf("%s over HTTP: %d to %q", method, resp.StatusCode, loc)
		}
	}

	// The session cookie is Secure over TLS.
	body := `{"username":"tlsuser","password":"correct horse battery"}`
	resp, err = c.Post("https://"+r.addr+"/api/signup", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("POST", "https://"+r.addr+"/api/login", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://"+r.addr)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
		t.Fatalf("login over HTTPS: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	for _, ck := range resp.Cookies() {
		if !ck.Secure || !ck.HttpOnly {
			t.Fatalf("cookie %s over HTTPS is not Secure and HttpOnly", ck.Name)
		}
	}
}

func TestTLS_RedirectHostPolicy(t *testing.T) {
	h := redirectToHTTPS("443", []string{"chat.example.com"})
	for host, want := range map[string]string{
		"chat.example.com":      "https://chat.example.com/x?y=1",
		"chat.example.com:80":   "https://chat.example.com/x?y=1",
		"evil.example.net":      "https://chat.example.com/x?y=1",
		"CHAT.Example.com:8080": "https://chat.example.com/x?y=1",
	} {
		req, _ := http.NewRequest("GET", "http://"+host+"/x?y=1", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got := rec.Header().Get("Location"); got != want {
			t.Errorf("Host %s: redirected to %q, want %q", host, got, want)
		}
	}
	h = redirectToHTTPS("8443", nil)
	req, _ := http.NewRequest("GET", "http://[::1]:8080/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := rec.Header().Get("Location"); got != "https://[::1]:8443/" {
		t.Errorf("IPv6 host redirected to %q", got)
	}
}

func TestConfig_TLSFlags(t *testing.T) {
	env := func(string) string { return "" }
	cfg, err := parseConfig([]string{"-acme-domain", "Chat.Example.com", "-acme-email", "a@example.com"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":443" || cfg.HTTPAddr != ":80" || len(cfg.ACMEDomains) != 1 || cfg.ACMEDomains[0] != "chat.example.com" {
		t.Fatalf("ACME defaults: %+v", cfg)
	}
	cfg, err = parseConfig([]string{"-acme-domain", "chat.example.com", "-addr", ":8443", "-http-addr", ":8080"}, env, io.Discard)
	if err != nil || cfg.Addr != ":8443" || cfg.HTTPAddr != ":8080" {
		t.Fatalf("explicit addresses with ACME: %+v, %v", cfg, err)
	}
	cfg, err = parseConfig(nil, func(k string) string {
		return map[string]string{"WEBIM_ACME_DOMAIN": "chat.example.com", "WEBIM_ADDR": ":9443"}[k]
	}, io.Discard)
	if err != nil || cfg.Addr != ":9443" || cfg.HTTPAddr != ":80" {
		t.Fatalf("ACME from the environment: %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{
		{"-tls-cert", "c.pem"},
		{"-tls-key", "k.pem"},
		{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-acme-domain", "chat.example.com"},
		{"-acme-domain", "localhost"},
		{"-acme-domain", "192.0.2.1"},
		{"-acme-email", "a@example.com"},
		{"-http-addr", ":80"},
		{"-log-format", "xml"},
		{"-signup", "maybe"},
	} {
		if _, err := parseConfig(bad, env, io.Discard); err == nil {
			t.Errorf("parseConfig(%q) accepted it", bad)
		}
	}
}

func TestRun_MissingCertFileFails(t *testing.T) {
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "w.db"),
		"-tls-cert", "/nonexistent/cert.pem", "-tls-key", "/nonexistent/key.pem"},
		func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-tls-cert") {
		t.Fatalf("run with a missing certificate: %v", err)
	}
}

// TestTLS_CertFilesReloadWhenReplaced: a renewed pair written over the
// files is served without a restart; a broken one keeps the old.
func TestTLS_CertFilesReloadWhenReplaced(t *testing.T) {
	certA, keyA, _ := writeSelfSigned(t, "a.example")
	cf := &certFiles{cert: certA, key: keyA, log: quietLogger()}
	first, err := cf.load()
	if err != nil {
		t.Fatal(err)
	}
	commonName := func(c *tls.Certificate) string {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	certB, keyB, _ := writeSelfSigned(t, "b.example")
	later := time.Now().Add(time.Minute)
	replace := func(fromCert, fromKey string) {
		for from, to := range map[string]string{fromCert: certA, fromKey: keyA} {
			data, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, data, 0o600); err != nil {
				t.Fatal(err)
			}
			later = later.Add(time.Second)
			if err := os.Chtimes(to, later, later); err != nil {
				t.Fatal(err)
			}
		}
	}
	replace(certB, keyB)
	// Within certRecheck the loaded pair is served without a look.
	if got, _ := cf.get(nil); got != first {
		t.Fatal("reloaded before certRecheck passed")
	}
	cf.checked = time.Now().Add(-2 * certRecheck)
	got, _ := cf.get(nil)
	if commonName(got) != "b.example" {
		t.Fatalf("after replacing the files: serving %s", commonName(got))
	}
	// A half-written or broken pair keeps the working one.
	if err := os.WriteFile(certA, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	later = later.Add(time.Second)
	os.Chtimes(certA, later, later)
	cf.checked = time.Now().Add(-2 * certRecheck)
	if got, _ := cf.get(nil); got == nil || commonName(got) != "b.example" {
		t.Fatal("a broken pair replaced the working one")
	}
}

// TestTLS_IntermediateProfileAndHSTS: with -tls-cert, TLS 1.2 is offered with
// ECDHE and AEAD suites only (a client offering only CBC suites, or only
// TLS 1.1, is refused), TLS 1.3 works, and every HTTPS answer carries HSTS
// while the plain-HTTP redirect does not.
func TestTLS_IntermediateProfileAndHSTS(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t, "127.0.0.1")
	plainAddr := freeLoopbackAddr(t)
	r := runInProcess(t, "-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile, "-http-addr", plainAddr)

	handshake := func(cfg *tls.Config) (*tls.ConnectionState, error) {
		cfg.RootCAs = pool
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", r.addr, cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	for _, c := range []struct {
		name   string
		suites []uint16
	}{
		{"ECDHE-ECDSA-AES128-SHA", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		{"ECDHE-ECDSA-AES256-SHA", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}},
		{"ECDHE-ECDSA-AES128-SHA256", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
		{"every CBC suite", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
	} {
		if st, err := handshake(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: c.suites}); err == nil {
			t.Errorf("TLS 1.2 offering only %s: handshake succeeded with %s", c.name, tls.CipherSuiteName(st.CipherSuite))
		}
	}
	if st, err := handshake(&tls.Config{MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		t.Errorf("TLS 1.1: handshake succeeded (%x)", st.Version)
	}
	for _, s := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256} {
		st, err := handshake(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{s}})
		if err != nil || st.CipherSuite != s {
			t.Errorf("TLS 1.2 with %s: %v", tls.CipherSuiteName(s), err)
		}
	}
	if st, err := handshake(&tls.Config{MinVersion: tls.VersionTLS13}); err != nil || st.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3: %v", err)
	}

	// HSTS on every HTTPS answer: the page, a module, API answers and
	// errors, over HTTP/2 and HTTP/1.1, and a poll that parked.
	h1 := httpsClient(pool)
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	h1.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	body := `{"username":"hstsuser","password":"correct horse battery"}`
	for _, c := range []*http.Client{httpsClient(pool), h1} {
		for _, path := range []string{"/", "/static/app.js", "/api/health", "/api/me", "/nope"} {
			resp, err := c.Get("https://" + r.addr + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=63072000" {
				t.Errorf("GET %s over %s (%d): Strict-Transport-Security %q", path, resp.Proto, resp.StatusCode, got)
			}
		}
	}
	resp, err := h1.Post("https://"+r.addr+"/api/signup", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = h1.Post("https://"+r.addr+"/api/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&login); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Long enough to park (parkAfter), so its answer is the parked path's.
	req, _ := http.NewRequest("GET", "https://"+r.addr+"/api/poll?timeout=2", nil)
	req.Header.Set("Authorization", "Bearer "+login.Token)
	resp, err = h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") != "max-age=63072000" {
		t.Errorf("parked poll over HTTPS: %d, Strict-Transport-Security %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}

	// Not on plain HTTP: the redirect, and a server without TLS.
	resp, err = h1.Get("http://" + plainAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("plain-HTTP redirect: %d, Strict-Transport-Security %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	ts := newTestServer(t)
	resp, _ = ts.anon().do("GET", "/api/health", nil)
	if v := resp.Header.Get("Strict-Transport-Security"); v != "" {
		t.Errorf("plain HTTP server: Strict-Transport-Security %q", v)
	}
}
