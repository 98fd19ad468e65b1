package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests that run the real binary as a child process: crash, signal and
// restart behaviour that an in-process httptest server cannot show.

// buildWebim compiles this package into the test's temp dir and returns the
// binary's path. The build cache makes repeats quick.
func buildWebim(t testing.TB) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool to build the binary with")
		}
	}
	bin := filepath.Join(t.TempDir(), "webim")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is one run of the binary.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string // host:port it listens on

	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done closes
}

var listenLine = regexp.MustCompile(`msg="webim listening" addr=(\S+)`)

// startWebim starts bin with args (plus WEBIM_* variables cleared) and waits
// until it listens. The process is killed at cleanup if still running.
func startWebim(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBIM_") {
			env = append(env, kv)
		}
	}
	p.cmd.Env = env
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, errPipe)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case p.addr = <-ready:
	case <-p.done:
		t.Fatalf("webim exited before listening: %v\n%s", p.err, p.log())
	case <-time.After(20 * time.Second):
		p.kill()
		t.Fatalf("webim did not start listening in 20 s\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

// kill ends the process with SIGKILL (kill -9) and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// wait waits up to d for the process to exit and returns its exit code, or
// -1 if it did not exit in time (it is then killed).
func (p *proc) wait(d time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(d):
		p.kill()
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// apiCall is one request to a child process's API with a bearer token; it
// returns the status and body, or the transport error.
func apiCall(hc *http.Client, base, token, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, data, nil
}

// procUser signs up and logs in name on a child process and returns the token.
func procUser(t testing.TB, hc *http.Client, base, name string) string {
	t.Helper()
	pw := "correct horse battery"
	if st, data, err := apiCall(hc, base, "", "POST", "/api/signup", map[string]any{"username": name, "password": pw}); err != nil || st != http.StatusCreated {
		t.Fatalf("signup %s: %d %s %v", name, st, data, err)
	}
	st, data, err := apiCall(hc, base, "", "POST", "/api/login", map[string]any{"username": name, "password": pw})
	if err != nil || st != http.StatusOK {
		t.Fatalf("login %s: %d %s %v", name, st, data, err)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(data, &out); err != nil || out.Token == "" {
		t.Fatalf("login %s: %s", name, data)
	}
	return out.Token
}

// procBefriend makes a and b friends on a child process.
func procBefriend(t testing.TB, hc *http.Client, base, aName, aTok, bName, bTok string) {
	t.Helper()
	if st, data, err := apiCall(hc, base, aTok, "POST", "/api/friends/"+bName+"/request", nil); err != nil || st != http.StatusCreated {
		t.Fatalf("request %s→%s: %d %s %v", aName, bName, st, data, err)
	}
	if st, data, err := apiCall(hc, base, bTok, "POST", "/api/friends/"+aName+"/accept", nil); err != nil || st != http.StatusOK {
		t.Fatalf("accept %s→%s: %d %s %v", aName, bName, st, data, err)
	}
}

func fmtCounts(m map[int]int) string {
	var b strings.Builder
	for _, k := range []int{200, 201, 409, 429, 500, 503} {
		if m[k] > 0 {
			fmt.Fprintf(&b, " %d×%d", m[k], k)
		}
	}
	return b.String()
}

// procUpload posts data as a file message named name from token's user to
// to, with client_msg_id cid unless it is empty.
func procUpload(hc *http.Client, base, token, to, name, cid string, data []byte) (int, []byte, error) {
	var buf bytes.Buffer
	const boundary = "webimtestboundary"
	fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n%s\r\n", boundary, to)
	if cid != "" {
		fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=\"client_msg_id\"\r\n\r\n%s\r\n", boundary, cid)
	}
	fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=%q\r\nContent-Type: application/octet-stream\r\n\r\n", boundary, name)
	buf.Write(data)
	fmt.Fprintf(&buf, "\r\n--%s--\r\n", boundary)
	req, err := http.NewRequest("POST", base+"/api/files", &buf)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}
