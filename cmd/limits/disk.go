package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite"
)

// fsyncResult holds syncs per second of a file in the measured directory.
type fsyncResult struct {
	FsyncOverwrite     float64 `json:"fsync_overwrite_per_sec"`     // 4 KiB pwrite at rotating offsets of a preallocated file + fsync
	FdatasyncOverwrite float64 `json:"fdatasync_overwrite_per_sec"` // the same with fdatasync
	FsyncAppend        float64 `json:"fsync_append_per_sec"`        // 128 B append + fsync (the file grows)
}

// measureFsync times three write+sync patterns, each for d.
func measureFsync(ctx context.Context, dir string, d time.Duration) (*fsyncResult, error) {
	path := filepath.Join(dir, fmt.Sprintf(".limits-fsync-%d", os.Getpid()))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	const block, blocks = 4096, 256
	buf := make([]byte, block)
	if _, err := f.Write(make([]byte, block*blocks)); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	res := &fsyncResult{}
	overwrite := func(sync func() error) (float64, error) {
		return repeatFor(ctx, d, func(i int) error {
			buf[0] = byte(i)
			if _, err := f.WriteAt(buf, int64(i%blocks)*block); err != nil {
				return err
			}
			return sync()
		})
	}
	if res.FsyncOverwrite, err = overwrite(f.Sync); err != nil {
		return nil, err
	}
	if res.FdatasyncOverwrite, err = overwrite(func() error { return syscall.Fdatasync(int(f.Fd())) }); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, 2); err != nil {
		return nil, err
	}
	small := make([]byte, 128)
	res.FsyncAppend, err = repeatFor(ctx, d, func(i int) error {
		if _, err := f.Write(small); err != nil {
			return err
		}
		return f.Sync()
	})
	return res, err
}

// repeatFor calls f(0), f(1)... for d and returns calls per second.
func repeatFor(ctx context.Context, d time.Duration, f func(i int) error) (float64, error) {
	start := time.Now()
	end := start.Add(d)
	n := 0
	for ; time.Now().Before(end); n++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := f(n); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// sqliteBatch is the commit rate at one transaction size.
type sqliteBatch struct {
	RowsPerTxn    int     `json:"rows_per_txn"`
	CommitsPerSec float64 `json:"commits_per_sec"`
	RowsPerSec    float64 `json:"rows_per_sec"`
}

// measureSQLite inserts rows of about a chat message's size into a fresh
// SQLite database in dir (WAL, synchronous=FULL, one connection, as webim
// writes), batch rows per transaction, for d at each batch size.
func measureSQLite(ctx context.Context, dir string, d time.Duration, batches []int) ([]sqliteBatch, error) {
	path := filepath.Join(dir, fmt.Sprintf(".limits-%d.db", os.Getpid()))
	defer func() {
		for _, s := range []string{"", "-wal", "-shm", "-journal"} {
			os.Remove(path + s)
		}
	}()
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, err
	}
	var syncMode int
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return nil, err
	}
	if !strings.EqualFold(mode, "wal") || syncMode != 2 {
		return nil, fmt.Errorf("journal_mode %s, synchronous %d: want wal and 2 (FULL)", mode, syncMode)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (
		id      INTEGER PRIMARY KEY,
		user_id INTEGER NOT NULL,
		seq     INTEGER NOT NULL,
		body    TEXT    NOT NULL)`); err != nil {
		return nil, err
	}
	body := strings.Repeat("x", 100)
	var out []sqliteBatch
	seq := 0
	for _, batch := range batches {
		rate, err := repeatFor(ctx, d, func(int) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			st, err := tx.PrepareContext(ctx, "INSERT INTO t (user_id, seq, body) VALUES (?, ?, ?)")
			if err != nil {
				return err
			}
			defer st.Close()
			for r := 0; r < batch; r++ {
				seq++
				if _, err := st.ExecContext(ctx, seq%1000, seq, body); err != nil {
					return err
				}
			}
			return tx.Commit()
		})
		if err != nil {
			return out, err
		}
		out = append(out, sqliteBatch{RowsPerTxn: batch, CommitsPerSec: rate, RowsPerSec: rate * float64(batch)})
	}
	return out, nil
}
