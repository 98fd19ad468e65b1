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
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"webim/internal/pgtest"
)

// Debian's nginx, running deploy/nginx-cluster.conf as the README tells,
// in front of three webim processes on one PostgreSQL: a chat through it.
// Until nodes wake each other's polls, a message sent through one node
// reaches a poll waiting on another at that poll's timeout, so the chat
// polls with short timeouts: it checks delivery, not latency.

const nginxBin = "/usr/sbin/nginx"

// nginxConf is deploy/nginx-cluster.conf with its ports and paths replaced;
// every replaced string must be in the file, so the test cannot drift from it.
func nginxConf(t *testing.T, nodes []string, httpsAddr, httpAddr, cert, key string) string {
	t.Helper()
	data, err := os.ReadFile("deploy/nginx-cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	replace := [][2]string{
		{"listen 443 ssl http2;", "listen " + httpsAddr + " ssl http2;"},
		{"listen 80;", "listen " + httpAddr + ";"},
		{"/etc/letsencrypt/live/chat.example.com/fullchain.pem", cert},
		{"/etc/letsencrypt/live/chat.example.com/privkey.pem", key},
	}
	for i, n := range nodes {
		replace = append(replace, [2]string{fmt.Sprintf("server 127.0.0.1:%d ", 8001+i), "server " + n + " "})
	}
	for _, r := range replace {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("deploy/nginx-cluster.conf no longer has %q", r[0])
		}
		conf = strings.ReplaceAll(conf, r[0], r[1])
	}
	return conf
}

// selfSigned writes a certificate for chat.example.com and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chat.example.com"},
		DNSNames:     []string{"chat.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startNginx runs nginx in the foreground on conf (an http {} include)
// with everything it writes under dir, and stops it at cleanup.
func startNginx(t *testing.T, dir, conf, listen string) {
	t.Helper()
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	os.WriteFile(filepath.Join(dir, "webim.conf"), []byte(conf), 0o600)
	// What Debian's /etc/nginx/nginx.conf gives around conf.d/, minus what
	// would touch the system (its paths, its user).
	user := ""
	if os.Geteuid() == 0 {
		// As root the workers would become nobody, who cannot read the
		// test's private temp dir.
		user = "user root;"
	}
	main := fmt.Sprintf(`%s
worker_processes 1;
events { worker_connections 1024; }
http {
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log %[2]s/logs/access.log upstream;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/webim.conf;
}
`, user, dir)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o600)
	args := []string{"-p", dir, "-e", filepath.Join(dir, "logs", "error.log"), "-c", filepath.Join(dir, "nginx.conf"),
		"-g", "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"}
	if out, err := exec.Command(nginxBin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, conf)
	}
	cmd := exec.Command(nginxBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// SIGTERM: the master stops its workers and exits; only then, its
		// process group (the workers it may have left).
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), logs)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %s", listen, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pollFor polls through base from cursor until a message with body
// arrives, and returns its event's seq and the message.
func pollFor(t *testing.T, hc *http.Client, base, token string, cursor int64, body string) (int64, Message) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, data, err := apiCall(hc, base, token, "GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=2", cursor), nil)
		if err != nil || st != http.StatusOK {
			t.Fatalf("poll: %d %s %v", st, data, err)
		}
		var p pollResult
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if e.Type == "message" && e.Message.Body == body {
				return e.Seq, *e.Message
			}
		}
		cursor = p.Cursor
	}
	t.Fatalf("no message %q within 30 s", body)
	return 0, Message{}
}

func TestNginx_ThreeNodesOnePostgres(t *testing.T) {
	if engine != "sqlite" {
		t.Skip("its nodes run on PostgreSQL whatever the pass; runs once")
	}
	if _, err := os.Stat(nginxBin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and there is no %s (.ci/run installs Debian's nginx)", nginxBin)
		}
		t.Skipf("no %s (apt-get install nginx)", nginxBin)
	}
	db := pgtest.NewDatabase(t)
	bin := buildWebim(t)
	var nodes []*proc
	var addrs []string
	for range 3 {
		p := startWebim(t, bin, "-addr", "127.0.0.1:0", "-db", db, "-trust-proxy", "127.0.0.1", "-rate-limit-exempt", "127.0.0.1")
		nodes = append(nodes, p)
		addrs = append(addrs, p.addr)
	}
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	httpsAddr, httpAddr := freeAddr(t), freeAddr(t)
	startNginx(t, dir, nginxConf(t, addrs, httpsAddr, httpAddr, cert, key), httpsAddr)

	_, port, _ := net.SplitHostPort(httpsAddr)
	base := "https://chat.example.com:" + port
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	hc := &http.Client{Timeout: 70 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "chat.example.com"},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, httpsAddr)
		},
	}}

	// Plain HTTP is sent to HTTPS.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get("http://" + httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Fatalf("plain HTTP: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The page and health, through nginx over HTTP/2.
	for range 6 {
		resp, err := hc.Get(base + "/api/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("health: %d over %s", resp.StatusCode, resp.Proto)
		}
	}
	if st, _, err := apiCall(hc, base, "", "GET", "/metrics", nil); err != nil || st != http.StatusNotFound {
		t.Fatalf("/metrics through nginx: %d %v, want 404", st, err)
	}

	alice, bob := uniqueName("alice"), uniqueName("bob")
	aTok, bTok := procUser(t, hc, base, alice), procUser(t, hc, base, bob)
	procBefriend(t, hc, base, alice, aTok, bob, bTok)

	// -trust-proxy believes nginx's X-Forwarded-Proto: the cookie is Secure.
	login, _ := json.Marshal(map[string]string{"username": alice, "password": "correct horse battery"})
	resp, err = hc.Post(base+"/api/login", "application/json", bytes.NewReader(login))
	if err != nil {
		t.Fatal(err)
	}
	var li struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&li)
	resp.Body.Close()
	if c := resp.Header.Get("Set-Cookie"); resp.StatusCode != http.StatusOK || !strings.Contains(c, "Secure") {
		t.Fatalf("login through nginx: %d, cookie %q: want Secure", resp.StatusCode, c)
	}
	aTok = li.Token

	send := func(from, to, body, cid string) Message {
		t.Helper()
		st, data, err := apiCall(hc, base, from, "POST", "/api/messages", map[string]any{"to": to, "body": body, "client_msg_id": cid})
		if err != nil || st != http.StatusCreated {
			t.Fatalf("send %q: %d %s %v", body, st, data, err)
		}
		var out struct{ Message Message }
		json.Unmarshal(data, &out)
		return out.Message
	}
	var bCursor, aCursor int64
	m1 := send(aTok, bob, "hello through nginx", "n-1")
	var got Message
	bCursor, got = pollFor(t, hc, base, bTok, bCursor, "hello through nginx")
	if got.ID != m1.ID || got.From != alice {
		t.Fatalf("bob got %+v, want %+v", got, m1)
	}
	send(bTok, alice, "and back", "n-2")
	aCursor, _ = pollFor(t, hc, base, aTok, aCursor, "and back")

	// A file through nginx (more than one chunk; uploads stream), and
	// downloaded by the other end.
	content := make([]byte, 700<<10)
	rand.Read(content)
	st, data, err := procUpload(hc, base, aTok, bob, "big.bin", "n-3", content)
	if err != nil || st != http.StatusCreated {
		t.Fatalf("upload: %d %s %v", st, data, err)
	}
	var up struct{ Message Message }
	json.Unmarshal(data, &up)
	_, fm := pollFor(t, hc, base, bTok, bCursor, "big.bin")
	st, dl, err := apiCall(hc, base, bTok, "GET", fm.File.URL, nil)
	if err != nil || st != http.StatusOK || !bytes.Equal(dl, content) {
		t.Fatalf("download: %d, %d bytes (want %d) %v", st, len(dl), len(content), err)
	}

	// A node dies: nginx passes its requests to the others, a send that
	// could not reach it included (it was never sent, so it is not a retry).
	nodes[1].kill()
	for i := range 5 {
		body := fmt.Sprintf("after the kill %d", i)
		send(aTok, bob, body, fmt.Sprintf("k-%d", i))
		bCursor, _ = pollFor(t, hc, base, bTok, bCursor, body)
	}
	_ = aCursor

	// Requests were spread over the nodes.
	logs, err := os.ReadFile(filepath.Join(dir, "logs", "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m) (127\.0\.0\.1:\d+)$`).FindAllStringSubmatch(string(logs), -1) {
		served[m[1]]++
	}
	t.Logf("requests by node: %v; tried more than one: %d", served, strings.Count(string(logs), ", 127.0.0.1:"))
	if len(served) < 2 {
		t.Fatalf("nginx sent every request to one node: %v", served)
	}
}
