package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// crashAck is a sender's record of a message the server confirmed.
type crashAck struct {
	id       int64
	status   int // 201, or 200 when a retry found the earlier attempt stored
	attempts int
}

// TestCrash_KillDashNineKeepsEvery201 runs the real binary under concurrent
// senders (each message with a client_msg_id) and receivers that poll and
// clean, kills it with SIGKILL mid-load several times and restarts it on the
// same file. Senders with no answer retry the same client_msg_id until they
// get one. In the end every confirmed message is in its recipient's stream
// exactly once, no client_msg_id is stored twice, and the file is sound.
func TestCrash_KillDashNineKeepsEvery201(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and restarts the binary; skipped with -short")
	}
	const (
		cycles     = 5
		nSenders   = 10 // the last nFiles of them upload files
		nFiles     = 2
		nReceivers = 2
		maxPerSend = 20_000 // bound on each sender's loop
	)
	t0 := time.Now()
	bin := buildWebim(t)
	t.Logf("%v built", time.Since(t0))
	dbPath := engineDB(t)
	args := []string{"-addr", "127.0.0.1:0", "-db", dbPath, "-rate-limit-exempt", "127.0.0.0/8"}
	p := startWebim(t, bin, args...)
	args[1] = p.addr // restarts reuse the port, so clients need not be told
	base := "http://" + p.addr
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	hardStop := time.Now().Add(90 * time.Second)

	recvNames := make([]string, nReceivers)
	recvToks := make([]string, nReceivers)
	for i := range recvNames {
		recvNames[i] = uniqueName("crashrecv")
		recvToks[i] = procUser(t, hc, base, recvNames[i])
	}
	sendNames := make([]string, nSenders)
	sendToks := make([]string, nSenders)
	for i := range sendNames {
		sendNames[i] = uniqueName("crashsend")
		sendToks[i] = procUser(t, hc, base, sendNames[i])
		r := i % nReceivers
		procBefriend(t, hc, base, sendNames[i], sendToks[i], recvNames[r], recvToks[r])
	}

	var (
		stopSending  atomic.Bool
		acked        atomic.Int64
		retried      atomic.Int64 // messages that needed more than one attempt
		answered200  atomic.Int64 // retries that found the message already stored
		senderCleans atomic.Int64
		mu           sync.Mutex
		acks         = map[string]crashAck{} // by client_msg_id (also the body)
	)
	var senders sync.WaitGroup
	for i := range nSenders {
		senders.Add(1)
		go func() {
			defer senders.Done()
			to := recvNames[i%nReceivers]
			for k := 0; k < maxPerSend && !stopSending.Load(); k++ {
				cid := fmt.Sprintf("%s/%d", sendNames[i], k)
				isFile := i >= nSenders-nFiles
				if isFile {
					cid = fmt.Sprintf("%s-%d", sendNames[i], k) // also the file's name
				}
				for attempt := 1; ; attempt++ {
					if time.Now().After(hardStop) {
						t.Errorf("sender %d: no answer for %s by the deadline", i, cid)
						return
					}
					var st int
					var data []byte
					var err error
					if isFile {
						st, data, err = procUpload(hc, base, sendToks[i], to, cid, cid, crashFileContent(cid))
					} else {
						st, data, err = apiCall(hc, base, sendToks[i], "POST", "/api/messages",
							map[string]any{"to": to, "body": cid, "client_msg_id": cid})
					}
					if err != nil || st == http.StatusServiceUnavailable {
						time.Sleep(10 * time.Millisecond)
						continue // no answer (killed) or shutting down: retry the same id
					}
					if st != http.StatusCreated && st != http.StatusOK {
						t.Errorf("sender %d: %s answered %d %s", i, cid, st, data)
						return
					}
					var out struct{ Message Message }
					if err := json.Unmarshal(data, &out); err != nil || out.Message.Body != cid {
						t.Errorf("sender %d: %s answered %s", i, cid, data)
						return
					}
					mu.Lock()
					acks[cid] = crashAck{id: out.Message.ID, status: st, attempts: attempt}
					mu.Unlock()
					acked.Add(1)
					if attempt > 1 {
						retried.Add(1)
					}
					if st == http.StatusOK {
						answered200.Add(1)
					}
					break
				}
				// Uploaders clean their own queue now and then, so files are
				// also deleted (after their commit) while the kills go on.
				if isFile && k%10 == 9 {
					for !stopSending.Load() && time.Now().Before(hardStop) {
						st, _, err := apiCall(hc, base, sendToks[i], "POST", "/api/clean", map[string]any{"upto": 1 << 40})
						if err == nil && st == http.StatusOK {
							senderCleans.Add(1)
							break
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
			}
		}()
	}

	// Receivers poll, check their cursor only moves forward, and clean now
	// and then, so clean state is also caught mid-crash.
	type delivery struct {
		id, seq int64
		fileURL string
	}
	received := make([]map[string][]delivery, nReceivers)
	cursors := make([]int64, nReceivers)
	cleanedUpTo := make([]int64, nReceivers) // by the last clean answered 200
	var stopReceiving atomic.Bool
	var cleans atomic.Int64
	var receivers sync.WaitGroup
	pollOnce := func(r int, timeout int) (int, error) {
		st, data, err := apiCall(hc, base, recvToks[r], "GET", fmt.Sprintf("/api/poll?cursor=%d&timeout=%d", cursors[r], timeout), nil)
		if err != nil || st != http.StatusOK {
			return 0, fmt.Errorf("poll: %d %v", st, err)
		}
		var pr pollResult
		if err := json.Unmarshal(data, &pr); err != nil {
			return 0, err
		}
		for _, e := range pr.Events {
			if e.Seq <= cursors[r] {
				t.Errorf("receiver %d: event seq %d at or before cursor %d", r, e.Seq, cursors[r])
			}
			if e.Type == "message" {
				d := delivery{id: e.Message.ID, seq: e.Seq}
				if e.Message.File != nil {
					d.fileURL = e.Message.File.URL
				}
				received[r][e.Message.Body] = append(received[r][e.Message.Body], d)
			}
		}
		if len(pr.Events) > 0 {
			if pr.Cursor < cursors[r] {
				t.Errorf("receiver %d: cursor went back from %d to %d", r, cursors[r], pr.Cursor)
			}
			cursors[r] = pr.Cursor
		}
		return len(pr.Events), nil
	}
	for r := range nReceivers {
		received[r] = map[string][]delivery{}
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			sinceClean := 0
			for !stopReceiving.Load() && time.Now().Before(hardStop) {
				n, err := pollOnce(r, 1)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if sinceClean += n; sinceClean >= 50 {
					// Cleaning is idempotent: an unanswered clean is simply
					// sent again with the next one.
					st, _, err := apiCall(hc, base, recvToks[r], "POST", "/api/clean", map[string]any{"upto": cursors[r]})
					if err == nil && st == http.StatusOK {
						sinceClean = 0
						cleanedUpTo[r] = cursors[r]
						cleans.Add(1)
					}
				}
			}
		}()
	}

	t.Logf("%v set up", time.Since(t0))
	// Kill and restart mid-load.
	for c := 1; c <= cycles; c++ {
		start := acked.Load()
		time.Sleep(time.Duration(500+rand.IntN(700)) * time.Millisecond)
		eventually(t, 20*time.Second, "messages to flow before the kill", func() bool { return acked.Load() > start+20 })
		p.kill()
		t.Logf("%v cycle %d: SIGKILL after %d confirmed messages in all", time.Since(t0), c, acked.Load())
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		p = startWebim(t, bin, args...)
	}
	// Let the last run take load too, then stop senders; each finishes the
	// message it is on.
	eventually(t, 20*time.Second, "messages after the last restart", func() bool { return acked.Load() > 0 })
	time.Sleep(300 * time.Millisecond)
	stopSending.Store(true)
	senders.Wait()
	t.Logf("%v senders done", time.Since(t0))
	stopReceiving.Store(true)
	receivers.Wait()
	t.Logf("%v receivers done", time.Since(t0))
	for r := range nReceivers {
		for {
			n, err := pollOnce(r, 0)
			if err != nil {
				t.Fatalf("final poll: %v", err)
			}
			if n == 0 {
				break
			}
		}
	}

	// Every confirmed message reached its recipient exactly once, with the id
	// the sender was told; nothing arrived that was not confirmed.
	total := 0
	for r := range nReceivers {
		for body, ds := range received[r] {
			total += len(ds)
			a, ok := acks[body]
			switch {
			case !ok:
				t.Errorf("receiver %d got %q, which no sender had confirmed", r, body)
			case len(ds) != 1:
				t.Errorf("receiver %d got %q %d times: %v", r, body, len(ds), ds)
			case ds[0].id != a.id:
				t.Errorf("receiver %d got %q as message %d; its sender was told %d", r, body, ds[0].id, a.id)
			}
		}
	}
	for cid := range acks {
		found := false
		for r := range nReceivers {
			if len(received[r][cid]) > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("confirmed message %q (id %d, status %d) was never delivered", cid, acks[cid].id, acks[cid].status)
		}
	}

	// Every file message's bytes are there, unless both its users cleaned
	// it (the recipient's part is known here; the uploader cleans all).
	files, filesGone := 0, 0
	for r := range nReceivers {
		for body, ds := range received[r] {
			if len(ds) != 1 || ds[0].fileURL == "" {
				continue
			}
			files++
			st, data, err := apiCall(hc, base, recvToks[r], "GET", ds[0].fileURL, nil)
			if err == nil && st == http.StatusNotFound && ds[0].seq <= cleanedUpTo[r] {
				filesGone++
				continue
			}
			if err != nil || st != http.StatusOK || !bytes.Equal(data, crashFileContent(body)) {
				t.Errorf("file %s: %d, %d bytes, %v", body, st, len(data), err)
			}
		}
	}

	// A graceful stop, then the file itself.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM\n%s", code, p.log())
	}
	t.Logf("%v stopped", time.Since(t0))
	db := openCheckDB(t, dbPath)
	checkDBInvariants(t, db)
	t.Logf("%v checked", time.Since(t0))
	// Text messages are never cleaned by their senders: each is stored
	// once, with its sender's copy. Every file row has its bytes on disk,
	// and no file is left that no row names.
	var stored, dupCIDs, senderCopies int
	db.QueryRow(`SELECT count(*) FROM messages WHERE file_id IS NULL`).Scan(&stored)
	db.QueryRow(`SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY sender_id, body HAVING count(*) > 1) AS x`).Scan(&dupCIDs)
	db.QueryRow(`SELECT count(*) FROM queue q JOIN messages m ON m.id = q.message_id WHERE q.user_id = m.sender_id AND m.file_id IS NULL`).Scan(&senderCopies)
	if dupCIDs != 0 {
		t.Errorf("%d messages were stored more than once", dupCIDs)
	}
	if want := len(acks) - files; stored != want || senderCopies != want {
		t.Errorf("database holds %d text messages and %d sender copies; senders had %d confirmed", stored, senderCopies, want)
	}
	fileRows := checkFileBytes(t, db, dbPath)
	t.Logf("%d kill -9 cycles; %d messages confirmed, %d of them files (%d needed a retry, %d of those answered 200 as already stored); %d delivered; %d cleans by recipients, %d by uploaders; %d files deleted by both cleaning, %d left",
		cycles, len(acks), files, retried.Load(), answered200.Load(), total, cleans.Load(), senderCleans.Load(), filesGone, fileRows)
}

// crashFileContent is the bytes of the crash test's file named cid.
func crashFileContent(cid string) []byte { return bytes.Repeat([]byte(cid+"\n"), 100) }

// checkFileBytes checks that every file row has its bytes, of its size, and
// that no bytes are left that no row names; it returns the number of rows.
func checkFileBytes(t *testing.T, db *sql.DB, dbPath string) int {
	t.Helper()
	if isPostgresDB(db) {
		return checkFileBlobs(t, db)
	}
	rows, err := db.Query(`SELECT storage_name, size FROM files`)
	if err != nil {
		t.Fatal(err)
	}
	fileRows := 0
	for rows.Next() {
		var name string
		var size int64
		rows.Scan(&name, &size)
		fileRows++
		if fi, err := os.Stat(filepath.Join(dbPath+".files", name)); err != nil || fi.Size() != size {
			t.Errorf("file row %s (%d bytes) has on disk: %v", name, size, err)
		}
	}
	rows.Close()
	if entries, err := os.ReadDir(dbPath + ".files"); err != nil || len(entries) != fileRows {
		t.Errorf("files folder holds %d files, the database names %d (%v)", len(entries), fileRows, err)
	}
	return fileRows
}

// checkFileBlobs is checkFileBytes for files kept in PostgreSQL: each file
// row's blob holds exactly its size in chunks. Blobs no file row names are
// uploads whose message a kill cut short; the server sweeps those once they
// are an hour old (another node's upload may be on its way), so they are
// only counted here.
func checkFileBlobs(t *testing.T, db *sql.DB) int {
	t.Helper()
	var fileRows, bad, orphans int
	if err := db.QueryRow(`SELECT count(*) FROM files`).Scan(&fileRows); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM files f JOIN blobs b ON b.storage_name = f.storage_name
		WHERE b.size <> f.size OR f.size <> coalesce((SELECT sum(length(c.data)) FROM blob_chunks c WHERE c.storage_name = b.storage_name), 0)`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("%d file rows whose blob does not hold their bytes", bad)
	}
	if err := db.QueryRow(`SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.storage_name = b.storage_name)`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d uploads cut short by a kill wait for the sweep", orphans)
	return fileRows
}
