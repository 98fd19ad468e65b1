package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"
)

// pgSend is one SendMessage as the writer runs it: a batch's sends are
// decided together, by a few statements for all of them.
type pgSend struct {
	sender          User
	to, body, cid   string
	file            *newFile
	msg             Message
	created         bool
	alias           *pgOp // an earlier send of the batch with the same client_msg_id
	recipient       User
	exists, friends bool
	blocked         bool
}

func (sd *pgSend) reset() {
	sd.msg, sd.created, sd.alias, sd.recipient = Message{}, false, nil, User{}
	sd.exists, sd.friends, sd.blocked = false, false, false
}

// pgClean is one Clean: user's events up to upto.
type pgClean struct {
	user, upto, removed int64
}

// pgMessageRows are the messages (and their file rows) a batch's sends
// insert, as the columns of one unnest each.
type pgMessageRows struct {
	id, sender, recipient, sentAt, fileID []int64
	from, to                              []string
	body, cid                             [][]byte

	fileIDs, fileSize, fileAt       []int64
	fileStorage, fileName, fileType []string
}

func (m *pgMessageRows) len() int { return len(m.id) }

func (m *pgMessageRows) queue(b *pgx.Batch) {
	if len(m.fileIDs) > 0 {
		b.Queue(`INSERT INTO files (id, storage_name, name, size, content_type, created_at)
			SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[])`,
			m.fileIDs, m.fileStorage, m.fileName, m.fileSize, m.fileType, m.fileAt)
	}
	if len(m.id) > 0 {
		// No ON CONFLICT: a client_msg_id that another process stored since
		// this batch looked fails the batch (23505), which then runs again
		// and finds it. Of concurrent repeats the unique index lets exactly
		// one in.
		b.Queue(`INSERT INTO messages (id, sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs)
			SELECT i, s, r, f, t, b, a, nullif(c, ''::bytea), nullif(fi, 0), 2
			FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::bytea[], $7::int8[], $8::bytea[], $9::int8[])
				AS v(i, s, r, f, t, b, a, c, fi)`,
			m.id, m.sender, m.recipient, m.from, m.to, m.body, m.sentAt, m.cid, m.fileID)
	}
}

// SendMessage stores body from sender to the user named to, in the
// recipient's queue and in the sender's own, and returns once that is durable.
// created is false when clientMsgID repeats an earlier send, which is then
// returned instead and nothing is stored.
func (s *pgStore) SendMessage(ctx context.Context, sender User, to, body, clientMsgID string, file *newFile) (Message, bool, error) {
	if !pgText(to) {
		return Message{}, false, errNoSuchUser
	}
	sd := &pgSend{sender: sender, to: to, body: body, cid: clientMsgID, file: file}
	err := s.wait(&pgOp{send: sd, done: make(chan struct{})})
	return sd.msg, sd.created, err
}

// Clean deletes every event of user's queue with seq <= upto, and the
// messages (and files) no queue holds any more.
func (s *pgStore) Clean(ctx context.Context, user, upto int64) (int64, error) {
	c := &pgClean{user: user, upto: upto}
	err := s.wait(&pgOp{clean: c, done: make(chan struct{})})
	return c.removed, err
}

type senderCID struct {
	sender int64
	cid    string
}

const pgLookupRecipients = `SELECT p.i, coalesce(u.id, 0), coalesce(u.display_name, ''),
		EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = p.s AND f.friend_id = u.id),
		EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker_id = p.s AND b.blocked_id = u.id)
			OR (b.blocker_id = u.id AND b.blocked_id = p.s))
	FROM unnest($1::int8[], $2::text[]) WITH ORDINALITY AS p(s, name, i)
	LEFT JOIN users u ON u.username = p.name`

// The clean of several users at once: their events go, each message loses
// one reference per queue row that held it, and each user's count of
// removed messages comes back. The queue rows are found by the primary key
// (user_id = ANY), never by a hash join over a scan of the table, which
// between vacuums is mostly dead rows. A message whose last reference goes is
// deleted here, with its file and the file's bytes (chunks cascade), rather
// than updated to refs 0 and released by another statement: an update of
// messages is never HOT (refs is in messages_unreferenced's predicate), so
// each one writes a tuple and an entry in every index, the unique one with
// its check included. The message rows are locked first, in id order: under
// the lock held shows their refs as committed by any other writer (whose
// clean of the message's other copy this one waited for), and the update and
// the delete, which see the rows as of the statement's start, act on the
// newest version of each (READ COMMITTED rechecks a row changed since).
const pgCleanQueues = `WITH c AS (SELECT * FROM unnest($1::int8[], $2::int8[]) AS c(u, upto)),
	gone AS (DELETE FROM queue q WHERE q.user_id = ANY($1::int8[])
			AND q.seq <= ($2::int8[])[array_position($1::int8[], q.user_id)]
		RETURNING q.user_id, q.kind, q.message_id),
	rel AS (SELECT message_id, count(*) AS n FROM gone WHERE kind = 1 GROUP BY message_id),
	held AS (SELECT m.id, m.refs - rel.n AS refs FROM messages m JOIN rel ON m.id = rel.message_id
		ORDER BY m.id FOR UPDATE OF m),
	upd AS (UPDATE messages m SET refs = held.refs FROM held WHERE m.id = held.id AND held.refs > 0 RETURNING 1),
	m AS (DELETE FROM messages m USING held WHERE m.id = held.id AND held.refs <= 0 RETURNING m.file_id),
	f AS (DELETE FROM files USING m WHERE files.id = m.file_id RETURNING files.storage_name),
	b AS (DELETE FROM blobs USING f WHERE blobs.storage_name = f.storage_name RETURNING 1),
	per AS (SELECT user_id, count(*) AS n FROM gone WHERE kind = 1 GROUP BY user_id)
	SELECT c.u, coalesce(per.n, 0) FROM c LEFT JOIN per ON per.user_id = c.u`

// runGroup runs the batch's cleans, then its sends. One pipelined round trip
// locks every cursor concerned, looks up recipients with their relations to
// the senders, finds repeated client_msg_ids and runs the cleans; the rows
// are then written by commit's round trip. Refusals are decided in Go
// before anything of the send is written.
func (tx *pgTx) runGroup() error {
	s := tx.s
	b := &pgx.Batch{}
	if tx.rows.len() > 0 {
		// Notices of earlier ops go in first: a clean must see them.
		tx.rows.queue(b)
		tx.rows = pgQueueRows{}
	}

	var lock []int64
	want := func(id int64) {
		if id != 0 && tx.cur[id] == nil && !slices.Contains(lock, id) {
			lock = append(lock, id)
		}
	}
	var senders []int64
	var names []string
	var cids []senderCID
	files := 0
	for _, op := range tx.sends {
		sd := op.send
		want(sd.sender.ID)
		want(s.users[sd.to].ID)
		senders = append(senders, sd.sender.ID)
		names = append(names, sd.to)
		if sd.cid != "" {
			cids = append(cids, senderCID{sd.sender.ID, sd.cid})
		}
		if sd.file != nil {
			files++
		}
	}
	for _, op := range tx.cleans {
		want(op.clean.user)
	}
	slices.Sort(lock)
	if len(lock) > 0 {
		b.Queue(pgLockCursors, lock).Query(func(rows pgx.Rows) error { return tx.scanLocked(rows, lock) })
	}
	if len(tx.sends) > 0 {
		b.Queue(pgLookupRecipients, senders, names).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var i int
				var u User
				var friends, blocked bool
				if err := rows.Scan(&i, &u.ID, &u.DisplayName, &friends, &blocked); err != nil {
					return err
				}
				sd := tx.sends[i-1].send
				u.Username = sd.to
				sd.recipient, sd.exists, sd.friends, sd.blocked = u, u.ID != 0, friends, blocked
			}
			return rows.Err()
		})
	}
	priors := map[senderCID]Message{}
	if len(cids) > 0 {
		ss, cs := make([]int64, len(cids)), make([][]byte, len(cids))
		for i, k := range cids {
			ss[i], cs[i] = k.sender, []byte(k.cid)
		}
		// One probe of the unique index per key (LATERAL): as a join the
		// planner may hash a scan of the whole table, dead rows included.
		b.Queue(pgLookupCIDs, ss, cs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var sender int64
				m, err := pgScanMessage(rows, &sender)
				if err != nil {
					return err
				}
				priors[senderCID{sender, m.ClientMsgID}] = m
			}
			return rows.Err()
		})
	}
	var ids, fileIDs []int64
	if len(tx.sends) > 0 {
		// Ids are taken from the sequences up front, so the inserts need no
		// RETURNING to be matched with their sends.
		b.Queue(`SELECT nextval('messages_id_seq') FROM generate_series(1, $1)`, len(tx.sends)).Query(func(rows pgx.Rows) error {
			var err error
			ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			return err
		})
	}
	if files > 0 {
		b.Queue(`SELECT nextval('files_id_seq') FROM generate_series(1, $1)`, files).Query(func(rows pgx.Rows) error {
			var err error
			fileIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			return err
		})
	}
	// Cleans of one user twice in a batch go in separate statements: one
	// statement could not tell their counts apart.
	for rest := tx.cleans; len(rest) > 0; {
		var round, later []*pgOp
		var us, upto []int64
		for _, op := range rest {
			if slices.Contains(us, op.clean.user) {
				later = append(later, op)
				continue
			}
			round = append(round, op)
			us = append(us, op.clean.user)
			upto = append(upto, op.clean.upto)
		}
		b.Queue(pgCleanQueues, us, upto).Query(func(rows pgx.Rows) error {
			removed := map[int64]int64{}
			for rows.Next() {
				var u, n int64
				if err := rows.Scan(&u, &n); err != nil {
					return err
				}
				removed[u] = n
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for _, op := range round {
				op.clean.removed = removed[op.clean.user]
			}
			return nil
		})
		rest = later
	}
	tx.beginIn(b)
	if err := tx.conn.SendBatch(tx.ctx, b).Close(); err != nil {
		return err
	}

	for _, op := range tx.cleans {
		cl := op.clean
		c := tx.cur[cl.user]
		if c == nil || c.missing {
			op.err = errNoSuchUser
			continue
		}
		c.queued -= cl.removed
		c.acked = max(c.acked, min(cl.upto, c.lastSeq))
		c.dirty = true
		tx.queuedDelta -= cl.removed
	}

	// Recipients the name cache did not know (or knew wrong) are locked now.
	lock = lock[:0]
	for _, op := range tx.sends {
		if sd := op.send; sd.exists {
			want(sd.recipient.ID)
			s.users[sd.to] = sd.recipient
		}
	}
	if len(lock) > 0 {
		slices.Sort(lock)
		rows, err := tx.conn.Query(tx.ctx, pgLockCursors, lock)
		if err != nil {
			return err
		}
		if err := tx.scanLocked(rows, lock); err != nil {
			return err
		}
	}

	at := unixMilli(tx.now)
	sentAt := apiTime(fromMilli(at))
	creating := map[senderCID]*pgOp{}
	for i, op := range tx.sends {
		sd := op.send
		key := senderCID{sd.sender.ID, sd.cid}
		if sd.cid != "" {
			if prior, ok := priors[key]; ok {
				sd.msg = prior
				continue
			}
			if first := creating[key]; first != nil {
				sd.alias = first
				continue
			}
		}
		r := sd.recipient
		rc, sc := tx.cur[r.ID], tx.cur[sd.sender.ID]
		switch {
		case !sd.exists:
			op.err = errNoSuchUser
		case r.ID == sd.sender.ID:
			op.err = errMessageSelf
		case sd.blocked:
			op.err = errBlocked
		case !sd.friends:
			op.err = errNotFriends
		case rc == nil || rc.missing || sc == nil || sc.missing:
			op.err = errNoSuchUser
		case rc.queued >= int64(s.maxQueue):
			op.err = errQueueFull
		}
		if op.err != nil {
			continue
		}
		id := ids[i]
		m := &tx.msgs
		m.id = append(m.id, id)
		m.sender = append(m.sender, sd.sender.ID)
		m.recipient = append(m.recipient, r.ID)
		m.from = append(m.from, sd.sender.Username)
		m.to = append(m.to, r.Username)
		m.body = append(m.body, []byte(sd.body))
		m.sentAt = append(m.sentAt, at)
		m.cid = append(m.cid, []byte(sd.cid))
		var fileID int64
		if f := sd.file; f != nil {
			fileID, fileIDs = fileIDs[0], fileIDs[1:]
			m.fileIDs = append(m.fileIDs, fileID)
			m.fileStorage = append(m.fileStorage, f.StorageName)
			m.fileName = append(m.fileName, f.Name)
			m.fileSize = append(m.fileSize, f.Size)
			m.fileType = append(m.fileType, f.ContentType)
			m.fileAt = append(m.fileAt, at)
		}
		m.fileID = append(m.fileID, fileID)
		rc.lastSeq++
		sc.lastSeq++
		rc.queued++
		sc.queued++
		rc.dirty, sc.dirty = true, true
		tx.rows.addMessage(r.ID, rc.lastSeq, id, at, sd.sender.ID, false)
		tx.rows.addMessage(sd.sender.ID, sc.lastSeq, id, at, r.ID, true)
		tx.queuedDelta += 2
		// The sender's session has the message from the 201; its own copy
		// waits for that session's next poll answer (API.md allows it).
		tx.wakeUser(r.ID)
		sd.msg = Message{ID: id, From: sd.sender.Username, To: r.Username, Body: sd.body, SentAt: sentAt, ClientMsgID: sd.cid}
		if f := sd.file; f != nil {
			sd.msg.File = &FileInfo{ID: fileID, Name: f.Name, Size: f.Size, ContentType: f.ContentType, URL: fileURL(fileID)}
		}
		sd.created = true
		if sd.cid != "" {
			creating[key] = op
		}
	}
	for _, op := range tx.sends {
		if first := op.send.alias; first != nil {
			op.send.msg, op.err = first.send.msg, first.err
		}
	}
	return nil
}

const pgLookupCIDs = `SELECT m.* FROM unnest($1::int8[], $2::bytea[]) AS k(s, c),
	LATERAL (` + pgMessageSelect + ` WHERE m.sender_id = k.s AND m.client_msg_id = k.c AND m.client_msg_id IS NOT NULL) AS m`

const pgMessageSelect = `SELECT m.sender_id, m.id, m.from_name, m.to_name, coalesce(m.group_id, 0), m.body, m.sent_at, coalesce(m.client_msg_id, ''::bytea),
	f.id, f.name, f.size, f.content_type
	FROM messages m LEFT JOIN files f ON f.id = m.file_id`

func pgScanMessage(row pgx.Row, sender *int64) (Message, error) {
	var m Message
	var sentAt int64
	var body, cid []byte
	var fid, fsize *int64
	var fname, ftype *string
	if err := row.Scan(sender, &m.ID, &m.From, &m.To, &m.Group, &body, &sentAt, &cid, &fid, &fname, &fsize, &ftype); err != nil {
		return m, err
	}
	m.Body, m.ClientMsgID = string(body), string(cid)
	m.SentAt = apiTime(fromMilli(sentAt))
	if fid != nil {
		m.File = &FileInfo{ID: *fid, Name: *fname, Size: *fsize, ContentType: *ftype, URL: fileURL(*fid)}
	}
	return m, nil
}

// addNotice appends a transient event about who to user's queue. A user
// gone meanwhile (deleted by another process) gets nothing.
func (tx *pgTx) addNotice(user int64, kind int, who userJSON) error {
	c, err := tx.cursor(user)
	if errors.Is(err, errNoSuchUser) {
		return nil
	}
	if err != nil {
		return err
	}
	payload, err := json.Marshal(noticePayload{User: who})
	if err != nil {
		return err
	}
	c.lastSeq++
	c.dirty = true
	tx.rows.add(user, c.lastSeq, int16(kind), 0, string(payload), unixMilli(tx.now))
	tx.wakeUser(user)
	return nil
}

// notify queues a notice about me for other, if other is online to get it.
func (tx *pgTx) notify(other int64, kind int, me userJSON) error {
	if !tx.s.isOnline(other) {
		return nil
	}
	return tx.addNotice(other, kind, me)
}

// dropNotices removes user's transient events, those still waiting to be
// inserted included.
func (tx *pgTx) dropNotices(user int64) error {
	tx.rows.filter(func(i int) bool { return tx.rows.user[i] != user || tx.rows.kind[i] == kindMessage })
	_, err := tx.exec(`DELETE FROM queue WHERE user_id = $1 AND kind <> $2`, user, kindMessage)
	tx.onCommit(func() { tx.s.ephemeral.drop(user) })
	return err
}

// RecentEvents never answers from memory on PostgreSQL: the in-memory tails
// of the SQLite engine are right only because its one writer sees every
// queue change, while here other processes (admin commands, other nodes)
// write the queues too. Polls read the database.
func (s *pgStore) RecentEvents(user, cursor int64, limit int) ([]Event, bool) { return nil, false }

// RequestTail does nothing, for the same reason.
func (s *pgStore) RequestTail(user int64) {}

// EventsAfter returns up to limit events of user's queue with seq > cursor,
// oldest first.
func (s *pgStore) EventsAfter(ctx context.Context, user, cursor int64, limit int) ([]Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT q.seq, q.kind, q.at, q.payload,
		m.id, m.from_name, m.to_name, m.group_id, m.body, m.sent_at, m.client_msg_id, f.id, f.name, f.size, f.content_type
		FROM queue q
		LEFT JOIN messages m ON m.id = q.message_id
		LEFT JOIN files f ON f.id = m.file_id
		WHERE q.user_id = $1 AND q.seq > $2
		ORDER BY q.seq LIMIT $3`, user, cursor, limit)
	if err != nil {
		return nil, s.interpretError(err)
	}
	defer rows.Close()
	events := []Event{}
	for rows.Next() {
		var e Event
		var kind int16
		var at int64
		var payload, from, to, fname, ftype *string
		var body, cid []byte
		var mid, gid, sentAt, fid, fsize *int64
		if err := rows.Scan(&e.Seq, &kind, &at, &payload, &mid, &from, &to, &gid, &body, &sentAt, &cid, &fid, &fname, &fsize, &ftype); err != nil {
			return nil, s.interpretError(err)
		}
		e.Type = kindNames[int(kind)]
		e.At = apiTime(fromMilli(at))
		if kind == kindMessage {
			if mid == nil {
				continue // cannot happen: refs keep the message while a queue row holds it
			}
			m := &Message{ID: *mid, From: *from, To: *to, Body: string(body), SentAt: apiTime(fromMilli(*sentAt)), ClientMsgID: string(cid)}
			if gid != nil {
				m.Group = *gid
			}
			if fid != nil {
				m.File = &FileInfo{ID: *fid, Name: *fname, Size: *fsize, ContentType: *ftype, URL: fileURL(*fid)}
			}
			e.Message = m
		} else if payload != nil {
			var p groupNoticePayload
			if err := json.Unmarshal([]byte(*payload), &p); err != nil {
				return nil, err
			}
			e.User, e.Group, e.Upto = p.User, p.Group, p.Upto
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.interpretError(err)
	}
	// Typing events are in memory only (postgres_groups.go): with the page
	// not full every stored event after cursor is in it, so they fit in by
	// seq.
	if len(events) < limit {
		if eph := s.ephemeral.take(user, cursor); len(eph) > 0 {
			events = append(events, eph...)
			slices.SortFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
			events = events[:min(len(events), limit)]
		}
	}
	return events, nil
}

// LastSeq is the highest seq handed out in user's queue.
func (s *pgStore) LastSeq(ctx context.Context, user int64) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT last_seq FROM cursors WHERE user_id = $1`, user).Scan(&seq)
	return seq, s.readErr(err, errNoSuchUser)
}

// QueuedMessages is this process's gauge of uncleaned messages: moved by its
// own commits and read again from the database every pgQueuedRefresh.
func (s *pgStore) QueuedMessages() int64 { return s.queued.Load() }

// PresenceChanged queues u's presence notices for their online friends and,
// for a user gone offline, the drop of their own notices.
func (s *pgStore) PresenceChanged(u User, online bool) {
	s.goDo(func(tx *pgTx) error {
		friends, err := tx.friendIDs(u.ID)
		if err != nil {
			return err
		}
		for _, f := range friends {
			if err := tx.notify(f, kindPresence, u.jsonWithPresence(online)); err != nil {
				return err
			}
		}
		if !online {
			return tx.dropNotices(u.ID)
		}
		return nil
	})
}
