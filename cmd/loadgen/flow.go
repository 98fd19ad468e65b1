package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

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
	RSSBefore             int64        `json:"server_rss_before,omitempty"`
	RSSAfter              int64        `json:"server_rss_after,omitempty"`
	Recipient             verdict      `json:"recipient"`
	SenderCopy            verdict      `json:"sender_copy"`
}

// samples collects durations from many goroutines.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

func streamKey(from, to string) string { return from + "\x00" + to }

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
	pairs := make([][2]*user, cfg.pairs)
	partner := make([]*user, n)
	streams := make(map[string]*stream, n)
	for i := range pairs {
		a, b := users[2*i], users[2*i+1]
		pairs[i] = [2]*user{a, b}
		partner[a.idx], partner[b.idx] = b, a
		streams[streamKey(a.name, b.name)] = newStream()
		streams[streamKey(b.name, a.name)] = newStream()
	}
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
	spread := max(cfg.spread, 1)
	pollTr, sendTr := newTransport(n, spread), newTransport(n, spread)
	defer pollTr.CloseIdleConnections()
	defer sendTr.CloseIdleConnections()
	pollC, sendC := newClient(cfg.url, pollTr), newClient(cfg.url, sendTr)

	// Open one long poll per user and wait until all are on the wire.
	epoch := time.Now()
	var lat, rtt samples
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
			s := streams[streamKey(m.From, m.To)]
			if s == nil {
				errs.add("poll", &apiError{Code: "message of an unknown pair"})
				continue
			}
			v := viewRecipient
			if m.To != u.name {
				v = viewSender
			}
			start, first := s.deliver(v, num)
			if v == viewRecipient && first {
				since := at.Sub(epoch)
				lat.add(since - start)
				delivered.Add(1)
				lastDelivery.Store(int64(since))
			}
		}
	}
	var held atomic.Int64
	pollCtx, stopPolls := context.WithCancel(ctx)
	var pollWG sync.WaitGroup
	for _, u := range users {
		p := &poller{c: pollC, u: u, timeout: cfg.pollTimeout, errs: errs, onEvents: onEvents, held: &held, cleanEvery: cfg.cleanEvery}
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
		s := streams[streamKey(u.name, partner[u.idx].name)]
		to := partner[u.idx].name
		var interval time.Duration
		next := time.Now()
		if cfg.scenario == "paced" {
			interval = time.Duration(float64(n) / cfg.rate * float64(time.Second))
			next = next.Add(interval * time.Duration(u.idx) / time.Duration(n))
		}
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
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
				state := sendOne(ctx, sendC, u, to, messageBody(res.Run, num), fmt.Sprintf("%s-%d-%d", res.Run, u.idx, num), deadline, errs)
				s.finish(num, state)
				switch state {
				case stateAccepted:
					created.Add(1)
					rtt.add(time.Since(epoch) - start)
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
	out.Latency = summarize(lat.d)
	out.SendRTT = summarize(rtt.d)
	if out.Delivered > 0 && out.ServerCPUSeconds > 0 {
		out.ServerCPUMicrosPerMsg = out.ServerCPUSeconds * 1e6 / float64(out.Delivered)
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

// sendOne sends one message, repeating it with the same client_msg_id after
// a transport error or a 5xx (the server stores it at most once). It returns
// the message's state. After a 429 it waits as asked, but not past deadline.
func sendOne(ctx context.Context, c *client, u *user, to, body, cmid string, deadline time.Time, errs *errCounter) uint8 {
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		created, err := c.send(rctx, u.token, to, body, cmid)
		cancel()
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
