// Command webim is a self-hosted web chat server in one binary: accounts,
// friends, per-user persistent message queues in one SQLite file, and
// long-polling, with the page embedded.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// shutdownGrace bounds a graceful stop, within API.md's 10 seconds.
const shutdownGrace = 8 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, nil); err != nil {
		if !errors.Is(err, errHelpShown) {
			fmt.Fprintln(os.Stderr, "webim:", err)
		}
		os.Exit(exitCode(err))
	}
}

var errHelpShown = errors.New("help shown")

func exitCode(err error) int {
	if errors.Is(err, errHelpShown) {
		return 0
	}
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// versionString names the version and the commit it was built from.
func versionString() string {
	v := "webim " + version
	if info, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = "+dirty"
				}
			}
		}
		if rev != "" {
			v += " (" + rev + modified + ")"
		}
		v += " " + info.GoVersion
	}
	return v
}

// run is the whole program apart from process concerns, so tests can start
// it on ":0" with a temp database and stop it by cancelling ctx. A first
// argument that is not a flag names a subcommand. ready, if not nil,
// receives the listening address.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer, ready chan<- string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return runCommand(ctx, args[0], args[1:], cmdEnv{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return errHelpShown
	}
	if err != nil {
		return err
	}
	if cfg.ShowVersion {
		fmt.Fprintln(stdout, versionString())
		return nil
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	app, err := newApp(cfg, log)
	if err != nil {
		return err
	}
	// Compress the page while the listeners open, not on the first visit.
	go staticAssets()
	lim := newConnLimiter(cfg.MaxConns, cfg.MaxConnsPerAddr, append(slices.Clone(cfg.TrustedProxies), cfg.RateLimitExempt...))
	app.metrics.conns = lim
	lns, err := listen(cfg, log, lim)
	if err != nil {
		app.Close()
		return err
	}
	srv := &http.Server{
		Handler:           app.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Whole-request limits sized for a 10 MiB upload or download on a
		// slow link, and above the 60 s poll cap.
		ReadTimeout:    2 * time.Minute,
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(app.BeginShutdown)
	if cfg.PprofAddr != "" {
		defer startPprof(cfg.PprofAddr, log).Close()
	}
	log.Info("webim listening", "addr", lns.main.Addr().String(), "max_conns", cfg.MaxConns, "https", lns.tls != nil, "http_addr", cfg.HTTPAddr, "db", redactDBURL(cfg.DBPath), "version", version)
	if ready != nil {
		ready <- lns.main.Addr().String()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- lns.serve(srv, app.ParkingListener) }()

	select {
	case err := <-serveErr:
		lns.close()
		app.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	app.BeginShutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	lns.shutdown(shutdownCtx)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("requests still running at shutdown deadline", "err", err)
		srv.Close()
	}
	if err := app.Close(); err != nil {
		return fmt.Errorf("closing the database: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newLogger logs at level ("debug", "info", "warn", "error") in format
// ("text", the default, or "json" for log shippers).
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
