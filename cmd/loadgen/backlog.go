package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"webim/internal/h1"
)

// backlogResult is the outcome of the backlog scenario.
type backlogResult struct {
	Messages     int     `json:"messages"`
	Senders      int     `json:"senders"`
	Accepted     int     `json:"accepted"`
	StoreSeconds float64 `json:"store_seconds"`
	StoreRate    float64 `json:"store_rate"` // accepted msgs/s while storing
	LoginMillis  float64 `json:"login_ms"`
	TotalMillis  float64 `json:"login_to_last_ms"` // login start → last message received
	Pages        int     `json:"pages"`
	Removed      int64   `json:"removed"`
	Recipient    verdict `json:"recipient"`
}

// runBacklog queues cfg.backlog messages from cfg.senders friends for one
// user who is logged out, then logs that user in and pages through the queue
// from cursor 0, timing login → last message; finally it cleans everything.
func runBacklog(ctx context.Context, cfg *config, res *result, errs *errCounter, lg *logger) (*backlogResult, error) {
	names := []string{cfg.prefix + "-b-r"}
	for i := 0; i < cfg.senders; i++ {
		names = append(names, fmt.Sprintf("%s-b-s%03d", cfg.prefix, i))
	}
	tr := newTransport(max(cfg.conc, cfg.senders), 1)
	defer tr.CloseIdleConnections()
	c := newClient(cfg.url, tr)
	users, st, err := setupUsers(ctx, c, names, cfg.password, cfg.conc, cfg.loginFirst, loadTokenCache(cfg.tokenCache), lg)
	res.Setup = st
	if err != nil {
		return nil, err
	}
	recv, senders := users[0], users[1:]
	pairs := make([][2]*user, len(senders))
	streams := make(map[string]*stream, len(senders))
	for i, s := range senders {
		pairs[i] = [2]*user{s, recv}
		streams[s.name] = newStream()
	}
	dialer, err := h1.NewDialer(cfg.url, 1)
	if err != nil {
		return nil, err
	}
	if err := befriend(ctx, c, pairs, cfg.conc); err != nil {
		return nil, err
	}
	if err := cleanAll(ctx, c, users, cfg.conc); err != nil {
		return nil, fmt.Errorf("cleaning queues before the run: %w", err)
	}
	// The recipient goes offline: no session, no poll.
	if err := c.logout(ctx, recv.token); err != nil {
		return nil, fmt.Errorf("logout %s: %w", recv.name, err)
	}

	// Store the backlog, the senders sending concurrently.
	out := &backlogResult{Messages: cfg.backlog, Senders: cfg.senders}
	var accepted, sent atomic.Int64
	stop := lg.progress(ctx, func() string {
		return fmt.Sprintf("backlog: stored %d/%d, errors %d", accepted.Load(), cfg.backlog, errs.total())
	})
	epoch := time.Now()
	deadline := epoch.Add(10 * time.Minute)
	var wg sync.WaitGroup
	for i, s := range senders {
		count := cfg.backlog / cfg.senders
		if i < cfg.backlog%cfg.senders {
			count++
		}
		str := streams[s.name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := h1.NewConn(ctx, dialer)
			defer conn.Close()
			for k := 0; k < count && ctx.Err() == nil && time.Now().Before(deadline); k++ {
				num := str.begin(time.Since(epoch))
				sent.Add(1)
				state := sendOne(ctx, conn, s, recv.name, messageBody(res.Run, num), fmt.Sprintf("%s-%d-%d", res.Run, s.idx, num), deadline, errs)
				str.finish(num, state)
				if state == stateAccepted || state == stateRepeat {
					accepted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	stop()
	out.StoreSeconds = time.Since(epoch).Seconds()
	out.Accepted = int(accepted.Load())
	out.StoreRate = float64(out.Accepted) / out.StoreSeconds

	// Log in and page through the queue from the start.
	t0 := time.Now()
	var token string
	err = retryable(ctx, func() error {
		var err error
		token, err = c.login(ctx, recv.name, cfg.password)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("login %s: %w", recv.name, err)
	}
	out.LoginMillis = float64(time.Since(t0)) / float64(time.Millisecond)
	recv.token = token
	lc := loadTokenCache(cfg.tokenCache)
	lc.put(recv.name, token)
	_ = lc.save()
	pc := h1.NewConn(ctx, dialer)
	defer pc.Close()
	var ans pollAnswer
	var cursor int64
	got := 0
	var last time.Time
	pageEnd := time.Now().Add(max(cfg.drain, 10*time.Second))
	for got < out.Accepted && time.Now().Before(pageEnd) && ctx.Err() == nil {
		err := poll(pc, token, cursor, 1, nil, &ans, nil)
		if err != nil {
			errs.add("poll", err)
			if statusOf(err) == 401 {
				break
			}
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		at := time.Now()
		out.Pages++
		for _, ev := range ans.Events {
			m := ev.Message
			if ev.Type != "message" || m == nil {
				continue
			}
			run, num, ok := parseBody(m.Body)
			if !ok || run != res.Run || m.To != recv.name {
				continue
			}
			str := streams[m.From]
			if str == nil {
				errs.add("poll", &apiError{Code: "message from an unknown sender"})
				continue
			}
			if _, first := str.deliver(viewRecipient, num); first {
				got++
				last = at
			}
		}
		if ans.Cursor > cursor {
			cursor = ans.Cursor
		}
	}
	if !last.IsZero() {
		out.TotalMillis = float64(last.Sub(t0)) / float64(time.Millisecond)
	}
	for _, s := range streams {
		out.Recipient.add(s.check(viewRecipient))
	}

	// Clean it all: the recipient what it read, the senders their own copies.
	out.Removed, err = c.clean(ctx, token, cursor)
	if err != nil {
		errs.add("clean", err)
	}
	if err := cleanAll(ctx, c, users, cfg.conc); err != nil {
		errs.add("final clean", err)
	}
	if !out.Recipient.ok() {
		return out, fmt.Errorf("recipient queue: %s", verdictLine(out.Recipient))
	}
	if out.Removed < int64(out.Recipient.Delivered) {
		return out, fmt.Errorf("clean removed %d messages, %d were delivered", out.Removed, out.Recipient.Delivered)
	}
	return out, nil
}
