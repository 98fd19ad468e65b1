package main

// Web Push (RFC 8030) to users whose page is closed: payloads encrypted for
// the subscription (RFC 8291) and signed with the server's VAPID key
// (RFC 8292) by github.com/SherClockHolmes/webpush-go; requests go through
// the endpoint guard (ssrf.go). Everything happens after the send's 201, on
// a bounded queue with a few workers: a slow or failing push service fills
// the queue and then loses pushes, never a message.

import (
	"context"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
)

const (
	pushQueueCap  = 10_000
	pushWorkers   = 4
	pushTTL       = 86400 // seconds: a day
	pushWindow    = 10 * time.Second
	pushAttempts  = 4 // the first try and three retries
	pushBackoff   = time.Second
	maxRetryDelay = 5 * time.Minute
	previewLen    = 100
)

// newVAPIDKey makes a P-256 key pair in VAPID's encoding.
func newVAPIDKey() (vapidKey, error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return vapidKey{}, err
	}
	enc := base64.RawURLEncoding
	return vapidKey{Public: enc.EncodeToString(k.PublicKey().Bytes()), Private: enc.EncodeToString(k.Bytes())}, nil
}

// pushPayload is what the service worker gets (API.md).
type pushPayload struct {
	Type    string  `json:"type"`
	From    string  `json:"from"`
	Group   *int64  `json:"group,omitempty"`
	ID      int64   `json:"id"`
	Preview *string `json:"preview,omitempty"`
}

// pushJob is one unit of the queue: a stored message to check for its
// recipient (stage 1), or a push to send to each of the user's
// subscriptions, or to one of them again (a retry).
type pushJob struct {
	queued time.Time

	// Stage 1: a message for the user named to, stored at sentAt.
	to     string
	sentAt time.Time

	user    int64
	conv    string // the conversation, as the recipient sees it
	payload []byte
	sub     *pushSubscription // nil: every subscription of user
	attempt int
}

type convKey struct {
	user int64
	conv string
}

// convState is a conversation's coalescing window: a push went out at its
// start; the newest message since then waits in folded for its end.
type convState struct {
	folded *pushJob
	timer  *time.Timer
}

type pusher struct {
	store   Store
	log     *slog.Logger
	guard   *endpointGuard
	client  *http.Client
	key     vapidKey
	subject func(sub pushSubscription) string
	preview bool
	// pollOpenSince says whether the user had a poll open since t: then
	// they have the message on screen, or had the page open to get it.
	pollOpenSince func(user int64, t time.Time) bool
	topicKey      []byte

	// window, backoff and attempts are pushWindow, pushBackoff and
	// pushAttempts; tests shorten them.
	window   time.Duration
	backoff  time.Duration
	attempts int

	// ids remembers recipients' user ids by name for a minute, so that a
	// message to someone polling costs no database read to skip its push.
	// A minute bounds how long a name deleted and taken again by a new
	// account maps to the old (gone) id: that account's pushes wait so long.
	idsMu sync.Mutex
	ids   map[string]cachedID

	mu     sync.Mutex
	queue  []*pushJob
	convs  map[convKey]*convState
	closed bool
	wake   chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, failed, dropped, gone atomic.Int64
	// busy counts jobs queued, being worked on or waiting for a retry, so
	// that one can tell when everything asked of the pusher is done.
	busy atomic.Int64
}

func newPusher(store Store, log *slog.Logger, guard *endpointGuard, key vapidKey, subject func(pushSubscription) string,
	preview bool, pollOpenSince func(int64, time.Time) bool) *pusher {
	ctx, cancel := context.WithCancel(context.Background())
	tk := sha256.Sum256([]byte("webim push topic\x00" + key.Private))
	p := &pusher{
		store: store, log: log, guard: guard, client: guard.httpClient(), key: key, subject: subject,
		preview: preview, pollOpenSince: pollOpenSince, topicKey: tk[:],
		window: pushWindow, backoff: pushBackoff, attempts: pushAttempts,
		convs: map[convKey]*convState{}, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		ids: map[string]cachedID{},
	}
	for range pushWorkers {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

// close stops the workers, abandoning what is queued: pushes are a
// courtesy, and shutdown has seconds, not minutes.
func (p *pusher) close() {
	p.mu.Lock()
	p.closed = true
	for _, st := range p.convs {
		st.timer.Stop()
	}
	p.queue = nil
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// messageStored queues the check for a push about msg to the user named to.
// It never waits.
func (p *pusher) messageStored(msg Message, to string, sentAt time.Time) {
	// Most recipients are polling: skip them here, before any work, when
	// their id is known already (the worker checks again either way).
	p.idsMu.Lock()
	c, known := p.ids[to]
	p.idsMu.Unlock()
	if known && time.Since(c.seen) < pushIDCacheFor && p.pollOpenSince(c.id, sentAt) {
		return
	}
	payload := pushPayload{Type: "message", From: msg.From, ID: msg.ID}
	if p.preview {
		pv := msg.Body
		if i := codePointPrefix(pv, previewLen); i < len(pv) {
			pv = pv[:i]
		}
		payload.Preview = &pv
	}
	conv := "u:" + msg.From
	if msg.Group != 0 {
		g := msg.Group
		payload.Group = &g
		conv = "g:" + strconv.FormatInt(g, 10)
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return
	}
	p.enqueue(&pushJob{to: to, sentAt: sentAt, conv: conv, payload: b})
}

// codePointPrefix returns the byte length of s's first n code points.
func codePointPrefix(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

func (p *pusher) enqueue(j *pushJob) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if len(p.queue) >= pushQueueCap {
		p.mu.Unlock()
		p.dropped.Add(1)
		return
	}
	j.queued = time.Now()
	p.queue = append(p.queue, j)
	p.busy.Add(1)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// queueStats are the queue's length and its oldest job's age, for /metrics.
func (p *pusher) queueStats() (int, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return 0, 0
	}
	return len(p.queue), time.Since(p.queue[0].queued)
}

func (p *pusher) next() *pushJob {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			j := p.queue[0]
			p.queue[0] = nil
			p.queue = p.queue[1:]
			more := len(p.queue) > 0
			p.mu.Unlock()
			if more { // pass the wake-up on to another worker
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}
			return j
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-p.ctx.Done():
			return nil
		}
	}
}

func (p *pusher) work() {
	defer p.wg.Done()
	for {
		j := p.next()
		if j == nil {
			return
		}
		if j.to != "" {
			p.check(j)
		} else {
			p.send(j)
		}
		p.busy.Add(-1)
	}
}

// check decides whether a stored message gets a push: not when its
// recipient had a poll open since it was stored, nor more than one per
// conversation and window (the newest waits for the window's end).
func (p *pusher) check(j *pushJob) {
	id, ok := p.userID(j.to)
	if !ok {
		return // deleted meanwhile, or the store is down: no push either way
	}
	if p.pollOpenSince(id, j.sentAt) {
		return
	}
	j.to, j.user = "", id
	p.coalesce(j)
}

type cachedID struct {
	id   int64
	seen time.Time
}

const pushIDCacheFor = time.Minute

func (p *pusher) userID(name string) (int64, bool) {
	now := time.Now()
	p.idsMu.Lock()
	c, ok := p.ids[name]
	p.idsMu.Unlock()
	if ok && now.Sub(c.seen) < pushIDCacheFor {
		return c.id, true
	}
	acct, err := p.store.AccountByName(p.ctx, name)
	if err != nil {
		return 0, false
	}
	p.idsMu.Lock()
	if len(p.ids) > 100_000 {
		clear(p.ids) // bounded: a busy server refills it within a minute
	}
	p.ids[name] = cachedID{acct.ID, now}
	p.idsMu.Unlock()
	return acct.ID, true
}

func (p *pusher) coalesce(j *pushJob) {
	k := convKey{j.user, j.conv}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if st := p.convs[k]; st != nil {
		st.folded = j
		p.mu.Unlock()
		return
	}
	st := &convState{}
	p.convs[k] = st
	st.timer = time.AfterFunc(p.window, func() { p.windowEnded(k, st) })
	p.mu.Unlock()
	p.enqueue(j)
}

// windowEnded sends what was folded during the window, opening the next
// one, or forgets the conversation when nothing was.
func (p *pusher) windowEnded(k convKey, st *convState) {
	p.mu.Lock()
	if p.convs[k] != st || p.closed {
		p.mu.Unlock()
		return
	}
	j := st.folded
	if j == nil {
		delete(p.convs, k)
		p.mu.Unlock()
		return
	}
	st.folded = nil
	st.timer.Reset(p.window)
	p.mu.Unlock()
	p.enqueue(j)
}

// topic names a conversation for the push service, which keeps only the
// newest push of a topic: 24 bytes of an HMAC, 32 base64url characters, so
// the service cannot tell who talks with whom.
func (p *pusher) topic(conv string) string {
	m := hmac.New(sha256.New, p.topicKey)
	m.Write([]byte(conv))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

func (p *pusher) send(j *pushJob) {
	if j.sub != nil {
		p.deliver(j, *j.sub)
		return
	}
	subs, err := p.store.PushSubscriptions(p.ctx, j.user)
	if err != nil {
		p.log.Warn("push: reading subscriptions failed", "err", err)
		return
	}
	for _, sub := range subs {
		p.deliver(j, sub)
	}
}

// deliver makes one request to sub's push service and acts on the answer:
// gone (404, 410) deletes the subscription, busy (429, 5xx) or unreachable
// retries later, anything else is the end of this push.
func (p *pusher) deliver(j *pushJob, sub pushSubscription) {
	ctx, cancel := context.WithTimeout(p.ctx, pushTimeout)
	defer cancel()
	// Checked again: the name may resolve elsewhere than when it was stored.
	if _, err := p.guard.check(ctx, sub.Endpoint); err != nil {
		p.failed.Add(1)
		p.log.Warn("push: endpoint refused", "err", err)
		return
	}
	subject := p.subject(sub)
	resp, err := webpush.SendNotificationWithContext(ctx, j.payload,
		&webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{Auth: sub.Auth, P256dh: sub.P256dh}},
		&webpush.Options{
			HTTPClient: p.client,
			// The library adds "mailto:" to whatever is not https:.
			Subscriber:      strings.TrimPrefix(subject, "mailto:"),
			TTL:             pushTTL,
			Urgency:         webpush.UrgencyHigh,
			Topic:           p.topic(j.conv),
			VAPIDPublicKey:  p.key.Public,
			VAPIDPrivateKey: p.key.Private,
		})
	if err != nil {
		if p.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errEndpointRefused) {
			p.failed.Add(1)
			p.log.Warn("push: endpoint refused", "err", err)
			return
		}
		p.retry(j, sub, 0, err.Error())
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, pushResponseCap))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		p.sent.Add(1)
	case code == http.StatusNotFound || code == http.StatusGone:
		p.gone.Add(1)
		if err := p.store.DeletePushSubscription(p.ctx, sub.Endpoint); err != nil {
			p.log.Warn("push: deleting a gone subscription failed", "err", err)
		}
	case code == http.StatusTooManyRequests || code >= 500:
		p.retry(j, sub, retryAfter(resp.Header.Get("Retry-After"), time.Now()), resp.Status)
	default:
		p.failed.Add(1)
		p.log.Warn("push: refused by the push service", "status", resp.Status)
	}
}

// retry sends the push to sub again after an exponential backoff, or after
// the push service's Retry-After when that is longer, up to p.attempts
// tries; a push that would wait longer than maxRetryDelay is dropped.
func (p *pusher) retry(j *pushJob, sub pushSubscription, after time.Duration, why string) {
	if j.attempt+1 >= p.attempts {
		p.failed.Add(1)
		p.log.Warn("push: giving up", "why", why, "attempts", j.attempt+1)
		return
	}
	delay := max(p.backoff<<j.attempt, after)
	if delay > maxRetryDelay {
		p.failed.Add(1)
		p.log.Warn("push: dropped, the push service asks to wait too long", "why", why, "retry_after", after)
		return
	}
	again := *j
	again.sub, again.attempt = &sub, j.attempt+1
	p.busy.Add(1)
	time.AfterFunc(delay, func() {
		p.enqueue(&again)
		p.busy.Add(-1)
	})
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// writeMetrics adds the push figures to /metrics.
func (p *pusher) writeMetrics(w io.Writer) {
	n, age := p.queueStats()
	fmt.Fprintf(w, "# HELP webim_push_queue_length Pushes and checks waiting to be sent.\n# TYPE webim_push_queue_length gauge\nwebim_push_queue_length %d\n", n)
	fmt.Fprintf(w, "# HELP webim_push_queue_oldest_seconds Age of the oldest job in the push queue.\n# TYPE webim_push_queue_oldest_seconds gauge\nwebim_push_queue_oldest_seconds %g\n", age.Seconds())
	fmt.Fprintf(w, "# HELP webim_push_sent_total Pushes a push service accepted.\n# TYPE webim_push_sent_total counter\nwebim_push_sent_total %d\n", p.sent.Load())
	fmt.Fprintf(w, "# HELP webim_push_failed_total Pushes given up (refused, or retried to the limit).\n# TYPE webim_push_failed_total counter\nwebim_push_failed_total %d\n", p.failed.Load())
	fmt.Fprintf(w, "# HELP webim_push_dropped_total Pushes and checks dropped because the queue was full.\n# TYPE webim_push_dropped_total counter\nwebim_push_dropped_total %d\n", p.dropped.Load())
	fmt.Fprintf(w, "# HELP webim_push_gone_total Subscriptions deleted because their push service said they are gone.\n# TYPE webim_push_gone_total counter\nwebim_push_gone_total %d\n", p.gone.Load())
}
