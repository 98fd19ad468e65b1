package main

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

//go:embed static
var staticFiles embed.FS

// App is the whole server: the store and the in-memory parts around it.
type App struct {
	cfg      Config
	log      *slog.Logger
	store    Store
	sessions *sessions
	presence presenceTracker
	notifier *notifier
	parker   *parker
	limits   *limits
	metrics  *metrics
	typing   *typingThrottle
	hasher   *hasher
	static   fs.FS
	handler  http.Handler
	// push sends Web Push notifications; nil with -push=off.
	push *pusher
	// node names this process among the nodes of a shared database.
	node   string
	checks *sessionChecks

	// shuttingDown is closed when the server starts to stop: open polls
	// answer at once and new ones do not wait.
	shuttingDown chan struct{}
	shutdownOnce sync.Once
	stopJanitor  chan struct{}
	janitorDone  chan struct{}
	// adminSeen is the last admin event acted on; only the janitor uses it.
	adminSeen int64
}

// newApp opens the database and wires the server; Close undoes it.
func newApp(cfg Config, log *slog.Logger) (*App, error) {
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = defaultMaxQueue
	}
	if cfg.MaxGroupMembers <= 0 {
		cfg.MaxGroupMembers = defaultMaxGroupMembers
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = defaultMaxFileSize
	}
	store, err := OpenStore(cfg.DBPath, cfg.MaxQueue, log)
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		store.Close()
		return nil, err
	}
	a := &App{
		cfg:          cfg,
		log:          log,
		store:        store,
		sessions:     newSessions(store),
		presence:     store.NewPresence(cmp.Or(cfg.OfflineGrace, offlineGrace)),
		notifier:     newNotifier(),
		parker:       newParker(),
		limits:       newLimits(cfg.RateLimitExempt, store.LoginFailures(failedByNameRule, failedByAddrRule)),
		metrics:      newMetrics(),
		typing:       newTypingThrottle(),
		hasher:       newHasher(),
		static:       static,
		node:         newNodeID(),
		checks:       newSessionChecks(),
		shuttingDown: make(chan struct{}),
		stopJanitor:  make(chan struct{}),
		janitorDone:  make(chan struct{}),
	}
	if a.adminSeen, err = store.LastAdminEvent(context.Background()); err != nil {
		store.Close()
		return nil, err
	}
	a.metrics.node = a.node
	if mw, ok := store.(metricsWriter); ok {
		a.metrics.engine = mw
	}
	if !cfg.PushOff {
		// Made at the first start, so every node and every restart signs
		// with the key browsers subscribed with.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		key, err := store.PushKey(ctx)
		cancel()
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("the push key: %w", err)
		}
		a.push = newPusher(store, log, newEndpointGuard(cfg.PushAllowHosts), key, a.pushSubject,
			!cfg.PushNoPreview, a.presence.PollOpenSince)
	}
	a.handler = a.routes()
	store.Wire(a.hooks())
	go a.janitor()
	go a.checkSessions()
	return a, nil
}

// Handler is the HTTP interface of API.md plus the page.
func (a *App) Handler() http.Handler { return a.handler }

// BeginShutdown makes every open poll answer now and new ones answer at once.
func (a *App) BeginShutdown() {
	a.shutdownOnce.Do(func() {
		close(a.shuttingDown)
		a.parker.wakeAll()
	})
}

// Close answers open polls, commits what is pending and closes the database.
// Call it after the HTTP server has stopped handling requests.
func (a *App) Close() error {
	a.BeginShutdown()
	select {
	case <-a.stopJanitor:
	default:
		close(a.stopJanitor)
	}
	<-a.janitorDone
	<-a.checks.done
	// Parked polls answer from the database: let them finish first (each
	// write is bounded by parkedWriteTimeout).
	a.parker.wg.Wait()
	if a.push != nil {
		a.push.close()
	}
	return a.store.Close()
}

// janitor forgets idle rate-limit keys and deletes expired sessions. It runs
// housekeeping only; nothing waits on it.
func (a *App) janitor() {
	defer close(a.janitorDone)
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	sessions := time.NewTicker(time.Hour)
	defer sessions.Stop()
	admin := time.NewTicker(adminCheckEvery)
	defer admin.Stop()
	for {
		select {
		case <-a.stopJanitor:
			return
		case now := <-prune.C:
			a.limits.prune(now)
		case <-admin.C:
			ctx, cancel := context.WithTimeout(context.Background(), adminCheckEvery)
			a.applyAdminEvents(ctx)
			cancel()
		case <-sessions.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := a.sessions.PruneExpired(ctx); err != nil {
				a.log.Warn("pruning expired sessions failed", "err", err)
			}
			cancel()
		}
	}
}
