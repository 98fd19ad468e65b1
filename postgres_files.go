package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
)

// Uploaded files live in the database, so that no node needs a directory of
// its own: an upload is a blobs row with its bytes in blob_chunks, committed
// (in one transaction of its own) before the message that links it through a
// files row. The commit that deletes the last message holding a file deletes
// its blob too. An upload whose message never committed is an orphan, swept
// by the server after an hour.

// pgChunkSize bounds what one upload or download holds in memory.
const pgChunkSize = 256 << 10

// pgOrphanAge is how old an upload no message names must be to be swept:
// far longer than any upload waits for its message.
const pgOrphanAge = time.Hour

// SaveUpload streams r into a new blob, at most maxSize bytes, a chunk at a
// time, and commits it; the caller removes it (RemoveUpload) if the message
// does not commit.
func (s *pgStore) SaveUpload(r io.Reader, name string, maxSize int64) (*newFile, error) {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	storage := hex.EncodeToString(rnd[:])
	// No deadline on the transaction: the client's upload sets the pace,
	// and the server's own timeouts bound it.
	ctx := context.Background()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, storageError(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, storageError(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `INSERT INTO blobs (storage_name, size, chunk_size, created_at) VALUES ($1, 0, $2, $3)`,
		storage, pgChunkSize, unixMilli(s.now())); err != nil {
		return nil, storageError(err)
	}
	buf := make([]byte, pgChunkSize)
	var head []byte
	var size int64
	for n := 0; ; n++ {
		k, err := io.ReadFull(r, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, err // the client's upload broke
		}
		if head == nil {
			head = append([]byte{}, buf[:min(k, 512)]...)
		}
		size += int64(k)
		if size > maxSize {
			return nil, errFileTooLarge
		}
		if k > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO blob_chunks (storage_name, n, data) VALUES ($1, $2, $3)`,
				storage, n, buf[:k]); err != nil {
				return nil, storageError(err)
			}
		}
		if k < len(buf) {
			break
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE blobs SET size = $1 WHERE storage_name = $2`, size, storage); err != nil {
		return nil, storageError(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, storageError(err)
	}
	return &newFile{
		StorageName: storage,
		Name:        cleanFileName(name),
		Size:        size,
		ContentType: sniffContentType(head),
	}, nil
}

// RemoveUpload deletes a saved upload whose message did not commit. If
// Postgres is away, the sweep gets it later.
func (s *pgStore) RemoveUpload(f *newFile) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM blobs b WHERE storage_name = $1
		AND NOT EXISTS (SELECT 1 FROM files f WHERE f.storage_name = b.storage_name)`, f.StorageName); err != nil {
		s.log.Warn("could not remove upload", "file", f.StorageName, "err", err)
	}
}

// sweepOrphanBlobs deletes uploads no files row names that are older than
// pgOrphanAge.
func (s *pgStore) sweepOrphanBlobs() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM blobs b WHERE created_at < $1
		AND NOT EXISTS (SELECT 1 FROM files f WHERE f.storage_name = b.storage_name)`,
		unixMilli(s.now().Add(-pgOrphanAge)))
	if err != nil {
		s.log.Warn("could not sweep orphan uploads", "err", err)
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		s.log.Info("removed orphan uploads", "count", n)
	}
}

// OpenFile opens file id for user if they sent or received its message and
// some queue still holds that message; anyone else gets errNotFound.
func (s *pgStore) OpenFile(ctx context.Context, user, id int64) (FileInfo, io.ReadSeekCloser, error) {
	var f FileInfo
	var storage string
	var chunk int
	err := s.pool.QueryRow(ctx, `SELECT f.id, f.name, f.size, f.content_type, f.storage_name, b.chunk_size
		FROM files f JOIN messages m ON m.file_id = f.id JOIN blobs b ON b.storage_name = f.storage_name
		WHERE f.id = $1 AND m.refs > 0 AND (m.sender_id = $2 OR m.recipient_id = $2
			OR (m.group_id IS NOT NULL AND EXISTS (SELECT 1 FROM queue q
				WHERE q.user_id = $2 AND q.kind = 1 AND q.conv = -m.group_id AND q.message_id = m.id)))`, id, user).
		Scan(&f.ID, &f.Name, &f.Size, &f.ContentType, &storage, &chunk)
	if err != nil {
		return f, nil, s.readErr(err, errNotFound)
	}
	f.URL = fileURL(f.ID)
	return f, &pgBlobReader{s: s, ctx: ctx, storage: storage, size: f.Size, chunkSize: int64(chunk), cur: -1}, nil
}

// pgBlobReader reads a blob a chunk at a time, fetching a chunk only when a
// read needs it, so seeking (http.ServeContent seeks to the end for the
// size; Range requests seek anywhere) costs nothing.
type pgBlobReader struct {
	s         *pgStore
	ctx       context.Context
	storage   string
	size      int64
	chunkSize int64
	off       int64
	cur       int64 // index of the chunk in data, -1 for none
	data      []byte
}

func (r *pgBlobReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := r.off / r.chunkSize
	if n != r.cur {
		err := r.s.pool.QueryRow(r.ctx, `SELECT data FROM blob_chunks WHERE storage_name = $1 AND n = $2`,
			r.storage, n).Scan(&r.data)
		if errors.Is(err, pgx.ErrNoRows) {
			// Its last message was cleaned while it was being read.
			return 0, io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, r.s.interpretError(err)
		}
		r.cur = n
	}
	k := copy(p, r.data[r.off-n*r.chunkSize:])
	if k == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	r.off += int64(k)
	return k, nil
}

func (r *pgBlobReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return r.off, fmt.Errorf("seek: bad whence %d", whence)
	}
	if offset < 0 {
		return r.off, errors.New("seek: negative position")
	}
	r.off = offset
	return offset, nil
}

func (r *pgBlobReader) Close() error {
	r.data = nil
	return nil
}
