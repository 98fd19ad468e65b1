package main

// Health, metrics and the page.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

func (a *App) handleHealth(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %w", errStorage, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (a *App) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	queued := a.store.QueuedMessages()
	groups, err := a.store.GroupCount(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	a.metrics.write(w, gauges{
		onlineUsers:    a.presence.Online(),
		queuedMessages: queued,
		waitingUsers:   a.notifier.waiting(),
		parkedPolls:    a.parker.parked(),
		groups:         groups,
	})
	if a.push != nil {
		a.push.writeMetrics(w)
	}
	return nil
}

func (a *App) handlePage(w http.ResponseWriter, r *http.Request) error {
	return a.serveAsset(w, r, "index.html")
}

func (a *App) handleStatic(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	if name == "index.html" {
		// One URL for the page, so one cache entry to revalidate.
		return errNotFound
	}
	return a.serveAsset(w, r, name)
}
