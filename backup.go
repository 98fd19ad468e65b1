package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// webim backup FILE writes a consistent copy of the database, safe while the
// server runs: SQLite's VACUUM INTO reads one snapshot (a read transaction,
// which in WAL mode never blocks the writer) into a fresh, compact file.
// The uploads the copy names are then copied from <db>.files/ to
// FILE.files/. Files are written once and never changed, only unlinked, so
// a file the snapshot names is either copied whole or, if both queues
// cleaned its message meanwhile, missing (reported; its download is a 404).
// The ACME cache, <db>.acme/ (certificates, their keys and the account
// key), goes to FILE.acme/: a server restored elsewhere then serves the
// certificates it has instead of asking the CA again, whose rate limits
// (Let's Encrypt: 5 certificates for the same names a week) a few restores
// would meet.

func init() {
	commands["backup"] = &command{
		summary: "write a consistent copy of the live database (and its files) to FILE",
		run:     runBackup,
	}
}

func runBackup(ctx context.Context, args []string, env cmdEnv) error {
	fs := flag.NewFlagSet("webim backup", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	dbDefault := defaultDB
	if v := env.getenv("WEBIM_DB"); v != "" {
		dbDefault = v
	}
	dbPath := fs.String("db", dbDefault, "SQLite database file to back up (WEBIM_DB)")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "Usage: webim backup [-db PATH] FILE")
		fmt.Fprintln(env.stderr, "Writes a consistent copy of the database to FILE and its uploads to FILE.files/.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("backup: want exactly one FILE to write")
	}
	if err := checkBackupable(*dbPath); err != nil {
		return err
	}
	res, err := Backup(ctx, *dbPath, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "backed up %s to %s (%d bytes, %d files", *dbPath, fs.Arg(0), res.Bytes, res.Files)
	if res.ACMEFiles > 0 {
		fmt.Fprintf(env.stdout, ", %d ACME cache entries", res.ACMEFiles)
	}
	if res.MissingFiles > 0 {
		fmt.Fprintf(env.stdout, "; %d files were deleted while the backup ran", res.MissingFiles)
	}
	fmt.Fprintln(env.stdout, ")")
	return nil
}

// BackupResult says what a backup wrote.
type BackupResult struct {
	Bytes int64 // size of the database copy
	Files int   // uploads copied
	// MissingFiles are uploads the snapshot names that were gone by the time
	// they were copied: both queues cleaned their message meanwhile.
	MissingFiles int
	// ACMEFiles are the entries of <db>.acme/ copied to dst+".acme".
	ACMEFiles int
}

// Backup copies the database at dbPath (which must exist) to dst, and its
// uploads to dst+".files". It refuses to overwrite anything, and removes
// what it wrote if it fails.
func Backup(ctx context.Context, dbPath, dst string) (res BackupResult, err error) {
	if _, err := os.Stat(dbPath); err != nil {
		return res, fmt.Errorf("backup: database %s: %w", dbPath, err)
	}
	dstFiles, dstACME := dst+".files", dst+".acme"
	for _, p := range []string{dst, dstFiles, dstACME} {
		if _, err := os.Lstat(p); err == nil {
			return res, fmt.Errorf("backup: %s already exists; not overwriting it", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return res, fmt.Errorf("backup: %w", err)
		}
	}
	if abs1, err1 := filepath.Abs(dbPath); err1 == nil {
		if abs2, err2 := filepath.Abs(dst); err2 == nil && abs1 == abs2 {
			return res, errors.New("backup: FILE is the database itself")
		}
	}
	defer func() {
		if err != nil {
			os.Remove(dst)
			os.RemoveAll(dstFiles)
			os.RemoveAll(dstACME)
		}
	}()

	// The server's DSN (busy_timeout first). Not query_only: SQLite counts
	// VACUUM INTO as a write, though it only reads the live file.
	db, err := sql.Open("sqlite", dsn(dbPath, false))
	if err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return res, fmt.Errorf("backup: VACUUM INTO %s: %w", dst, err)
	}
	if err := syncFile(dst); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	if fi, err := os.Stat(dst); err == nil {
		res.Bytes = fi.Size()
	}

	// The uploads the snapshot names, read from the copy itself.
	names, err := backupFileNames(ctx, dst)
	if err != nil {
		return res, fmt.Errorf("backup: reading the copy: %w", err)
	}
	if err := os.Mkdir(dstFiles, 0o750); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	srcFiles := dbPath + ".files"
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := copyFile(filepath.Join(srcFiles, name), filepath.Join(dstFiles, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			res.MissingFiles++
		case err != nil:
			return res, fmt.Errorf("backup: copying upload %s: %w", name, err)
		default:
			res.Files++
		}
	}
	if err := syncDir(dstFiles); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	if res.ACMEFiles, err = backupACME(dbPath+".acme", dstACME); err != nil {
		return res, fmt.Errorf("backup: ACME cache: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	return res, nil
}

// backupACME copies the ACME cache folder src, if there is one, to dst,
// as private as autocert keeps it: it holds private keys. Entries are
// written whole (autocert renames a temporary file into place), so each
// copy is of a complete entry; the temporary files themselves are left out.
func backupACME(src, dst string) (int, error) {
	entries, err := os.ReadDir(src)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // not an ACME server
	}
	if err != nil {
		return 0, err
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.Contains(e.Name(), ".tmp") {
			continue
		}
		err := copyFileMode(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), 0o600)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Deleted meanwhile (autocert drops what it no longer needs).
		case err != nil:
			return n, err
		default:
			n++
		}
	}
	return n, syncDir(dst)
}

// backupFileNames lists the storage names of the uploads in the database
// copy at path. The copy is a plain (rollback-journal) file nobody else uses.
func backupFileNames(ctx context.Context, path string) ([]string, error) {
	db, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT storage_name FROM files`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		// Storage names are random hex made by SaveUpload; anything else
		// must not steer the copy out of the folder.
		if n == "" || n != filepath.Base(n) || n == "." || n == ".." {
			return nil, fmt.Errorf("unexpected storage name %q", n)
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// copyFile copies src to a new file dst and fsyncs it.
func copyFile(src, dst string) error { return copyFileMode(src, dst, 0o640) }

// copyFileMode is copyFile making dst with mode perm.
func copyFileMode(src, dst string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Sync()
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
