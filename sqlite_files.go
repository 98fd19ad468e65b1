package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
)

// Uploaded files live in a folder beside the database (<db>.files), one file
// per upload under a random name; the files table maps ids to them. The
// bytes are fsync'd before the message row commits, and unlinked only after
// the commit that drops the last message holding them. A crash between the
// two leaves an orphan, which OpenStore sweeps away.

// SaveUpload streams r into a new file in the files folder, at most maxSize
// bytes, fsyncs it and returns what the message row needs. The caller
// removes it (RemoveUpload) if the message does not commit.
func (s *sqliteStore) SaveUpload(r io.Reader, name string, maxSize int64) (*newFile, error) {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	storage := hex.EncodeToString(rnd[:])
	path := filepath.Join(s.filesDir, storage)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, storageError(err)
	}
	fail := func(err error) (*newFile, error) {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	head = head[:n]
	if int64(n) > maxSize {
		return fail(errFileTooLarge)
	}
	if _, err := f.Write(head); err != nil {
		return fail(storageError(err))
	}
	rest, err := io.Copy(writerOnly{f}, io.LimitReader(r, maxSize-int64(n)+1))
	if err != nil {
		var we writeError
		if errors.As(err, &we) {
			return fail(storageError(we.err))
		}
		return fail(err)
	}
	size := int64(n) + rest
	if size > maxSize {
		return fail(errFileTooLarge)
	}
	if err := f.Sync(); err != nil {
		return fail(storageError(err))
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, storageError(err)
	}
	if err := syncDir(s.filesDir); err != nil {
		os.Remove(path)
		return nil, storageError(err)
	}
	return &newFile{
		StorageName: storage,
		Name:        cleanFileName(name),
		Size:        size,
		ContentType: sniffContentType(head),
	}, nil
}

// writerOnly marks write failures, so a full disk (our trouble) is told
// apart from a broken upload (the client's) after io.Copy.
type writerOnly struct{ f *os.File }

type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }

func (w writerOnly) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, writeError{err}
	}
	return n, nil
}

// RemoveUpload deletes a saved upload whose message did not commit.
func (s *sqliteStore) RemoveUpload(f *newFile) { s.removeStoredFile(f.StorageName) }

func (s *sqliteStore) removeStoredFile(storage string) {
	if err := os.Remove(filepath.Join(s.filesDir, storage)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("could not remove file", "file", storage, "err", err)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// OpenFile opens file id for user if they sent or received its message and
// some queue still holds that message; a group's file, for every user whose
// queue still holds its message. Anyone else, or a file no longer
// held, gets errNotFound (no hint that it exists).
func (s *sqliteStore) OpenFile(ctx context.Context, user, id int64) (FileInfo, io.ReadSeekCloser, error) {
	var f FileInfo
	var storage string
	err := s.read.QueryRowContext(ctx, `SELECT f.id, f.name, f.size, f.content_type, f.storage_name
		FROM files f JOIN messages m ON m.file_id = f.id
		WHERE f.id = ?1 AND m.refs > 0 AND (m.sender_id = ?2 OR m.recipient_id = ?2
			OR (m.group_id IS NOT NULL AND EXISTS (SELECT 1 FROM queue q
				WHERE q.user_id = ?2 AND q.kind = 1 AND q.conv = -m.group_id AND q.message_id = m.id)))`, id, user).
		Scan(&f.ID, &f.Name, &f.Size, &f.ContentType, &storage)
	if errors.Is(err, sql.ErrNoRows) {
		return f, nil, errNotFound
	}
	if err != nil {
		return f, nil, err
	}
	f.URL = fileURL(f.ID)
	fh, err := os.Open(filepath.Join(s.filesDir, storage))
	if errors.Is(err, os.ErrNotExist) {
		// Its last message was cleaned meanwhile.
		return f, nil, errNotFound
	}
	if err != nil {
		return f, nil, storageError(err)
	}
	return f, fh, nil
}

// removeOrphanFiles deletes files in the folder that no row names: uploads
// whose message never committed, or whose removal a crash interrupted.
func (s *sqliteStore) removeOrphanFiles() error {
	entries, err := os.ReadDir(s.filesDir)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	known := map[string]bool{}
	rows, err := s.read.Query(`SELECT storage_name FROM files`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		known[name] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, e := range entries {
		if !known[e.Name()] {
			s.log.Info("removing orphan file", "file", e.Name())
			s.removeStoredFile(e.Name())
		}
	}
	return nil
}
