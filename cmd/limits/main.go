// Command limits measures the ceilings of this machine that bound webim, so
// that benchmark figures can be read against limits measured in the same
// run: fsyncs per second of a file, SQLite commits per second (WAL,
// synchronous=FULL) at 1, 10, 100 and 1000 rows per transaction, a bare
// net/http handler's requests per second and CPU per request under the load
// generator's own client, and the memory a bare net/http server spends per
// idle held request.
//
// Every request to the bare server goes out on internal/h1, the HTTP/1.1
// keep-alive client cmd/loadgen drives the server's hot path with: the
// -conc clients each POST a send-sized JSON body with a bearer token on
// their own connection, and each of the -held requests is a GET on its own
// connection, as an idle long poll. The bare server runs as a child process
// of this command (started with -child), so its RSS and CPU time are its
// own.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config holds the flags of one run.
type config struct {
	dir      string
	duration time.Duration
	conc     int
	held     int
	skip     map[string]bool
	jsonOut  bool
}

// results are the measured ceilings; a section is nil when skipped.
type results struct {
	Machine machine       `json:"machine"`
	Fsync   *fsyncResult  `json:"fsync,omitempty"`
	SQLite  []sqliteBatch `json:"sqlite,omitempty"`
	HTTP    *httpResult   `json:"http,omitempty"`
	Held    *heldResult   `json:"held,omitempty"`
}

type machine struct {
	CPUs     int    `json:"cpus"`
	MemTotal int64  `json:"mem_total_bytes"`
	Dir      string `json:"dir"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		if err := runChild(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "limits child:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "limits:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg, os.Stderr)
	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		printTable(os.Stdout, res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "limits:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{skip: map[string]bool{}}
	fs := flag.NewFlagSet("limits", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.dir, "dir", ".", "directory on the disk to measure (put it beside the database)")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "duration of each measurement")
	fs.IntVar(&cfg.conc, "conc", 200, "concurrent clients for the HTTP measurement, each a keep-alive connection of the loadgen's client (internal/h1) sending a send-sized POST at a time, as the loadgen's senders (2 × pairs)")
	fs.IntVar(&cfg.held, "held", 5000, "idle requests to hold open for the memory measurement, each a GET on its own connection of the loadgen's client (internal/h1)")
	var skip string
	fs.StringVar(&skip, "skip", "", "comma-separated parts to skip: fsync, sqlite, http, held")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the results as JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.duration <= 0 || cfg.duration > 10*time.Minute {
		return nil, errors.New("-duration must be in (0, 10m]")
	}
	if cfg.conc < 1 || cfg.held < 1 || cfg.held > 100_000 {
		return nil, errors.New("-conc must be positive and -held in 1..100000")
	}
	for _, s := range splitComma(skip) {
		switch s {
		case "fsync", "sqlite", "http", "held":
			cfg.skip[s] = true
		default:
			return nil, fmt.Errorf("unknown part %q in -skip", s)
		}
	}
	return cfg, nil
}

// run measures every part not skipped, in order, and returns what it got
// with the first error.
func run(ctx context.Context, cfg *config, log io.Writer) (*results, error) {
	res := &results{Machine: machine{CPUs: numCPU(), MemTotal: memTotal(), Dir: cfg.dir}}
	logf := func(format string, args ...any) {
		fmt.Fprintf(log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	var err error
	if !cfg.skip["fsync"] {
		logf("fsync in %s for %v each", cfg.dir, cfg.duration)
		if res.Fsync, err = measureFsync(ctx, cfg.dir, cfg.duration); err != nil {
			return res, fmt.Errorf("fsync: %w", err)
		}
	}
	if !cfg.skip["sqlite"] {
		logf("sqlite WAL synchronous=FULL commits in %s", cfg.dir)
		if res.SQLite, err = measureSQLite(ctx, cfg.dir, cfg.duration, []int{1, 10, 100, 1000}); err != nil {
			return res, fmt.Errorf("sqlite: %w", err)
		}
	}
	if !cfg.skip["http"] {
		logf("bare net/http, %d concurrent clients (internal/h1, the loadgen's)", cfg.conc)
		if res.HTTP, err = measureHTTP(ctx, cfg.conc, cfg.duration); err != nil {
			return res, fmt.Errorf("http: %w", err)
		}
	}
	if !cfg.skip["held"] {
		logf("bare net/http holding %d idle requests", cfg.held)
		if res.Held, err = measureHeld(ctx, cfg.held, logf); err != nil {
			return res, fmt.Errorf("held requests: %w", err)
		}
	}
	return res, nil
}

// printTable writes the human-readable summary.
func printTable(w io.Writer, r *results) {
	row := func(k string, format string, args ...any) {
		fmt.Fprintf(w, "%-38s %s\n", k, fmt.Sprintf(format, args...))
	}
	row("machine", "%d CPUs, %.1f GiB memory, dir %s", r.Machine.CPUs, float64(r.Machine.MemTotal)/(1<<30), r.Machine.Dir)
	if f := r.Fsync; f != nil {
		row("fsync, 4 KiB overwrite", "%.0f /s", f.FsyncOverwrite)
		row("fdatasync, 4 KiB overwrite", "%.0f /s", f.FdatasyncOverwrite)
		row("fsync, 128 B append", "%.0f /s", f.FsyncAppend)
	}
	for _, s := range r.SQLite {
		row(fmt.Sprintf("sqlite FULL, %d rows/txn", s.RowsPerTxn), "%.0f commits/s, %.0f rows/s", s.CommitsPerSec, s.RowsPerSec)
	}
	if h := r.HTTP; h != nil {
		row("bare net/http", "%.0f req/s (%d clients), server CPU %.1f µs/req, p99 %.2f ms", h.ReqPerSec, h.Conc, h.ServerCPUMicrosPerReq, h.P99Millis)
	}
	if h := r.Held; h != nil {
		row("bare net/http idle held request", "%.1f KiB each (%d held, RSS %.1f → %.1f MiB), %.2f goroutines each",
			h.BytesPerRequest/1024, h.Held, float64(h.RSSBefore)/(1<<20), float64(h.RSSHeld)/(1<<20), h.GoroutinesPerRequest)
	}
}
