package main

// The embedded page, served compressed and cacheable. Every file is
// compressed once per process (brotli and gzip, at their best levels), so a
// request costs no compression CPU; the encoding is picked from
// Accept-Encoding, and each encoding of a file has its own strong ETag.
//
// Only these files are ever compressed. API answers are not: several carry
// secrets (login's token, messages) next to text an attacker can choose
// (message bodies, search prefixes, usernames), which is what BREACH needs;
// see SECURITY.md.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
)

// asset is one embedded file with its encodings.
type asset struct {
	ctype string
	// variants, best first: brotli, gzip, then the file as is. An encoding
	// that would not be smaller is left out.
	variants []variant
}

// variant is one encoding of an asset.
type variant struct {
	encoding string // "" for the file as is
	body     []byte
	etag     string
}

var (
	staticFS, _ = fs.Sub(staticFiles, "static")
	// staticAssets compresses the embedded files on first use; the
	// files never change while the process runs.
	staticAssets = sync.OnceValues(func() (map[string]*asset, error) { return buildAssets(staticFS) })
)

// buildAssets reads and compresses every file of fsys, by slash path.
func buildAssets(fsys fs.FS) (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(raw)
		tag := base64.RawURLEncoding.EncodeToString(sum[:18])
		a := &asset{ctype: mime.TypeByExtension(path.Ext(name))}
		if a.ctype == "" {
			a.ctype = "application/octet-stream"
		}
		var br, gz bytes.Buffer
		bw := brotli.NewWriterLevel(&br, brotli.BestCompression)
		bw.Write(raw)
		if err := bw.Close(); err != nil {
			return err
		}
		gw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		gw.Write(raw)
		if err := gw.Close(); err != nil {
			return err
		}
		// A strong ETag names one representation: the encodings differ in
		// their bytes, so each has its own.
		for _, v := range []variant{{"br", br.Bytes(), `"` + tag + `-br"`}, {"gzip", gz.Bytes(), `"` + tag + `-gz"`}} {
			if len(v.body) < len(raw) {
				a.variants = append(a.variants, v)
			}
		}
		a.variants = append(a.variants, variant{"", raw, `"` + tag + `"`})
		out[name] = a
		return nil
	})
	return out, err
}

// acceptedEncodings reads Accept-Encoding into the q-value of each coding
// named ("*" included); a coding not named is absent from the map.
func acceptedEncodings(header []string) map[string]float64 {
	q := map[string]float64{}
	for _, h := range header {
		for _, part := range strings.Split(h, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding == "" {
				continue
			}
			v := 1.0
			for _, p := range strings.Split(params, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil || f < 0 || f > 1 {
						f = 0 // a q-value we cannot read does not ask for the coding
					}
					v = f
				}
			}
			if coding == "x-gzip" {
				coding = "gzip"
			}
			q[coding] = v
		}
	}
	return q
}

// pick returns the variant the client prefers: the encoding with the highest
// q-value it accepts (brotli on a tie, being smaller), else the file as is.
func (a *asset) pick(acceptEncoding []string) *variant {
	q := acceptedEncodings(acceptEncoding)
	best, bestQ := len(a.variants)-1, 0.0
	for i, v := range a.variants[:len(a.variants)-1] {
		w, ok := q[v.encoding]
		if !ok {
			w = q["*"]
		}
		if w > bestQ {
			best, bestQ = i, w
		}
	}
	return &a.variants[best]
}

// serveAsset answers with the named embedded file. Cache-Control no-cache:
// a browser keeps the file but asks each time, and gets a 304 while the
// ETag still matches, so an upgraded server is seen at once. (The modules
// import each other by plain names, so content-hashed names with immutable
// caching would need the imports rewritten; a 304 per file is the price.)
func (a *App) serveAsset(w http.ResponseWriter, r *http.Request, name string) error {
	assets, err := staticAssets()
	if err != nil {
		return err
	}
	as := assets[name]
	if as == nil {
		return errNotFound
	}
	v := as.pick(r.Header["Accept-Encoding"])
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept-Encoding")
	h.Set("Content-Type", as.ctype)
	h.Set("ETag", v.etag)
	if v.encoding != "" {
		h.Set("Content-Encoding", v.encoding)
	}
	// ServeContent answers If-None-Match (304), HEAD and ranges (of the
	// encoded bytes, as RFC 9110 has it) from the ETag set above.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(v.body))
	return nil
}
