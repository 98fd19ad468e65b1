package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"webim/internal/h1"
	"webim/internal/procstat"
)

// idleResult is the outcome of the idle scenario. Memory figures are the
// server's VmRSS; -1 marks a figure the server does not expose.
type idleResult struct {
	Users                 int     `json:"users"`
	Held                  int     `json:"held"`     // polls on the wire when memory was measured
	HeldMin               int     `json:"held_min"` // fewest held while holding
	HoldSeconds           float64 `json:"hold_seconds"`
	OpenSeconds           float64 `json:"open_seconds"` // time to open them all
	ServerOpenPolls       int     `json:"server_open_polls"`
	ServerOnline          int     `json:"server_online_users"`
	RSSStart              int64   `json:"server_rss_start"` // before setup
	RSSSetup              int64   `json:"server_rss_setup"` // after setup, no poll open
	RSSHeld               int64   `json:"server_rss_held"`  // all polls held
	RSSEnd                int64   `json:"server_rss_end"`   // after holding, polls still open
	BytesPerUser          float64 `json:"bytes_per_user"`   // (held - setup) / held
	BytesPerUserFromStart float64 `json:"bytes_per_user_from_start"`
	GoroutinesStart       int     `json:"server_goroutines_start"`
	GoroutinesSetup       int     `json:"server_goroutines_setup"`
	GoroutinesHeld        int     `json:"server_goroutines_held"`
	GoroutinesPerUser     float64 `json:"server_goroutines_per_user"`
	FDLimit               int     `json:"loadgen_fd_limit"`
	Spread                int     `json:"spread"`
}

// runIdle signs in cfg.users users (with no friends, so nothing is ever sent
// to them), opens one long poll each, holds them for cfg.duration, and reports
// the server's memory and goroutines before and after.
func runIdle(ctx context.Context, cfg *config, res *result, errs *errCounter, lg *logger) (*idleResult, error) {
	out := &idleResult{Users: cfg.users, GoroutinesStart: -1, GoroutinesSetup: -1, GoroutinesHeld: -1, ServerOpenPolls: -1, ServerOnline: -1}
	lim, err := procstat.RaiseFileLimit()
	if err != nil {
		lg.printf("raising the open file limit: %v", err)
	}
	out.FDLimit = int(lim)
	if lim > 0 && uint64(cfg.users)+64 > lim {
		lg.printf("warning: %d polls need more descriptors than this process's limit %d; some will fail", cfg.users, lim)
	}
	setupTr := newTransport(cfg.conc, 1)
	defer setupTr.CloseIdleConnections()
	setupC := newClient(cfg.url, setupTr)
	sample := func() (rss int64, goroutines int) {
		goroutines = -1
		if cfg.pid > 0 {
			rss, _ = procstat.RSS(cfg.pid)
		}
		if m, err := setupC.metrics(ctx); err == nil {
			if g, ok := metricValue(m, "go_goroutines", "webim_goroutines"); ok {
				goroutines = int(g)
			}
			if v, ok := metricValue(m, "webim_open_polls"); ok {
				out.ServerOpenPolls = int(v)
			}
			if v, ok := metricValue(m, "webim_online_users"); ok {
				out.ServerOnline = int(v)
			}
		}
		return rss, goroutines
	}
	out.RSSStart, out.GoroutinesStart = sample()

	names := make([]string, cfg.users)
	for i := range names {
		names[i] = fmt.Sprintf("%s-i%05d", cfg.prefix, i)
	}
	users, st, err := setupUsers(ctx, setupC, names, cfg.password, cfg.conc, cfg.loginFirst, loadTokenCache(cfg.tokenCache), lg)
	res.Setup = st
	if err != nil {
		return nil, err
	}
	setupTr.CloseIdleConnections()
	sleep(ctx, time.Second)
	out.RSSSetup, out.GoroutinesSetup = sample()

	// Open the polls at cfg.openRate a second, spread over source addresses.
	out.Spread = cfg.spread
	if out.Spread == 0 {
		out.Spread = cfg.users/10000 + 1
	}
	dialer, err := h1.NewDialer(cfg.url, out.Spread)
	if err != nil {
		return nil, err
	}
	var held atomic.Int64
	pollCtx, stopPolls := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopPolls(); wg.Wait() }()
	t0 := time.Now()
	stop := lg.progress(ctx, func() string {
		return fmt.Sprintf("idle: %d/%d polls held, %d fds open here, errors %d", held.Load(), cfg.users, openFiles(), errs.total())
	})
	gap := time.Second / time.Duration(max(cfg.openRate, 1))
	for i, u := range users {
		p := &poller{d: dialer, u: u, timeout: cfg.pollTimeout, errs: errs, held: &held, cleanEvery: -1}
		wg.Add(1)
		go func() { defer wg.Done(); p.loop(pollCtx) }()
		if !sleep(ctx, time.Until(t0.Add(time.Duration(i+1)*gap))) {
			stop()
			return nil, ctx.Err()
		}
	}
	// Wait until all are held, or no more have come for 5 seconds.
	best, bestAt := held.Load(), time.Now()
	for held.Load() < int64(cfg.users) && time.Since(bestAt) < 5*time.Second {
		if !sleep(ctx, 100*time.Millisecond) {
			stop()
			return nil, ctx.Err()
		}
		if h := held.Load(); h > best {
			best, bestAt = h, time.Now()
		}
	}
	out.OpenSeconds = time.Since(t0).Seconds()
	sleep(ctx, 2*time.Second) // let the server settle
	out.Held = int(held.Load())
	out.RSSHeld, out.GoroutinesHeld = sample()

	// Hold them, watching that they stay held.
	out.HeldMin = out.Held
	holdStart := time.Now()
	for time.Since(holdStart) < cfg.duration {
		if !sleep(ctx, 100*time.Millisecond) {
			break
		}
		out.HeldMin = min(out.HeldMin, int(held.Load()))
	}
	out.HoldSeconds = time.Since(holdStart).Seconds()
	out.RSSEnd, _ = sample()
	stop()

	if out.Held > 0 {
		if out.RSSHeld > 0 {
			out.BytesPerUser = float64(out.RSSHeld-out.RSSSetup) / float64(out.Held)
			out.BytesPerUserFromStart = float64(out.RSSHeld-out.RSSStart) / float64(out.Held)
		}
		if out.GoroutinesHeld >= 0 && out.GoroutinesSetup >= 0 {
			out.GoroutinesPerUser = float64(out.GoroutinesHeld-out.GoroutinesSetup) / float64(out.Held)
		}
	}
	if out.Held == 0 {
		return out, fmt.Errorf("no poll was held")
	}
	return out, nil
}

// metricValue returns the first of names present in m.
func metricValue(m map[string]float64, names ...string) (float64, bool) {
	for _, n := range names {
		if v, ok := m[n]; ok {
			return v, true
		}
	}
	return 0, false
}
