package main

// Presence across the nodes of one PostgreSQL database.
//
// A user is online while some node claims them: the node they logged in on,
// for the grace, and every node where a poll of theirs is open, and for the
// grace after the last one there ended. Each node keeps its own claims in
// memory exactly as a single node keeps presence (counts of open polls, a
// grace deadline) and writes to the database only when its claim changes:
// a login, the first poll of a user it did not claim, a grace running out,
// a logout. A poll cycle (answer, next poll) writes nothing, so presence
// costs the database nothing per message.
//
// Tables (schema_postgres.sql):
//   - presence_claims (user_id, node_id): the claims, one row per node.
//   - presence_nodes (node_id, seen_at): each node's heartbeat, every
//     pgPresenceTick (a fifth of the grace at most); a claim counts only
//     while its node's heartbeat is younger than the grace.
//   - presence (user_id, online, changed_at): the cluster's view, the one
//     flag friends were last told.
//
// Who tells the friends: whichever node changes a claim takes the user's
// presence row lock (FOR UPDATE), changes its claim, and compares "some
// live claim exists" with the flag; if they differ it flips the flag and
// queues the notices in the same transaction. The row lock makes the
// decision atomic: two nodes cannot both announce "online", and the last
// claim to go always sees the flag still set and announces "offline". A
// login on another node while the user is online only adds a claim, so a
// replacing login does not flap.
//
// A node that dies (kill -9, a lost machine) stops its heartbeat; any other
// node, at its next tick after the grace, deletes the dead node and its
// claims and announces whoever is left with none. So users of a dead node go
// offline the grace after it died unless they poll elsewhere — the 90 s
// rule, counted from the last moment their polls were known to be open.
// Heartbeats and liveness use the database's clock, so nodes' clocks need
// not agree.
//
// A logout deletes every node's claim on the user (the session is over
// everywhere). Another node that still believes it claims the user learns
// it at its next tick, which reads the presence rows changed lately and
// whether its claims still exist; it then stops claiming until the user's
// next poll there — at worst one poll (≤ 60 s, under the 90 s grace) late.
//
// IsOnline is called by the writer for every transient notice: it answers
// from an in-memory copy of the presence flags, updated when this node's own
// changes commit and, for other nodes' changes, at every tick (the rows
// changed since the last tick, with an overlap for transactions that
// committed late), so it lags the database by one tick at most.

import (
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgNowMs is the database's clock in Unix ms, for heartbeats and liveness.
const pgNowMs = `(extract(epoch from clock_timestamp()) * 1000)::int8`

// pgPresenceOverlap is how far back each refresh reads again: longer than a
// write transaction may take (pgBatchTimeout), so a change stamped before
// the previous refresh but committed after it is still seen.
const pgPresenceOverlap = pgBatchTimeout + 5*time.Second

func pgPresenceTick(grace time.Duration) time.Duration {
	return min(2*time.Second, grace/5)
}

type pgPresence struct {
	s     *pgStore
	grace time.Duration
	node  int64
	kick  chan struct{}

	mu      sync.Mutex
	users   map[int64]*pgLocalPresence
	dirty   map[int64]User // users whose claim is to be written (as users says)
	logouts map[int64]User // users whose every claim is to be deleted

	viewMu sync.RWMutex
	online map[int64]bool // the cluster's view: online users only
	since  int64          // the newest changed_at read
}

// pgLocalPresence is this node's claim on a user.
type pgLocalPresence struct {
	user    User
	polls   int
	claimed bool
	// offlineAt ends the grace of a claim with no poll open; zero while a
	// poll is open. Ticks check it: one timer per node, not per user.
	offlineAt time.Time
	// lastPollEnd is when the user's last poll here ended (PollOpenSince).
	lastPollEnd time.Time
}

// NewPresence starts this node's part of the cluster's presence.
func (s *pgStore) NewPresence(grace time.Duration) presenceTracker {
	p := &pgPresence{
		s:       s,
		grace:   grace,
		node:    rand.Int64N(1<<62) + 1,
		kick:    make(chan struct{}, 1),
		users:   map[int64]*pgLocalPresence{},
		dirty:   map[int64]User{},
		logouts: map[int64]User{},
		online:  map[int64]bool{},
	}
	s.bg.Add(1)
	go p.run()
	return p
}

func (p *pgPresence) IsOnline(user int64) bool {
	p.viewMu.RLock()
	defer p.viewMu.RUnlock()
	return p.online[user]
}

// PollOpenSince sees this node's polls only: a push to a user polling on
// another node is one notification too many, never a lost one.
func (p *pgPresence) PollOpenSince(user int64, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.users[user]
	return st != nil && (st.polls > 0 || st.lastPollEnd.After(t))
}

// Renamed updates the name this node's notices about u carry.
func (p *pgPresence) Renamed(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.users[u.ID]; st != nil {
		st.user.DisplayName = u.DisplayName
	}
	if _, ok := p.dirty[u.ID]; ok {
		p.dirty[u.ID] = u
	}
}

func (p *pgPresence) Online() int {
	p.viewMu.RLock()
	defer p.viewMu.RUnlock()
	return len(p.online)
}

func (p *pgPresence) localLocked(u User) *pgLocalPresence {
	st := p.users[u.ID]
	if st == nil {
		st = &pgLocalPresence{user: u}
		p.users[u.ID] = st
	}
	return st
}

func (p *pgPresence) forgetIfIdleLocked(st *pgLocalPresence) {
	if !st.claimed && st.polls == 0 {
		delete(p.users, st.user.ID)
	}
}

func (p *pgPresence) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// LoggedIn claims u here; the claim is written even if this node already
// held one, since a logout elsewhere may have deleted it.
func (p *pgPresence) LoggedIn(u User) {
	p.mu.Lock()
	st := p.localLocked(u)
	st.claimed = true
	if st.polls == 0 {
		st.offlineAt = time.Now().Add(p.grace)
	}
	p.dirty[u.ID] = u
	p.mu.Unlock()
	// The claim makes the user online wherever they are: say so here now.
	p.viewMu.Lock()
	p.setViewLocked(u.ID, true)
	p.viewMu.Unlock()
	p.signal()
}

func (p *pgPresence) LoggedOut(u User) {
	p.mu.Lock()
	st := p.localLocked(u)
	st.claimed = false
	st.offlineAt = time.Time{}
	p.logouts[u.ID] = u
	p.forgetIfIdleLocked(st)
	p.mu.Unlock()
	// A logout ends every node's claim, so the user is offline: this node
	// says so at once, as one node would, not a tick later.
	p.viewMu.Lock()
	p.setViewLocked(u.ID, false)
	p.viewMu.Unlock()
	p.signal()
}

func (p *pgPresence) PollStarted(u User) {
	p.mu.Lock()
	st := p.localLocked(u)
	st.polls++
	st.offlineAt = time.Time{}
	claim := !st.claimed
	if claim {
		st.claimed = true
		p.dirty[u.ID] = u
	}
	p.mu.Unlock()
	if claim {
		p.signal()
	}
}

func (p *pgPresence) PollEnded(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.localLocked(u)
	st.polls--
	st.lastPollEnd = time.Now()
	if st.polls == 0 {
		if st.claimed {
			st.offlineAt = time.Now().Add(p.grace)
		} else {
			p.forgetIfIdleLocked(st)
		}
	}
}

// run writes claims as they change and, every tick, ends the claims whose
// grace is over, beats the heartbeat, sweeps dead nodes and refreshes the
// view. One goroutine does it all, so this node's presence writes never
// race each other.
func (p *pgPresence) run() {
	defer p.s.bg.Done()
	tick := time.NewTicker(pgPresenceTick(p.grace))
	defer tick.Stop()
	p.beat() // the view starts from the database, not empty
	for {
		select {
		case <-p.s.quit:
			return
		case <-p.kick:
			p.flush()
		case <-tick.C:
			p.expire()
			p.flush()
			p.beat()
		}
	}
}

// expire drops the claims whose grace ran out.
func (p *pgPresence) expire() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.users {
		if st.claimed && st.polls == 0 && !st.offlineAt.IsZero() && !now.Before(st.offlineAt) {
			st.claimed = false
			st.offlineAt = time.Time{}
			p.dirty[st.user.ID] = st.user
			p.forgetIfIdleLocked(st)
		}
	}
}

// flush writes the pending logouts, then the pending claims: a logout and a
// login close together on this node are told in the order they happened.
// What fails is kept for the next tick.
func (p *pgPresence) flush() {
	p.mu.Lock()
	logouts, dirty := p.logouts, p.dirty
	p.logouts, p.dirty = map[int64]User{}, map[int64]User{}
	var claim, unclaim []User
	for id, u := range dirty {
		if st := p.users[id]; st != nil && st.claimed {
			claim = append(claim, u)
		} else {
			unclaim = append(unclaim, u)
		}
	}
	p.mu.Unlock()
	retry := func(into func() map[int64]User, users map[int64]User) {
		p.mu.Lock()
		defer p.mu.Unlock()
		m := into()
		for id, u := range users {
			if _, newer := m[id]; !newer {
				m[id] = u
			}
		}
	}
	if len(logouts) > 0 {
		if err := p.s.do(func(tx *pgTx) error { return p.change(tx, slices.Collect(maps.Values(logouts)), nil, nil) }); err != nil {
			retry(func() map[int64]User { return p.logouts }, logouts)
			p.warn("writing logouts failed", err)
		}
	}
	if len(claim)+len(unclaim) > 0 {
		if err := p.s.do(func(tx *pgTx) error { return p.change(tx, nil, claim, unclaim) }); err != nil {
			retry(func() map[int64]User { return p.dirty }, dirty)
			p.warn("writing claims failed", err)
		}
	}
}

// warn logs a failed write, which the next tick retries; one refused
// because the store is closing is no news.
func (p *pgPresence) warn(what string, err error) {
	if !errors.Is(err, errShuttingDown) {
		p.s.log.Warn("presence: "+what, "err", err)
	}
}

// change applies claim changes and announces the users whose presence they
// change: logouts lose every claim, claim gain this node's, unclaim lose it.
func (p *pgPresence) change(tx *pgTx, logouts, claim, unclaim []User) error {
	users := map[int64]User{}
	for _, l := range [][]User{logouts, claim, unclaim} {
		for _, u := range l {
			users[u.ID] = u
		}
	}
	flags, err := p.lock(tx, users)
	if err != nil {
		return err
	}
	if _, err := tx.exec(`INSERT INTO presence_nodes (node_id, seen_at) VALUES ($1, `+pgNowMs+`)
		ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at`, p.node); err != nil {
		return err
	}
	if len(logouts) > 0 {
		if _, err := tx.exec(`DELETE FROM presence_claims WHERE user_id = ANY($1)`, existing(logouts, flags)); err != nil {
			return err
		}
	}
	if len(unclaim) > 0 {
		if _, err := tx.exec(`DELETE FROM presence_claims WHERE node_id = $1 AND user_id = ANY($2)`, p.node, existing(unclaim, flags)); err != nil {
			return err
		}
	}
	if ids := existing(claim, flags); len(ids) > 0 {
		if _, err := tx.exec(`INSERT INTO presence_claims (user_id, node_id) SELECT unnest($1::int8[]), $2
			ON CONFLICT DO NOTHING`, ids, p.node); err != nil {
			return err
		}
	}
	return p.settle(tx, users, flags)
}

func existing(users []User, flags map[int64]bool) []int64 {
	var ids []int64
	for _, u := range users {
		if _, ok := flags[u.ID]; ok {
			ids = append(ids, u.ID)
		}
	}
	return ids
}

// lock takes users' presence row locks, in id order (two nodes locking
// overlapping sets wait rather than deadlock), creating missing rows, and
// returns their flags; a deleted user has none.
func (p *pgPresence) lock(tx *pgTx, users map[int64]User) (map[int64]bool, error) {
	ids := make([]int64, 0, len(users))
	for id := range users {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if _, err := tx.exec(`INSERT INTO presence (user_id, online, changed_at)
		SELECT id, false, 0 FROM users WHERE id = ANY($1) ORDER BY id ON CONFLICT DO NOTHING`, ids); err != nil {
		return nil, err
	}
	rows, err := tx.query(`SELECT user_id, online FROM presence WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE`, ids)
	if err != nil {
		return nil, err
	}
	flags := map[int64]bool{}
	for rows.Next() {
		var id int64
		var online bool
		if err := rows.Scan(&id, &online); err != nil {
			rows.Close()
			return nil, err
		}
		flags[id] = online
	}
	rows.Close()
	return flags, rows.Err()
}

// settle compares each locked user's flag with whether a live node claims
// them, and where they differ flips the flag and queues the notices: to
// each friend the database holds online (not this node's view, which may
// lag), and, going offline, the drop of the user's own notices.
func (p *pgPresence) settle(tx *pgTx, users map[int64]User, flags map[int64]bool) error {
	ids := make([]int64, 0, len(flags))
	for id := range flags {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.query(`SELECT DISTINCT c.user_id FROM presence_claims c JOIN presence_nodes n ON n.node_id = c.node_id
		WHERE c.user_id = ANY($1) AND n.seen_at > `+pgNowMs+` - $2`, ids, p.grace.Milliseconds())
	if err != nil {
		return err
	}
	live := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		live[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var changed []int64
	var to []bool
	for _, id := range ids {
		if live[id] != flags[id] {
			changed = append(changed, id)
			to = append(to, live[id])
		}
	}
	if len(changed) == 0 {
		return nil
	}
	if _, err := tx.exec(`UPDATE presence p SET online = v.o, changed_at = `+pgNowMs+`
		FROM unnest($1::int8[], $2::bool[]) AS v(u, o) WHERE p.user_id = v.u`, changed, to); err != nil {
		return err
	}
	for i, id := range changed {
		u, online := users[id], to[i]
		if u.ID == 0 {
			if err := tx.queryRow(`SELECT id, username, display_name FROM users WHERE id = $1`, id).Scan(&u.ID, &u.Username, &u.DisplayName); err != nil {
				return err
			}
		}
		friends, err := p.onlineFriends(tx, id)
		if err != nil {
			return err
		}
		for _, f := range friends {
			if err := tx.addNotice(f, kindPresence, u.jsonWithPresence(online)); err != nil {
				return err
			}
		}
		if !online {
			if err := tx.dropNotices(id); err != nil {
				return err
			}
		}
	}
	tx.onCommit(func() {
		p.viewMu.Lock()
		defer p.viewMu.Unlock()
		for i, id := range changed {
			p.setViewLocked(id, to[i])
		}
	})
	return nil
}

func (p *pgPresence) onlineFriends(tx *pgTx, user int64) ([]int64, error) {
	rows, err := tx.query(`SELECT f.friend_id FROM friendships f JOIN presence p ON p.user_id = f.friend_id
		WHERE f.user_id = $1 AND p.online ORDER BY f.friend_id`, user)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

func (p *pgPresence) setViewLocked(id int64, online bool) {
	if online {
		p.online[id] = true
	} else {
		delete(p.online, id)
	}
}

// pgPresenceRow is a presence row read by a refresh, with whether this node
// still claims the user.
type pgPresenceRow struct {
	user      int64
	online    bool
	changedAt int64
	mine      bool
}

// beat writes the heartbeat, sweeps the nodes whose heartbeat is older than
// the grace (announcing the users they leave with no claim), and refreshes
// the view from the rows changed since the last beat.
func (p *pgPresence) beat() {
	p.viewMu.RLock()
	since := p.since
	p.viewMu.RUnlock()
	var changed []pgPresenceRow
	err := p.s.do(func(tx *pgTx) error {
		changed = changed[:0]
		if _, err := tx.exec(`INSERT INTO presence_nodes (node_id, seen_at) VALUES ($1, `+pgNowMs+`)
			ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at`, p.node); err != nil {
			return err
		}
		if err := p.sweep(tx); err != nil {
			return err
		}
		from := int64(0)
		if since > 0 {
			from = since - pgPresenceOverlap.Milliseconds()
		}
		rows, err := tx.query(`SELECT p.user_id, p.online, p.changed_at, c.user_id IS NOT NULL
			FROM presence p LEFT JOIN presence_claims c ON c.user_id = p.user_id AND c.node_id = $1
			WHERE p.changed_at > $2`, p.node, from)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r pgPresenceRow
			if err := rows.Scan(&r.user, &r.online, &r.changedAt, &r.mine); err != nil {
				rows.Close()
				return err
			}
			changed = append(changed, r)
		}
		rows.Close()
		return rows.Err()
	})
	if err != nil {
		p.warn("heartbeat failed", err)
		return
	}
	p.viewMu.Lock()
	for _, r := range changed {
		p.setViewLocked(r.user, r.online)
		p.since = max(p.since, r.changedAt)
	}
	p.viewMu.Unlock()
	// A claim this node holds in memory but not in the database was ended
	// elsewhere (a logout, or this node swept after stalling): stop
	// claiming, so the user's next poll here claims again. A claim waiting
	// to be written is not stale, only late.
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range changed {
		st := p.users[r.user]
		if _, pending := p.dirty[r.user]; st == nil || !st.claimed || r.mine || pending {
			continue
		}
		st.claimed = false
		st.offlineAt = time.Time{}
		p.forgetIfIdleLocked(st)
	}
}

// sweep deletes the nodes that missed their heartbeats for the grace, with
// their claims, and settles the users those claims held.
func (p *pgPresence) sweep(tx *pgTx) error {
	rows, err := tx.query(`SELECT node_id FROM presence_nodes WHERE seen_at < `+pgNowMs+` - $1 AND node_id <> $2
		FOR UPDATE SKIP LOCKED`, p.grace.Milliseconds(), p.node)
	if err != nil {
		return err
	}
	dead, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(dead) == 0 {
		return err
	}
	rows, err = tx.query(`SELECT DISTINCT user_id FROM presence_claims WHERE node_id = ANY($1)`, dead)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	users := map[int64]User{}
	for _, id := range ids {
		users[id] = User{}
	}
	flags, err := p.lock(tx, users)
	if err != nil {
		return err
	}
	if _, err := tx.exec(`DELETE FROM presence_claims WHERE node_id = ANY($1)`, dead); err != nil {
		return err
	}
	if _, err := tx.exec(`DELETE FROM presence_nodes WHERE node_id = ANY($1)`, dead); err != nil {
		return err
	}
	p.s.log.Info("presence: swept nodes that stopped beating", "nodes", len(dead), "users", len(ids))
	return p.settle(tx, users, flags)
}
