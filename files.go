package main

import (
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// inlineImageTypes are the sniffed types served inline; everything else
// (SVG included: it can carry script) is an attachment.
var inlineImageTypes = map[string]bool{
	"image/png":  true,
	"image/jpeg": true,
	"image/gif":  true,
	"image/webp": true,
}

const maxFileNameLen = 255

// errFileTooLarge is returned by SaveUpload past the size limit.
var errFileTooLarge = errors.New("file too large")

// sniffContentType names the bytes' type by content alone; what the uploader
// declared is never trusted.
func sniffContentType(head []byte) string {
	ct := http.DetectContentType(head)
	if i := strings.IndexByte(ct, ';'); i >= 0 && !strings.HasPrefix(ct, "text/") {
		ct = ct[:i]
	}
	return ct
}

// cleanFileName keeps the base name of what the client sent, without control
// characters or path separators, at most maxFileNameLen code points.
func cleanFileName(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == 0x2028 || r == 0x2029 || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > maxFileNameLen {
		name = string([]rune(name)[:maxFileNameLen])
	}
	if name == "" || name == "." || name == ".." {
		name = "file"
	}
	return name
}
