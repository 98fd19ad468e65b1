package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Sample contents by what they sniff as.
var (
	pngBytes  = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), bytes.Repeat([]byte{7}, 100)...)
	jpegBytes = append([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), bytes.Repeat([]byte{1}, 50)...)
	gifBytes  = []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")
	webpBytes = []byte("RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00")
	svgBytes  = []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)
	htmlBytes = []byte(`<!DOCTYPE html><html><script>alert(1)</script></html>`)
)

// uploadOK uploads content to to and expects 201; it returns the message.
func (c *client) uploadOK(to *client, name, declared string, content []byte) Message {
	c.t.Helper()
	resp, data := c.upload([][2]string{{"to", to.username}, {"file", ""}}, name, declared, content)
	checkJSON(c.t, resp, data, http.StatusCreated)
	var out struct {
		Message Message `json:"message"`
	}
	json.Unmarshal(data, &out)
	return out.Message
}

// download GETs a file URL and returns the answer.
func (c *client) download(url string) (*http.Response, []byte) {
	c.t.Helper()
	return c.do("GET", url, nil)
}

func TestFiles_UploadDownloadAccess(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	carol := ts.user("carol")
	befriend(alice, carol)

	// The file part first, the to field after it, works as well.
	resp, data := alice.upload([][2]string{{"file", ""}, {"to", bob.username}}, "pic.png", "application/x-evil", pngBytes)
	checkJSON(t, resp, data, http.StatusCreated)
	var raw struct {
		Message map[string]any `json:"message"`
	}
	json.Unmarshal(data, &raw)
	f, _ := raw.Message["file"].(map[string]any)
	if f == nil || raw.Message["body"] != "pic.png" || raw.Message["from"] != alice.username || raw.Message["to"] != bob.username {
		t.Fatalf("upload answered %s", data)
	}
	for _, k := range []string{"id", "name", "size", "content_type", "url"} {
		if _, ok := f[k]; !ok {
			t.Fatalf("file object lacks %s: %s", k, data)
		}
	}
	var out struct {
		Message Message `json:"message"`
	}
	json.Unmarshal(data, &out)
	msg := out.Message
	if msg.File.Name != "pic.png" || msg.File.Size != int64(len(pngBytes)) || msg.File.ContentType != "image/png" ||
		msg.File.URL != fmt.Sprintf("/api/files/%d", msg.File.ID) {
		t.Fatalf("file object %+v", msg.File)
	}
	if !strings.Contains(string(data), fmt.Sprintf(`"size":%d`, len(pngBytes))) {
		t.Fatalf("size is not a JSON integer: %s", data)
	}
	// The recipient's poll carries the same message.
	if got := bob.messages(); len(got) != 1 || got[0].File == nil || *got[0].File != *msg.File || got[0].ID != msg.ID {
		t.Fatalf("bob's queue %+v", got)
	}

	// Sender and recipient may download; the others may not know it exists.
	for _, c := range []*client{alice, bob} {
		resp, data := c.download(msg.File.URL)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(data, pngBytes) {
			t.Fatalf("%s downloads: %d, %d bytes", c.username, resp.StatusCode, len(data))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
			t.Fatalf("served as %q", ct)
		}
		if cd := resp.Header.Get("Content-Disposition"); strings.HasPrefix(cd, "attachment") {
			t.Fatalf("a PNG is served as %q", cd)
		}
	}
	resp, data = carol.download(msg.File.URL)
	checkError(t, resp, data, http.StatusNotFound, errorCode(data))
	resp, data = ts.anon().download(msg.File.URL)
	checkError(t, resp, data, http.StatusUnauthorized, "unauthorized")
	for _, u := range []string{"/api/files/999999", "/api/files/abc", "/api/files/-1", "/api/files/0"} {
		resp, data := alice.download(u)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d %s", u, resp.StatusCode, data)
		}
	}

	// Still there after a restart.
	ts.restart()
	if resp, data := bob.download(msg.File.URL); resp.StatusCode != 200 || !bytes.Equal(data, pngBytes) {
		t.Fatalf("after restart: %d", resp.StatusCode)
	}
	if stored := ts.storedFiles(); stored != 1 {
		t.Fatalf("%d files stored, want 1", stored)
	}

	// The recipient cleans: the sender's queue still holds it, so both
	// may still download. Once both have cleaned: 404 and the file is gone.
	bob.clean(1 << 40)
	for _, c := range []*client{alice, bob} {
		if resp, _ := c.download(msg.File.URL); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s after bob's clean: %d", c.username, resp.StatusCode)
		}
	}
	alice.clean(1 << 40)
	for _, c := range []*client{alice, bob} {
		resp, data := c.download(msg.File.URL)
		checkError(t, resp, data, http.StatusNotFound, errorCode(data))
	}
	if left := ts.storedFiles(); left != 0 {
		t.Fatalf("%d files still stored after both cleaned", left)
	}
}

func TestFiles_ContentTypeAndDisposition(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	for _, c := range []struct {
		name, declared string
		content        []byte
		sniffed        string
		inline         bool
	}{
		{"a.png", "text/html", pngBytes, "image/png", true},
		{"a.jpg", "text/html", jpegBytes, "image/jpeg", true},
		{"a.gif", "text/html", gifBytes, "image/gif", true},
		{"a.webp", "text/html", webpBytes, "image/webp", true},
		{"a.svg", "image/svg+xml", svgBytes, "", false},
		{"evil.png", "image/png", htmlBytes, "text/html; charset=utf-8", false},
		{"a.bin", "image/png", []byte{0, 1, 2, 3, 4, 5}, "application/octet-stream", false},
		{"a.txt", "image/gif", []byte("plain words"), "text/plain; charset=utf-8", false},
		{"empty", "image/png", nil, "text/plain; charset=utf-8", false},
	} {
		m := alice.uploadOK(bob, c.name, c.declared, c.content)
		if c.sniffed != "" && m.File.ContentType != c.sniffed {
			t.Fatalf("%s: content_type %q, want sniffed %q", c.name, m.File.ContentType, c.sniffed)
		}
		if m.File.ContentType == c.declared {
			t.Fatalf("%s: content_type is the declared %q", c.name, c.declared)
		}
		resp, data := bob.download(m.File.URL)
		if resp.StatusCode != 200 || !bytes.Equal(data, c.content) {
			t.Fatalf("%s: download %d, %d bytes", c.name, resp.StatusCode, len(data))
		}
		if resp.Header.Get("Content-Type") != m.File.ContentType {
			t.Fatalf("%s: served as %q, content_type %q", c.name, resp.Header.Get("Content-Type"), m.File.ContentType)
		}
		cd := resp.Header.Get("Content-Disposition")
		if attach := strings.HasPrefix(cd, "attachment"); attach == c.inline {
			t.Fatalf("%s (%s): Content-Disposition %q", c.name, m.File.ContentType, cd)
		}
	}
}

func TestFiles_Rejects(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config) { c.MaxFileSize = 1000 })
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	stranger := ts.user("stranger")
	before := queueState(alice) + "|" + queueState(bob)

	// Exactly the limit is fine; one byte more is 413 too_large.
	ok := alice.uploadOK(bob, "limit.bin", "", bytes.Repeat([]byte{1}, 1000))
	before = queueState(alice) + "|" + queueState(bob)
	resp, data := alice.upload([][2]string{{"to", bob.username}, {"file", ""}}, "big.bin", "", bytes.Repeat([]byte{1}, 1001))
	checkError(t, resp, data, http.StatusRequestEntityTooLarge, "too_large")
	resp, data = alice.upload([][2]string{{"to", bob.username}, {"file", ""}}, "big.bin", "", bytes.Repeat([]byte{1}, 200000))
	checkError(t, resp, data, http.StatusRequestEntityTooLarge, "too_large")

	for _, c := range []struct {
		name   string
		fields [][2]string
		status int
		code   string
	}{
		{"to a stranger", [][2]string{{"to", stranger.username}, {"file", ""}}, 403, "not_friends"},
		{"to nobody", [][2]string{{"to", "nobody-here"}, {"file", ""}}, 404, "no_such_user"},
		{"to myself", [][2]string{{"to", alice.username}, {"file", ""}}, 400, "cannot_message_self"},
		{"no to", [][2]string{{"file", ""}}, 400, "bad_request"},
		{"no file", [][2]string{{"to", bob.username}}, 400, "bad_request"},
		{"long client_msg_id", [][2]string{{"to", bob.username}, {"client_msg_id", strings.Repeat("k", 65)}, {"file", ""}}, 400, "bad_request"},
	} {
		resp, data := alice.upload(c.fields, "x.bin", "", []byte("some bytes"))
		if resp.StatusCode != c.status || errorCode(data) != c.code {
			t.Fatalf("%s: %d %s, want %d %s", c.name, resp.StatusCode, data, c.status, c.code)
		}
		checkError(t, resp, data, c.status, c.code)
	}
	// Not multipart at all: 400 bad_request.
	alice.mustFail("POST", "/api/files", map[string]any{"to": bob.username, "file": "aGVsbG8="}, 400, "bad_request")
	resp, data = alice.doWith("POST", "/api/files", "to="+bob.username, func(r *http.Request) {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	})
	checkError(t, resp, data, 400, "bad_request")
	resp, data = alice.doWith("POST", "/api/files", "garbage", func(r *http.Request) {
		r.Header.Set("Content-Type", "multipart/form-data; boundary=xyz")
	})
	checkError(t, resp, data, 400, "bad_request")
	resp, data = alice.doWith("POST", "/api/files", "garbage", func(r *http.Request) {
		r.Header.Set("Content-Type", "multipart/form-data")
	})
	checkError(t, resp, data, 400, "bad_request")

	// Nothing of the refused uploads stays, in the queues or on disk.
	if after := queueState(alice) + "|" + queueState(bob); after != before {
		t.Fatalf("refused uploads changed the queues:\n%s\n%s", before, after)
	}
	if stored := ts.storedFiles(); stored != 1 {
		t.Fatalf("files folder holds %v, want only the accepted upload", stored)
	}

	// A repeated client_msg_id answers 200 with the first message and
	// keeps no second copy of the bytes.
	fields := [][2]string{{"to", bob.username}, {"client_msg_id", "up-1"}, {"file", ""}}
	resp, data = alice.upload(fields, "one.txt", "", []byte("first"))
	checkJSON(t, resp, data, http.StatusCreated)
	var first, again struct {
		Message Message `json:"message"`
	}
	json.Unmarshal(data, &first)
	resp, data = alice.upload(fields, "two.txt", "", []byte("second"))
	checkJSON(t, resp, data, http.StatusOK)
	json.Unmarshal(data, &again)
	if first.Message.ID != again.Message.ID || *first.Message.File != *again.Message.File {
		t.Fatalf("repeat answered %+v, want %+v", again.Message, first.Message)
	}
	if stored := ts.storedFiles(); stored != 2 {
		t.Fatalf("files folder holds %v, want 2", stored)
	}
	if got := bob.messages(); len(got) != 2 || got[0].ID != ok.ID || got[1].ID != first.Message.ID {
		t.Fatalf("bob's queue %+v", got)
	}
}

func TestFiles_DefaultSizeLimit(t *testing.T) {
	if raceEnabled {
		t.Skip("20 MiB through multipart is slow under -race; TestFiles_Rejects covers the limit")
	}
	t.Parallel()
	ts := newTestServer(t) // the default -max-file-size: 10 MiB
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	exact := bytes.Repeat([]byte{0xAB}, 10<<20)
	m := alice.uploadOK(bob, "ten.bin", "", exact)
	if m.File.Size != 10<<20 {
		t.Fatalf("size %d", m.File.Size)
	}
	resp, data := alice.upload([][2]string{{"to", bob.username}, {"file", ""}}, "more.bin", "", append(exact, 1))
	checkError(t, resp, data, http.StatusRequestEntityTooLarge, "too_large")
	if stored := ts.storedFiles(); stored != 1 {
		t.Fatalf("files folder holds %v", stored)
	}
}

func TestFiles_OddNamesStayAttachments(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	fr := ts.friends("alice", "bob")
	alice, bob := fr[0], fr[1]
	for _, name := range []string{`a"b;c=d ü.svg`, "../../etc/passwd", `C:\evil\x.html`, "\u202egnp.svg", "名前.svg", "", ".."} {
		m := alice.uploadOK(bob, name, "image/svg+xml", svgBytes)
		if strings.ContainsAny(m.File.Name, `/\`) || m.File.Name == "" || m.Body != m.File.Name {
			t.Fatalf("name %q stored as %q (body %q)", name, m.File.Name, m.Body)
		}
		resp, data := bob.download(m.File.URL)
		if resp.StatusCode != 200 || !bytes.Equal(data, svgBytes) {
			t.Fatalf("%q: %d", name, resp.StatusCode)
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
			t.Fatalf("%q: Content-Disposition %q", name, cd)
		}
	}
}
