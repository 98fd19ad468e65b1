package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"webim/internal/h1"
	"webim/internal/procstat"
)

// flowResult is the outcome of the throughput and paced scenarios.
type flowResult struct {
	Rate                  float64      `json:"rate,omitempty"` // offered msgs/s (paced)
	Senders               int          `json:"senders"`
	SendSeconds           float64      `json:"send_seconds"`
	DrainSeconds          float64      `json:"drain_seconds"`
	Sent                  int          `json:"sent"`
	Created               int          `json:"created_201"`
	Repeats               int          `json:"repeats_200"`
	Rejected              int          `json:"rejected"`
	Unknown               int          `json:"unknown"`
	AcceptedPerSec        float64      `json:"accepted_per_sec"`
	Delivered             int          `json:"delivered"`
	DeliveredPerSec       float64      `json:"delivered_per_sec"`
	Latency               latencyStats `json:"latency"`  // send start → recipient's poll
	SendRTT               latencyStats `json:"send_rtt"` // send start → 201
	LateSends             int          `json:"late_sends,omitempty"`
	ServerCPUSeconds      float64      `json:"server_cpu_seconds,omitempty"`
	ServerCPUMicrosPerMsg float64      `json:"server_cpu_us_per_delivered,omitempty"`
	LoadgenCPUSeconds     float64      `json:"loadgen_cpu_seconds"` // this process, same window: it shares the machine
	LoadgenMicrosPerMsg   float64      `json:"loadgen_cpu_us_per_delivered,omitempty"`
	PollAnswers           int64        `json:"poll_answers"`  // same window, empty ones too
	Requests              int64        `json:"http_requests"` // same window: sends (and their retries), polls, cleans
	PollAnswersPerMsg     float64      `json:"poll_answers_per_delivered,omitempty"`
	RequestsPerMsg        float64      `json:"http_requests_per_delivered,omitempty"`
	RSSBefore             int64        `json:"server_rss_before,omitempty"`
	RSSAfter              int64        `json:"server_rss_after,omitempty"`
	Recipient             verdict      `json:"recipient"`
	SenderCopy            verdict      `json:"sender_copy"`
}

// runFlow runs throughput (each sender sends its next message as soon as
// the previous one is answered) or paced (cfg.rate msgs/s in all, spread
// evenly over the senders). Every user of cfg.pairs pairs sends to its
// partner and holds a long poll.
func runFlow(ctx context.Context, cfg *config, res *result, errs *errCounter, lg *logger) (*flowResult, error) {
	n := 2 * cfg.pairs
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-p%05d", cfg.prefix, i)
	}
	setupTr := newTransport(cfg.conc, 1)
	defer setupTr.CloseIdleConnections()
	setupC := newClient(cfg.url, setupTr)
	users, st, err := setupUsers(ctx, setupC, names, cfg.password, cfg.conc, cfg.loginFirst, loadTokenCache(cfg.tokenCache), lg)
	res.Setup = st
	if err != nil {
		return nil, err
	}
	// Each user u sends to its partner only: streams[u.idx] is that stream.
	pairs := make([][2]*user, cfg.pairs)
	partner := make([]*user, n)
	streams := make([]*stream, n)
	index := make(map[string]int, n) // username → idx
	for i := range pairs {
		a, b := users[2*i], users[2*i+1]
		pairs[i] = [2]*user{a, b}
		partner[a.idx], partner[b.idx] = b, a
	}
	for _, u := range users {
		streams[u.idx] = newStream()
		index[u.name] = u.idx
	}
	interned := internTable(users)
	if err := befriend(ctx, setupC, pairs, cfg.conc); err != nil {
		return nil, err
	}
	if err := cleanAll(ctx, setupC, users, cfg.conc); err != nil {
		return nil, fmt.Errorf("cleaning queues before the run: %w", err)
	}
	setupTr.CloseIdleConnections()

	out := &flowResult{Senders: n}
	if cfg.scenario == "paced" {
		out.Rate = cfg.rate
	}
	dialer, err := h1.NewDialer(cfg.url, max(cfg.spread, 1))
	if err != nil {
		return nil, err
	}

	// Open one long poll per user and wait until all are on the wire.
	epoch := time.Now()
	// Latencies by recipient (appended by its poller only) and send round
	// trips by sender (appended by its sender only).
	lat, rtt := make([][]time.Duration, n), make([][]time.Duration, n)
	var delivered atomic.Int64
	var lastDelivery atomic.Int64 // since epoch
	onEvents := func(u *user, evs []event, at time.Time) {
		for _, ev := range evs {
			m := ev.Message
			if ev.Type != "message" || m == nil {
				continue
			}
			run, num, ok := parseBody(m.Body)
			if !ok || run != res.Run {
				continue
			}
			i, known := index[m.From]
			if !known || partner[i].name != m.To {
				errs.add("poll", &apiError{Code: "message of an unknown pair"})
				continue
			}
			s := streams[i]
			v := viewRecipient
			if m.To != u.name {
				v = viewSender
			}
			start, first := s.deliver(v, num)
			if v == viewRecipient && first {
				since := at.Sub(epoch)
				lat[u.idx] = append(lat[u.idx], since-start)
				delivered.Add(1)
				lastDelivery.Store(int64(since))
			}
		}
	}
	var held atomic.Int64
	pollCtx, stopPolls := context.WithCancel(ctx)
	var pollWG sync.WaitGroup
	for _, u := range users {
		p := &poller{d: dialer, u: u, timeout: cfg.pollTimeout, errs: errs, names: interned, onEvents: onEvents, held: &held, cleanEvery: cfg.cleanEvery}
		pollWG.Add(1)
		go func() { defer pollWG.Done(); p.loop(pollCtx) }()
	}
	defer func() { stopPolls(); pollWG.Wait() }()
	for wait := time.Now(); held.Load() < int64(n) && time.Since(wait) < 10*time.Second; {
		if !sleep(ctx, 10*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	// Give the server a moment to park the polls it has read.
	sleep(ctx, 200*time.Millisecond)

	var cpu0 time.Duration
	self0, _ := procstat.CPUTime(os.Getpid())
	req0, ans0 := dialer.Requests(), pollAnswers.Load()
	if cfg.pid > 0 {
		out.RSSBefore, _ = procstat.RSS(cfg.pid)
		cpu0, _ = procstat.CPUTime(cfg.pid)
	}

	// Send.
	var sent, created, repeats, rejected, unknown, late atomic.Int64
	var tickets atomic.Int64
	sendStart := time.Since(epoch)
	deadline := time.Now().Add(cfg.duration)
	stopProgress := lg.progress(ctx, func() string {
		return fmt.Sprintf("%s: sent %d, 201 %d, delivered %d, polls held %d, errors %d",
			cfg.scenario, sent.Load(), created.Load(), delivered.Load(), held.Load(), errs.total())
	})
	var sendWG sync.WaitGroup
	for _, u := range users {
		s := streams[u.idx]
		to := partner[u.idx].name
		cmidPrefix := res.Run + "-" + strconv.Itoa(u.idx) + "-"
		var interval time.Duration
		next := time.Now()
		if cfg.scenario == "paced" {
			interval = time.Duration(float64(n) / cfg.rate * float64(time.Second))
			next = next.Add(interval * time.Duration(u.idx) / time.Duration(n))
		}
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			conn := h1.NewConn(ctx, dialer)
			defer conn.Close()
			for {
				if interval > 0 {
					if now := time.Now(); next.After(now) {
						if next.After(deadline) || !sleep(ctx, next.Sub(now)) {
							return
						}
					} else if now.Sub(next) > interval {
						late.Add(1)
					}
					next = next.Add(interval)
				}
				if ctx.Err() != nil || time.Now().After(deadline) || tickets.Add(1) > int64(cfg.messages) {
					return
				}
				start := time.Since(epoch)
				num := s.begin(start)
				sent.Add(1)
				state := sendOne(ctx, conn, u, to, messageBody(res.Run, num), cmidPrefix+strconv.Itoa(num), deadline, errs)
				s.finish(num, state)
				switch state {
				case stateAccepted:
					created.Add(1)
					rtt[u.idx] = append(rtt[u.idx], time.Since(epoch)-start)
				case stateRepeat:
					repeats.Add(1)
				case stateRejected:
					rejected.Add(1)
				default:
					unknown.Add(1)
				}
			}
		}()
	}
	sendWG.Wait()
	sendEnd := time.Since(epoch)

	// Wait for every accepted message to reach both queues.
	pending := func() int {
		p := 0
		for _, s := range streams {
			p += s.pending(viewRecipient) + s.pending(viewSender)
		}
		return p
	}
	for drainEnd := time.Now().Add(cfg.drain); pending() > 0 && time.Now().Before(drainEnd); {
		if !sleep(ctx, 50*time.Millisecond) {
			break
		}
	}
	stopProgress()
	if self1, err := procstat.CPUTime(os.Getpid()); err == nil {
		out.LoadgenCPUSeconds = (self1 - self0).Seconds()
	}
	out.Requests, out.PollAnswers = dialer.Requests()-req0, pollAnswers.Load()-ans0
	if cfg.pid > 0 {
		cpu1, err := procstat.CPUTime(cfg.pid)
		if err == nil {
			out.ServerCPUSeconds = (cpu1 - cpu0).Seconds()
		}
		out.RSSAfter, _ = procstat.RSS(cfg.pid)
	}
	stopPolls()
	pollWG.Wait()

	out.SendSeconds = (sendEnd - sendStart).Seconds()
	out.DrainSeconds = max(0, time.Duration(lastDelivery.Load())-sendEnd).Seconds()
	out.Sent, out.Created, out.Repeats = int(sent.Load()), int(created.Load()), int(repeats.Load())
	out.Rejected, out.Unknown, out.LateSends = int(rejected.Load()), int(unknown.Load()), int(late.Load())
	out.AcceptedPerSec = float64(out.Created+out.Repeats) / out.SendSeconds
	out.Delivered = int(delivered.Load())
	if last := time.Duration(lastDelivery.Load()); last > sendStart {
		out.DeliveredPerSec = float64(out.Delivered) / (last - sendStart).Seconds()
	}
	out.Latency = summarize(slices.Concat(lat...))
	out.SendRTT = summarize(slices.Concat(rtt...))
	if out.Delivered > 0 {
		if out.ServerCPUSeconds > 0 {
			out.ServerCPUMicrosPerMsg = out.ServerCPUSeconds * 1e6 / float64(out.Delivered)
		}
		out.LoadgenMicrosPerMsg = out.LoadgenCPUSeconds * 1e6 / float64(out.Delivered)
		out.PollAnswersPerMsg = float64(out.PollAnswers) / float64(out.Delivered)
		out.RequestsPerMsg = float64(out.Requests) / float64(out.Delivered)
	}
	for _, s := range streams {
		out.Recipient.add(s.check(viewRecipient))
		out.SenderCopy.add(s.check(viewSender))
	}

	// Leave the queues empty for the next run.
	if err := cleanAll(ctx, setupC, users, cfg.conc); err != nil {
		errs.add("final clean", err)
	}
	switch {
	case !out.Recipient.ok():
		return out, fmt.Errorf("recipient queues: %s", verdictLine(out.Recipient))
	case !out.SenderCopy.ok():
		return out, fmt.Errorf("senders' own copies: %s", verdictLine(out.SenderCopy))
	case out.Created+out.Repeats == 0:
		return out, errors.New("no message was accepted")
	}
	return out, nil
}

// internTable maps the users' names and the event types to themselves, so
// decodePoll allocates no string for them.
func internTable(users []*user) map[string]string {
	m := make(map[string]string, len(users)+8)
	for _, u := range users {
		m[u.name] = u.name
	}
	for _, t := range []string{"message", "session_replaced", "presence", "friend_request", "friend_accepted", "friend_removed"} {
		m[t] = t
	}
	return m
}

// sendOne sends one message, repeating it with the same client_msg_id after
// a transport error or a 5xx (the server stores it at most once). It returns
// the message's state. After a 429 it waits as asked, but not past deadline.
func sendOne(ctx context.Context, c *h1.Conn, u *user, to, body, cmid string, deadline time.Time, errs *errCounter) uint8 {
	for attempt := 0; ; attempt++ {
		created, err := send(c, u.token, to, body, cmid) // within requestTimeout

		switch {
		case err == nil && created:
			return stateAccepted
		case err == nil:
			return stateRepeat
		}
		errs.add("send", err)
		st := statusOf(err)
		if st >= 400 && st < 500 {
			var ae *apiError
			if errors.As(err, &ae) && ae.RetryAfter > 0 {
				sleep(ctx, min(ae.RetryAfter, time.Until(deadline)))
			} else if st == 409 || st == 429 {
				sleep(ctx, min(100*time.Millisecond, time.Until(deadline)))
			}
			return stateRejected
		}
		if attempt == 2 || ctx.Err() != nil {
			return stateUnknown
		}
		sleep(ctx, 100*time.Millisecond)
	}
}
