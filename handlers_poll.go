package main

// The queue: long-poll and clean.

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

type pollAnswer struct {
	Cursor int64   `json:"cursor"`
	Events []Event `json:"events"`
}

func (a *App) handlePoll(w http.ResponseWriter, r *http.Request, s *Session) error {
	q := r.URL.Query()
	var cursor int64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errBadRequest.withMessage("cursor is a whole number, 0 or more.")
		}
		cursor = n
	}
	wait := defaultPollWait
	if v := q.Get("timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errBadRequest.withMessage("timeout is a whole number of seconds from 0 to 60.")
		}
		wait = min(time.Duration(n)*time.Second, maxPollWait)
	}

	started := time.Now()
	superseded, endPoll := s.beginPoll()
	a.presence.PollStarted(s.User)
	a.metrics.openPolls.Add(1)
	parked := false
	defer func() {
		if !parked { // else the parked poll does this when it answers
			endPoll()
			a.presence.PollEnded(s.User)
			a.metrics.openPolls.Add(-1)
		}
	}()

	ctx := r.Context()
	// One timer per poll: it first fires when the poll may park, then, if
	// parking is not for it, at the poll's deadline.
	mayPark := wait > a.parker.after && a.canPark(r)
	var timer *time.Timer
	var timerC <-chan time.Time
	if wait > 0 {
		first := wait
		if mayPark {
			first = a.parker.after
		}
		timer = time.NewTimer(first)
		defer timer.Stop()
		timerC = timer.C
	}
	for first := true; ; first = false {
		// Take the wake-up channel before reading, so a commit in between
		// is not missed.
		woken, release := a.notifier.wait(s.User.ID)
		events, err := a.pollEvents(ctx, s.User.ID, cursor)
		if err != nil && !first && ctx.Err() == nil {
			// Woken, but the database is away: a wake is only a hint, so
			// wait on as if it had not come; the poll answers as usual at
			// its deadline. Only the first read's failure is the answer.
			events = nil
			err = nil
		}
		if err != nil {
			release()
			if ctx.Err() != nil {
				return nil // the client left; nobody to answer
			}
			return err
		}
		if len(events) > 0 {
			release()
			a.countDelivered(events)
			writeJSON(w, http.StatusOK, pollAnswer{Cursor: events[len(events)-1].Seq, Events: events})
			return nil
		}
		if wait == 0 {
			release()
			return a.answerEmptyOrEnded(w, r, s, cursor)
		}
		select {
		case <-woken:
			release()
			continue
		case <-timerC:
			if mayPark {
				// Idle for a while: wait without goroutines (park.go).
				release()
				mayPark = false
				if a.park(w, r, s, superseded, endPoll, cursor, started.Add(wait), started) {
					parked = true
					return errParked
				}
				timer.Reset(time.Until(started.Add(wait)))
				continue
			}
		case <-s.Ended():
		case <-superseded:
		case <-a.shuttingDown:
		case <-ctx.Done():
			release()
			return nil
		}
		release()
		return a.answerEmptyOrEnded(w, r, s, cursor)
	}
}

// pollEvents reads the events after cursor: from the in-memory tail when the
// client is caught up, else from the database (asking for a tail to be
// kept from now on).
func (a *App) pollEvents(ctx context.Context, user, cursor int64) ([]Event, error) {
	if events, ok := a.store.RecentEvents(user, cursor, maxPollBatch); ok {
		return events, nil
	}
	events, err := a.store.EventsAfter(ctx, user, cursor, maxPollBatch)
	if err == nil && len(events) < maxPollBatch {
		a.store.RequestTail(user)
	}
	return events, err
}

// answerEmptyOrEnded answers a poll with nothing new: for a session that a
// newer login replaced, the session_replaced event, its last.
func (a *App) answerEmptyOrEnded(w http.ResponseWriter, r *http.Request, s *Session, cursor int64) error {
	if errors.Is(s.EndReason(), errSessionReplaced) {
		last, err := a.store.LastSeq(r.Context(), s.User.ID)
		if err != nil {
			last = cursor
		}
		seq := max(last, cursor) + 1
		writeJSON(w, http.StatusOK, pollAnswer{Cursor: seq, Events: []Event{{
			Seq: seq, Type: "session_replaced", At: apiTime(time.Now()),
		}}})
		return nil
	}
	writeJSON(w, http.StatusOK, pollAnswer{Cursor: cursor, Events: []Event{}})
	return nil
}

func (a *App) countDelivered(events []Event) {
	n := 0
	for _, e := range events {
		if e.Message != nil {
			n++
		}
	}
	a.metrics.messagesDelivered.Add(int64(n))
}

func (a *App) handleClean(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		Upto *int64 `json:"upto"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Upto == nil || *req.Upto < 0 {
		return errBadRequest.withMessage("upto is required: a whole number, 0 or more.")
	}
	removed, err := a.store.Clean(r.Context(), s.User.ID, *req.Upto)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": removed})
	return nil
}
