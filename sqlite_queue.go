package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
)

// SendMessage stores body from sender to the user named to, in the
// recipient's queue and in the sender's own, and returns once that is durable.
// created is false when clientMsgID repeats an earlier send, which is then
// returned instead and nothing is stored.
func (s *sqliteStore) SendMessage(ctx context.Context, sender User, to, body, clientMsgID string, file *newFile) (msg Message, created bool, err error) {
	// A text send is lean (no savepoint): every refusal below comes before
	// its first write. A file send writes its file row first, so it is not.
	run := s.doLean
	if file != nil {
		run = s.do
	}
	err = run(ctx, func(tx *writeTx) error {
		// A refused send may be the retry of one that was stored: then the
		// stored one is the answer.
		priorOr := func(refusal error) error {
			if clientMsgID == "" {
				return refusal
			}
			prior, found, err := tx.messageByClientID(sender.ID, clientMsgID)
			if err != nil {
				return err
			}
			if found {
				msg = prior
				return nil
			}
			return refusal
		}
		if file != nil && clientMsgID != "" {
			prior, found, err := tx.messageByClientID(sender.ID, clientMsgID)
			if err != nil || found {
				msg = prior
				return err
			}
		}
		recipient, err := tx.cachedUser(to)
		if err != nil {
			return priorOr(err)
		}
		if recipient.ID == sender.ID {
			return priorOr(errMessageSelf)
		}
		if err := tx.mayMessage(sender.ID, recipient.ID); err != nil {
			return priorOr(err)
		}
		rc, err := tx.cursor(recipient.ID)
		if err != nil {
			return err
		}
		if rc.queued >= int64(tx.s.maxQueue) {
			return priorOr(errQueueFull)
		}
		sc, err := tx.cursor(sender.ID)
		if err != nil {
			return err
		}
		var fileID sql.NullInt64
		if file != nil {
			err := tx.queryRow(`INSERT INTO files (storage_name, name, size, content_type, created_at)
				VALUES (?, ?, ?, ?, ?) RETURNING id`,
				file.StorageName, file.Name, file.Size, file.ContentType, unixMilli(tx.now)).Scan(&fileID)
			if err != nil {
				return err
			}
		}
		var cid sql.NullString
		if clientMsgID != "" {
			cid = sql.NullString{String: clientMsgID, Valid: true}
		}
		sentAt := unixMilli(tx.now)
		// The unique index on (sender_id, client_msg_id) decides a repeat:
		// on conflict nothing is inserted and no row comes back. OR FAIL
		// (here and below) spares SQLite a statement journal, a copy of
		// every page the statement touches: any failure fails the op, and
		// its savepoint or the batch's rollback undoes it whole anyway.
		id, err := tx.nextMessageID()
		if err != nil {
			return err
		}
		res, err := tx.exec(`INSERT OR FAIL INTO messages
			(id, sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 2)
			ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING`,
			id, sender.ID, recipient.ID, sender.Username, recipient.Username, body, sentAt, cid, fileID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return err
			}
			return priorOr(errors.New("client_msg_id conflict but no prior message"))
		}
		tx.cache.lastMessageID, msg.ID = id, id
		recipientSeq, senderSeq := tx.nextSeq(rc), tx.nextSeq(sc)
		if _, err := tx.exec(`INSERT OR FAIL INTO queue (user_id, seq, kind, message_id, at, conv, own) VALUES (?, ?, ?, ?, ?, ?, 0), (?, ?, ?, ?, ?, ?, 1)`,
			recipient.ID, recipientSeq, kindMessage, msg.ID, sentAt, sender.ID,
			sender.ID, senderSeq, kindMessage, msg.ID, sentAt, recipient.ID); err != nil {
			return err
		}
		rc.queued++
		sc.queued++
		tx.queuedDelta += 2
		// Only the recipient's poll wakes: the sender's session has the
		// message from the 201 answer, so its copy waits for that session's
		// next poll answer (API.md allows this; it halves the poll answers
		// a message costs).
		tx.wakeUser(recipient.ID)
		msg.From, msg.To, msg.Body, msg.SentAt = sender.Username, recipient.Username, body, apiTime(fromMilli(sentAt))
		msg.ClientMsgID = clientMsgID
		if file != nil {
			msg.File = &FileInfo{ID: fileID.Int64, Name: file.Name, Size: file.Size, ContentType: file.ContentType, URL: fileURL(fileID.Int64)}
		}
		shared := msg // one immutable copy for both tails
		rid, sid := recipient.ID, sender.ID
		tx.tail(func(t *tails) {
			t.add(rid, Event{Seq: recipientSeq, Type: "message", At: shared.SentAt, Message: &shared})
			t.add(sid, Event{Seq: senderSeq, Type: "message", At: shared.SentAt, Message: &shared})
		})
		created = true
		return nil
	})
	return msg, created, err
}

// cursorState is the writer's view of one queue: the last seq handed out and
// how many uncleaned messages it holds (the cap counts them).
type cursorState struct {
	user    int64
	lastSeq int64
	queued  int64
	// stored is the last seq of a stored event, as far as the writer
	// knows; lastSeq is beyond it by the ephemeral events since.
	stored int64
}

// cursor returns user's queue state, reading it once per writer lifetime.
func (tx *writeTx) cursor(user int64) (*cursorState, error) {
	if c := tx.cache.cursors[user]; c != nil {
		return c, nil
	}
	c := &cursorState{user: user}
	err := tx.queryRow(`SELECT max(c.last_seq, coalesce((SELECT max(seq) FROM queue WHERE user_id = ?1), 0)),
		(SELECT count(*) FROM queue WHERE user_id = ?1 AND kind = 1)
		FROM cursors c WHERE c.user_id = ?1`, user).Scan(&c.lastSeq, &c.queued)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoSuchUser
	}
	if err != nil {
		return nil, err
	}
	c.stored = c.lastSeq
	// Seqs given to ephemeral events are in no row (sqlite_ephemeral.go).
	if floor, ok := tx.s.seqFloor[user]; ok {
		c.lastSeq = max(c.lastSeq, floor.seq)
		c.stored = max(c.stored, floor.safe)
	} else if tx.s.seqGap {
		c.lastSeq += seqGapAfterCrash
		c.stored = c.lastSeq
		tx.s.seqFloor[user] = seqFloor{c.lastSeq, c.lastSeq}
	}
	tx.cache.cursors[user] = c
	return c, nil
}

// nextSeq hands out the next seq of c's queue. Should the op fail, its
// touched cursors are dropped from the cache and read again.
func (tx *writeTx) nextSeq(c *cursorState) int64 {
	c.lastSeq++
	c.stored = c.lastSeq
	tx.touched = append(tx.touched, c.user)
	return c.lastSeq
}

// saveLastSeq writes c's last seq to its cursor row, before queue rows that
// may hold it are deleted.
func (tx *writeTx) saveLastSeq(c *cursorState) error {
	_, err := tx.exec(`UPDATE cursors SET last_seq = max(last_seq, ?) WHERE user_id = ?`, c.lastSeq, c.user)
	return err
}

func (tx *writeTx) messageByClientID(sender int64, clientMsgID string) (Message, bool, error) {
	rows, err := tx.query(messageSelect+` WHERE m.sender_id = ? AND m.client_msg_id = ?`, sender, clientMsgID)
	if err != nil {
		return Message{}, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return Message{}, false, rows.Err()
	}
	m, err := scanMessage(rows)
	return m, err == nil, err
}

const messageSelect = `SELECT m.id, m.from_name, m.to_name, coalesce(m.group_id, 0), m.body, m.sent_at, coalesce(m.client_msg_id, ''),
	f.id, f.name, f.size, f.content_type
	FROM messages m LEFT JOIN files f ON f.id = m.file_id`

type scanner interface{ Scan(dest ...any) error }

func scanMessage(row scanner) (Message, error) {
	var m Message
	var sentAt int64
	var fid, fsize sql.NullInt64
	var fname, ftype sql.NullString
	if err := row.Scan(&m.ID, &m.From, &m.To, &m.Group, &m.Body, &sentAt, &m.ClientMsgID, &fid, &fname, &fsize, &ftype); err != nil {
		return m, err
	}
	m.SentAt = apiTime(fromMilli(sentAt))
	if fid.Valid {
		m.File = &FileInfo{ID: fid.Int64, Name: fname.String, Size: fsize.Int64, ContentType: ftype.String, URL: fileURL(fid.Int64)}
	}
	return m, nil
}

// addNotice appends a transient event about who to user's queue.
func (tx *writeTx) addNotice(user int64, kind int, who userJSON) error {
	payload, err := json.Marshal(noticePayload{User: who})
	if err != nil {
		return err
	}
	c, err := tx.cursor(user)
	if err != nil {
		return err
	}
	userJSON, err := json.Marshal(who)
	if err != nil {
		return err
	}
	seq, at := tx.nextSeq(c), unixMilli(tx.now)
	if _, err := tx.exec(`INSERT INTO queue (user_id, seq, kind, payload, at) VALUES (?, ?, ?, ?, ?)`,
		user, seq, kind, string(payload), at); err != nil {
		return err
	}
	e := Event{Seq: seq, Type: kindNames[kind], At: apiTime(fromMilli(at)), User: userJSON}
	tx.tail(func(t *tails) { t.add(user, e) })
	tx.wakeUser(user)
	return nil
}

// dropNotices removes user's transient events, which API.md lets go once the
// user is offline or has logged in anew.
func (tx *writeTx) dropNotices(user int64) error {
	c, err := tx.cursor(user)
	if err != nil {
		return err
	}
	if err := tx.saveLastSeq(c); err != nil {
		return err
	}
	_, err = tx.exec(`DELETE FROM queue WHERE user_id = ? AND kind <> ?`, user, kindMessage)
	tx.tail(func(t *tails) { t.removeNotices(user) })
	return err
}

// forgetTail drops user's in-memory tail (they went offline).
func (tx *writeTx) forgetTail(user int64) { tx.tail(func(t *tails) { t.forget(user) }) }

// RequestTail asks the writer to start keeping user's tail in memory, so
// their caught-up polls stop reading the database. The tail's base is the
// queue's last seq after the commit that makes it: everything up to there
// is in the database, everything after will be added.
func (s *sqliteStore) RequestTail(user int64) {
	if !s.tails.request(user) {
		return
	}
	s.goDo(func(tx *writeTx) error {
		if _, err := tx.cursor(user); err != nil {
			return err
		}
		cache := tx.cache
		tx.tail(func(t *tails) {
			// Read the cursor at apply time: a later op of the batch may
			// have replaced the cached one.
			if c := cache.cursors[user]; c != nil {
				t.create(user, c.lastSeq)
			} else {
				delete(t.pending, user)
			}
		})
		return nil
	})
}

// RecentEvents answers a poll from memory when it can (see tails).
func (s *sqliteStore) RecentEvents(user, cursor int64, limit int) ([]Event, bool) {
	return s.tails.read(user, cursor, limit)
}

// EventsAfter returns up to limit events of user's queue with seq > cursor,
// oldest first.
func (s *sqliteStore) EventsAfter(ctx context.Context, user, cursor int64, limit int) ([]Event, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT q.seq, q.kind, q.at, q.payload,
		m.id, m.from_name, m.to_name, m.group_id, m.body, m.sent_at, m.client_msg_id, f.id, f.name, f.size, f.content_type
		FROM queue q
		LEFT JOIN messages m ON m.id = q.message_id
		LEFT JOIN files f ON f.id = m.file_id
		WHERE q.user_id = ? AND q.seq > ? AND q.acked = 0
		ORDER BY q.seq LIMIT ?`, user, cursor, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	events := []Event{}
	for rows.Next() {
		var e Event
		var kind int
		var at int64
		var payload sql.NullString
		var mid, gid, sentAt, fid, fsize sql.NullInt64
		var from, to, body, cid, fname, ftype sql.NullString
		if err := rows.Scan(&e.Seq, &kind, &at, &payload, &mid, &from, &to, &gid, &body, &sentAt, &cid, &fid, &fname, &fsize, &ftype); err != nil {
			return nil, err
		}
		e.Type = kindNames[kind]
		e.At = apiTime(fromMilli(at))
		if kind == kindMessage {
			if !mid.Valid {
				continue // cannot happen: refs keep the message while a queue row holds it
			}
			m := &Message{ID: mid.Int64, From: from.String, To: to.String, Group: gid.Int64, Body: body.String,
				SentAt: apiTime(fromMilli(sentAt.Int64)), ClientMsgID: cid.String}
			if fid.Valid {
				m.File = &FileInfo{ID: fid.Int64, Name: fname.String, Size: fsize.Int64, ContentType: ftype.String, URL: fileURL(fid.Int64)}
			}
			e.Message = m
		} else if payload.Valid {
			var p groupNoticePayload
			if err := json.Unmarshal([]byte(payload.String), &p); err != nil {
				return nil, err
			}
			e.User, e.Group, e.Upto = p.User, p.Group, p.Upto
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// A poll behind its tail reads here, and would never see a typing
	// event (sqlite_ephemeral.go) that came meanwhile: with the page not
	// full, every stored event after cursor is in it, so the ephemeral
	// ones fit in by seq.
	if len(events) < limit {
		if eph := s.tails.takeEphemeral(user, cursor); len(eph) > 0 {
			events = append(events, eph...)
			slices.SortFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
			events = events[:min(len(events), limit)]
		}
	}
	return events, nil
}

// Clean acknowledges every event of user's queue with seq <= upto and deletes
// it for good, with any message (and file) no other queue still holds. It
// returns how many message events went.
func (s *sqliteStore) Clean(ctx context.Context, user, upto int64) (removed int64, err error) {
	// Lean: Clean refuses nothing, so any error is the storage's and fails
	// the whole batch; a savepoint would only cost two more statements.
	err = s.doLean(ctx, func(tx *writeTx) error {
		c, err := tx.cursor(user)
		if err != nil {
			return err
		}
		// Release the messages (their count is the answer), then delete
		// every event up to upto: the messages and the notices among them.
		// The acknowledgement and the deletion share one transaction, so
		// no row is ever left acked.
		const held = `SELECT message_id FROM queue WHERE user_id = ?1 AND seq <= ?2 AND kind = 1 AND acked = 0`
		if removed, _, err = tx.releaseMessages(held, user, upto); err != nil {
			return err
		}
		if _, err := tx.exec(`DELETE FROM queue WHERE user_id = ? AND seq <= ?`, user, upto); err != nil {
			return err
		}
		// The queue may now be empty: its last seq lives on in the cursor row.
		if _, err := tx.exec(`UPDATE cursors SET last_seq = max(last_seq, ?1), acked_seq = max(acked_seq, min(?2, ?1))
			WHERE user_id = ?3`, c.lastSeq, upto, user); err != nil {
			return err
		}
		c.queued -= removed
		tx.touched = append(tx.touched, user)
		tx.tail(func(t *tails) { t.removeUpTo(user, upto) })
		tx.queuedDelta -= removed
		return nil
	})
	return removed, err
}

// nextMessageID is the id the next message gets: after every id ever given,
// as AUTOINCREMENT would choose (sqlite_sequence keeps the highest, even
// once that message is gone).
func (tx *writeTx) nextMessageID() (int64, error) {
	if tx.cache.lastMessageID == 0 {
		err := tx.queryRow(`SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),
			coalesce((SELECT max(id) FROM messages), 0))`).Scan(&tx.cache.lastMessageID)
		if err != nil {
			return 0, err
		}
	}
	return tx.cache.lastMessageID + 1, nil
}

// releaseMessages drops one reference from each message that the query held
// selects (queue rows about to be deleted: each holds one reference), and
// deletes the messages no queue holds any more, with their files; the bytes
// are unlinked after the commit. It returns how many messages were released
// and how many files went. Messages losing their last reference are deleted
// first, so no row is written just before it goes.
func (tx *writeTx) releaseMessages(held string, args ...any) (released int64, files int, err error) {
	rows, err := tx.query(`DELETE FROM messages WHERE refs <= 1 AND id IN (`+held+`) RETURNING file_id`, args...)
	if err != nil {
		return 0, 0, err
	}
	var fileIDs []int64
	for rows.Next() {
		var id sql.NullInt64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, 0, err
		}
		released++
		if id.Valid {
			fileIDs = append(fileIDs, id.Int64)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	res, err := tx.exec(`UPDATE OR FAIL messages SET refs = refs - 1 WHERE id IN (`+held+`)`, args...)
	if err != nil {
		return 0, 0, err
	}
	kept, err := res.RowsAffected()
	if err != nil {
		return 0, 0, err
	}
	released += kept
	// The messages went first: their rows referenced the files.
	for _, id := range fileIDs {
		var name string
		if err := tx.queryRow(`DELETE FROM files WHERE id = ? RETURNING storage_name`, id).Scan(&name); err != nil {
			return 0, 0, err
		}
		tx.fileGone = append(tx.fileGone, name)
	}
	return released, len(fileIDs), nil
}

// QueuedMessages counts uncleaned message events over all queues.
func (s *sqliteStore) QueuedMessages() int64 { return s.queued.Load() }

// LastSeq is the highest seq handed out in user's queue.
func (s *sqliteStore) LastSeq(ctx context.Context, user int64) (int64, error) {
	var seq int64
	err := s.read.QueryRowContext(ctx, `SELECT max(c.last_seq, coalesce((SELECT max(seq) FROM queue WHERE user_id = ?1), 0))
		FROM cursors c WHERE c.user_id = ?1`, user).Scan(&seq)
	return seq, err
}

// PresenceChanged queues u's presence notices for their online friends and,
// for a user gone offline, the drop of their own notices and tail.
func (s *sqliteStore) PresenceChanged(u User, online bool) {
	s.goDo(func(tx *writeTx) error {
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
			tx.forgetTail(u.ID)
			return tx.dropNotices(u.ID)
		}
		return nil
	})
}
