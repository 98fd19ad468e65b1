package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// setFileSizeLimit sets the soft RLIMIT_FSIZE of process pid: writes past
// that offset of any file fail with EFBIG, as on a full disk. Raising it
// again (up to the hard limit) needs no privilege.
func setFileSizeLimit(t testing.TB, pid int, limit uint64) {
	t.Helper()
	var old syscall.Rlimit
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_FSIZE), 0, uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		t.Skipf("prlimit: %v", e)
	}
	nl := syscall.Rlimit{Cur: min(limit, old.Max), Max: old.Max}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_FSIZE), uintptr(unsafe.Pointer(&nl)), 0, 0, 0); e != 0 {
		t.Skipf("prlimit: %v", e)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// TestDiskFull_RealWriteErrors runs the binary with a file size limit just
// above its database's size, so SQLite's own writes (and uploads) really
// fail, as on a full disk: sends answer 503 storage_unavailable (never 500),
// reads go on, and once the limit is lifted the same sends are stored once.
func TestDiskFull_RealWriteErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildWebim(t)
	dbPath := filepath.Join(t.TempDir(), "webim.db")
	p := startWebim(t, bin, "-addr", "127.0.0.1:0", "-db", dbPath, "-rate-limit-exempt", "127.0.0.0/8")
	base := p.url("")
	hc := &http.Client{Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	alice, bob := uniqueName("fullalice"), uniqueName("fullbob")
	aTok, bTok := procUser(t, hc, base, alice), procUser(t, hc, base, bob)
	procBefriend(t, hc, base, alice, aTok, bob, bTok)

	limit := max(fileSize(dbPath), fileSize(dbPath+"-wal")) + 256<<10
	setFileSizeLimit(t, p.cmd.Process.Pid, uint64(limit))
	body := strings.Repeat("x", 3900)
	send := func(cid string) (int, string) {
		st, data, err := apiCall(hc, base, aTok, "POST", "/api/messages", map[string]any{"to": bob, "body": body + cid, "client_msg_id": cid})
		if err != nil {
			t.Fatalf("send %s: %v\n%s", cid, err, p.log())
		}
		var eb errorBody
		json.Unmarshal(data, &eb)
		return st, eb.Error.Code
	}
	stored := map[string]bool{}
	var failed []string
	statuses := map[int]int{}
	for k := 0; k < 2000 && len(failed) < 10; k++ {
		cid := fmt.Sprintf("m%d", k)
		st, code := send(cid)
		statuses[st]++
		switch {
		case st == http.StatusCreated:
			stored[cid] = true
		case st == http.StatusServiceUnavailable && code == "storage_unavailable":
			failed = append(failed, cid)
		default:
			t.Fatalf("send %s on a full disk: %d %s\n%s", cid, st, code, p.log())
		}
	}
	if len(failed) == 0 {
		t.Fatalf("the disk never filled up (limit %d bytes; %d sends)", limit, len(stored))
	}
	// An upload fails the same way.
	st, data, err := procUpload(hc, base, aTok, bob, "f.bin", "", make([]byte, 512<<10))
	if err != nil || st != http.StatusServiceUnavailable {
		t.Errorf("upload on a full disk: %d %s %v", st, data, err)
	}
	// Reads go on.
	if st, data, err := apiCall(hc, base, bTok, "GET", "/api/poll?cursor=0&timeout=0", nil); err != nil || st != http.StatusOK {
		t.Errorf("poll on a full disk: %d %s %v", st, data, err)
	}

	// Space returns: each failed send is stored now, as new (201).
	setFileSizeLimit(t, p.cmd.Process.Pid, ^uint64(0))
	for _, cid := range failed {
		if st, code := send(cid); st != http.StatusCreated {
			t.Errorf("retry of %s after the disk recovered: %d %s", cid, st, code)
		} else {
			stored[cid] = true
		}
	}
	// Bob gets every stored message once.
	seen := map[string]int{}
	cursor := int64(0)
	for {
		st, data, err := apiCall(hc, base, bTok, "GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=0", cursor), nil)
		if err != nil || st != http.StatusOK {
			t.Fatalf("poll: %d %v", st, err)
		}
		var pr pollResult
		decodeInto(t, data, &pr)
		if len(pr.Events) == 0 {
			break
		}
		for _, e := range pr.Events {
			if e.Message != nil {
				seen[strings.TrimPrefix(e.Message.Body, body)]++
			}
		}
		cursor = pr.Cursor
	}
	for cid := range stored {
		if seen[cid] != 1 {
			t.Errorf("%s delivered %d times", cid, seen[cid])
		}
	}
	if len(seen) != len(stored) {
		t.Errorf("bob got %d distinct messages, %d were stored", len(seen), len(stored))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d\n%s", code, p.log())
	}
	checkDBInvariants(t, openSQLiteForCheck(t, dbPath))
	t.Logf("file size limit %d bytes: sends%s; %d stored in all after recovery", limit, fmtCounts(statuses), len(stored))
}
