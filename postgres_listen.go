package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Several nodes on one database: each commit that others must hear of
// (events added to queues, sessions started or ended, a poll taking over its
// session) sends one coalesced NOTIFY inside its own transaction, so it is
// delivered only if the commit stands; every serving node LISTENs on one
// connection of its own and hands what it hears to the server's hooks.
//
// A notification is only a hint. Postgres drops those sent while a listener
// is disconnected, so nothing may depend on one arriving: the database stays
// the truth (a queue's seq, a session's row), and after every (re)connect the
// node wakes every poll and checks every live session, which covers whatever
// it may have missed. A lost hint therefore delays, never loses.
//
// Each notifying commit takes a cluster-wide lock in Postgres; that is why
// a batch sends one notification (or a few, when long) however many sends,
// logins and polls it carries, instead of one per change.

const (
	pgNotifyChannel = "webim"
	// pgNotifyMax keeps a payload under Postgres' 8000-byte limit.
	pgNotifyMax = 7900
	// pgListenPing is how long the listener waits in silence before it
	// pings, so a connection that died without a word is noticed.
	pgListenPing = 5 * time.Second
	// pgListenBackoff bounds the wait between reconnects: short, because
	// until the listener is back other nodes' wake-ups reach nobody here.
	pgListenBackoff = time.Second
)

// pgNotes are what a batch tells the other nodes, gathered by its ops.
type pgNotes struct {
	sessions []int64  // users whose sessions started or ended
	polls    []string // "user.tag" of polls that began waiting
	// typing are typing events, which live in memory only: the node where
	// the recipient polls learns them from the notification itself.
	typing []pgTypingNote
}

type pgTypingNote struct {
	user int64
	e    Event
}

func (n *pgNotes) empty() bool {
	return len(n.sessions) == 0 && len(n.polls) == 0 && len(n.typing) == 0
}

// sessionChanged tells the other nodes, at commit, to check user's live
// session.
func (tx *pgTx) sessionChanged(user int64) { tx.notes.sessions = append(tx.notes.sessions, user) }

// pgPayloads makes the notification payloads of a batch: "node item,item…"
// where an item is w<user> (queue changed), s<user> (sessions changed),
// p<user>.<tag> (a poll took over the session) or t<user>:<event> (a typing
// event for user, its JSON in unpadded base64url, which has no commas). Payloads are split before
// pgNotifyMax; each carries the node, so each can be read alone.
func pgPayloads(node string, woken []int64, notes pgNotes) []string {
	var out []string
	var b strings.Builder
	add := func(kind byte, item string) {
		if b.Len() > 0 && b.Len()+1+1+len(item) > pgNotifyMax {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(node)
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteByte(kind)
		b.WriteString(item)
	}
	for _, u := range woken {
		add('w', strconv.FormatInt(u, 10))
	}
	for _, u := range dedupe(notes.sessions) {
		add('s', strconv.FormatInt(u, 10))
	}
	for _, p := range notes.polls {
		add('p', p)
	}
	for _, t := range notes.typing {
		js, err := json.Marshal(t.e)
		if err != nil {
			continue
		}
		add('t', strconv.FormatInt(t.user, 10)+":"+base64.RawURLEncoding.EncodeToString(js))
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// pgHeard is one payload read back; foreign payloads or items that do not
// parse are ignored (a hint is never needed for correctness).
type pgHeard struct {
	node     string
	woken    []int64
	sessions []int64
	polls    []pgPollNote
	typing   []pgTypingNote
}

type pgPollNote struct {
	user int64
	tag  string
}

func parsePayload(payload string) pgHeard {
	node, items, _ := strings.Cut(payload, " ")
	h := pgHeard{node: node}
	for item := range strings.SplitSeq(items, ",") {
		if len(item) < 2 {
			continue
		}
		switch item[0] {
		case 'w', 's':
			u, err := strconv.ParseInt(item[1:], 10, 64)
			if err != nil {
				continue
			}
			if item[0] == 'w' {
				h.woken = append(h.woken, u)
			} else {
				h.sessions = append(h.sessions, u)
			}
		case 'p':
			us, tag, ok := strings.Cut(item[1:], ".")
			u, err := strconv.ParseInt(us, 10, 64)
			if !ok || err != nil || tag == "" {
				continue
			}
			h.polls = append(h.polls, pgPollNote{u, tag})
		case 't':
			us, enc, ok := strings.Cut(item[1:], ":")
			u, err := strconv.ParseInt(us, 10, 64)
			if !ok || err != nil {
				continue
			}
			js, err := base64.RawURLEncoding.DecodeString(enc)
			var e Event
			if err != nil || json.Unmarshal(js, &e) != nil || e.Seq <= 0 || e.Type != "typing" {
				continue
			}
			e.ephemeral = true
			h.typing = append(h.typing, pgTypingNote{u, e})
		}
	}
	return h
}

// queueNotify adds the batch's notifications to b, before its COMMIT.
func (tx *pgTx) queueNotify(b *pgx.Batch) {
	for _, p := range pgPayloads(tx.s.node, dedupe(tx.woken), tx.notes) {
		b.Queue(`SELECT pg_notify($1, $2)`, pgNotifyChannel, p)
		tx.notified++
	}
}

// PollWaiting costs a notification even with a single node (nothing tells
// a node whether others listen); it rides on the writer's next batch, so that polls beginning
// together cost one notification, or none of their own when sends are
// committing anyway.
func (s *pgStore) PollWaiting(user int64, h tokenHash) {
	note := strconv.FormatInt(user, 10) + "." + h.tag()
	s.goDo(func(tx *pgTx) error {
		tx.notes.polls = append(tx.notes.polls, note)
		return nil
	})
}

// pgListenStats are the listener's counters, for /metrics.
type pgListenStats struct {
	sent, heard, connects atomic.Int64
}

// listen keeps one connection LISTENing and hands what it hears to the
// hooks, until Close. Any error closes the connection; it is opened again
// after a short, growing pause.
func (s *pgStore) listen(cfg *pgx.ConnConfig) {
	defer s.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := 50 * time.Millisecond
	for {
		started := time.Now()
		err := s.listenOnce(ctx, cfg)
		s.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*pgListenBackoff {
			backoff = 50 * time.Millisecond
		}
		s.log.Warn("not hearing the other nodes; reconnecting", "db", s.where, "in", backoff, "err", pgErrorText(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, pgListenBackoff)
	}
}

func (s *pgStore) listenOnce(ctx context.Context, cfg *pgx.ConnConfig) error {
	cctx, ccancel := context.WithTimeout(ctx, pgConnectTimeout)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	ccancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx)
		ccancel()
	}()
	lctx, lcancel := context.WithTimeout(ctx, pgConnectTimeout)
	_, err = conn.Exec(lctx, "LISTEN "+pgNotifyChannel)
	lcancel()
	if err != nil {
		return err
	}
	if s.stats.connects.Add(1) > 1 {
		s.log.Info("hearing the other nodes again", "db", s.where, "node", s.node)
	}
	s.listening.Store(true)
	s.everListened.Store(true)
	// Whatever was notified before LISTEN took effect went unheard: every
	// poll and session here looks at the database again. From here on each
	// commit elsewhere is heard, so nothing falls between the two.
	s.hooks.Resync()
	for {
		wctx, wcancel := context.WithTimeout(ctx, pgListenPing)
		// pgx.Conn keeps notifications that arrive during other work (a
		// ping) and hands them out first.
		n, err := conn.WaitForNotification(wctx)
		wcancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			pctx, pcancel := context.WithTimeout(ctx, pgConnectTimeout)
			err = conn.Ping(pctx)
			pcancel()
			if err != nil {
				return err
			}
			continue
		}
		if n.Channel == pgNotifyChannel {
			s.heard(n.Payload)
		}
	}
}

// heard acts on one payload of another node's. The hooks do not block, so
// a burst of notifications never backs up into Postgres' queue.
func (s *pgStore) heard(payload string) {
	h := parsePayload(payload)
	if h.node == s.node {
		return // this node acted on its own changes when it made them
	}
	s.stats.heard.Add(1)
	if len(h.woken) > 0 {
		s.hooks.Woken(h.woken)
	}
	if len(h.sessions) > 0 {
		s.hooks.SessionsChanged(h.sessions)
	}
	for _, p := range h.polls {
		s.hooks.PollTaken(p.user, p.tag)
	}
	for _, t := range h.typing {
		s.ephemeral.add(t.user, t.e)
		s.hooks.Woken([]int64{t.user})
	}
}

// writeMetrics adds the cross-node notifications to /metrics.
func (s *pgStore) writeMetrics(w io.Writer) {
	listening := 0
	if s.listening.Load() {
		listening = 1
	}
	fmt.Fprintf(w, "# HELP webim_pg_listening Whether this node hears the other nodes now (its LISTEN connection is up).\n# TYPE webim_pg_listening gauge\nwebim_pg_listening %d\n", listening)
	fmt.Fprintf(w, "# HELP webim_pg_notifications_sent_total Notifications this node sent to the others (one or a few per commit).\n# TYPE webim_pg_notifications_sent_total counter\nwebim_pg_notifications_sent_total %d\n", s.stats.sent.Load())
	fmt.Fprintf(w, "# HELP webim_pg_notifications_heard_total Notifications of other processes this node heard.\n# TYPE webim_pg_notifications_heard_total counter\nwebim_pg_notifications_heard_total %d\n", s.stats.heard.Load())
	fmt.Fprintf(w, "# HELP webim_pg_listen_connects_total Times the LISTEN connection was opened (each after the first is a reconnect).\n# TYPE webim_pg_listen_connects_total counter\nwebim_pg_listen_connects_total %d\n", s.stats.connects.Load())
}
