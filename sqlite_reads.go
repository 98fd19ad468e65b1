package main

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"strings"
)

// Read markers, conversations and typing on SQLite.

// MarkRead moves me's read marker forward to upto and, when it moved, tells
// the other user (or the other members) who are online.
func (s *sqliteStore) MarkRead(ctx context.Context, me User, with string, gid, upto int64) error {
	// Lean: every refusal comes before the one write.
	return s.doLean(ctx, func(tx *writeTx) error {
		if gid != 0 {
			ms, err := tx.memberOf(gid, me.ID)
			if err != nil {
				return err
			}
			if upto <= 0 {
				return nil // 0 is every marker's start
			}
			res, err := tx.exec(`UPDATE group_members SET read_upto = ?1 WHERE group_id = ?2 AND user_id = ?3 AND read_upto < ?1`,
				upto, gid, me.ID)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return err
			}
			for _, id := range others(ms, me.ID) {
				if err := tx.readNotice(me, id, gid, upto); err != nil {
					return err
				}
			}
			return nil
		}
		peer, err := tx.cachedUser(with)
		if err != nil {
			return err
		}
		if peer.ID == me.ID {
			return errMessageSelf
		}
		if upto <= 0 {
			return nil
		}
		res, err := tx.exec(`INSERT INTO read_markers (user_id, peer_id, upto) VALUES (?, ?, ?)
			ON CONFLICT (user_id, peer_id) DO UPDATE SET upto = excluded.upto WHERE excluded.upto > read_markers.upto`,
			me.ID, peer.ID, upto)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return tx.readNotice(me, peer.ID, 0, upto)
	})
}

// readNotice tells to, if online, that me has read up to upto. A user
// blocked either way learns nothing of the other's reading; presence is
// shown only between friends, as everywhere.
func (tx *writeTx) readNotice(me User, to, gid, upto int64) error {
	if !tx.s.isOnline(to) {
		return nil
	}
	rel := tx.mayMessage(me.ID, to)
	if rel != nil && !isClientError(rel) {
		return rel
	}
	if errors.Is(rel, errBlocked) && gid == 0 {
		return nil
	}
	who := me.json()
	if rel == nil {
		who = me.jsonWithPresence(tx.s.isOnline(me.ID))
	}
	p := groupNoticePayload{Upto: &upto}
	var err error
	if p.User, err = marshalRaw(who); err != nil {
		return err
	}
	if gid != 0 {
		p.Group = groupIDJSON(gid)
	}
	return tx.addPayloadNotice(to, kindRead, p)
}

// Conversations lists me's conversations: each friend with a message in
// me's queue and each of me's groups, the newest message first. Each
// figure is an index seek or a count of the index entries above me's
// marker (queue_conv), so the cost grows with the conversations and the
// unread messages, not with the queue.
func (s *sqliteStore) Conversations(ctx context.Context, me int64) ([]Conversation, error) {
	var convs []Conversation
	var lastIDs []int64
	rows, err := s.read.QueryContext(ctx, `SELECT u.id, u.username, u.display_name, c.last, c.mine, c.theirs,
			(SELECT count(*) FROM queue q WHERE q.user_id = ?1 AND q.kind = 1 AND q.conv = c.peer
				AND q.message_id > c.mine AND q.own = 0)
		FROM (SELECT f.friend_id AS peer,
				(SELECT max(q.message_id) FROM queue q WHERE q.user_id = ?1 AND q.kind = 1 AND q.conv = f.friend_id) AS last,
				coalesce((SELECT r.upto FROM read_markers r WHERE r.user_id = ?1 AND r.peer_id = f.friend_id), 0) AS mine,
				coalesce((SELECT r.upto FROM read_markers r WHERE r.user_id = f.friend_id AND r.peer_id = ?1), 0) AS theirs
			FROM friendships f WHERE f.user_id = ?1) c
		JOIN users u ON u.id = c.peer
		WHERE c.last IS NOT NULL`, me)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c Conversation
		var peer User
		var last int64
		if err := rows.Scan(&peer.ID, &peer.Username, &peer.DisplayName, &last, &c.ReadUpto, &c.PeerReadUpto, &c.Unread); err != nil {
			rows.Close()
			return nil, err
		}
		c.Peer = &peer
		c.LastMessage = &Message{ID: last}
		convs = append(convs, c)
		lastIDs = append(lastIDs, last)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = s.read.QueryContext(ctx, `SELECT g.id, g.name, c.last, c.mine,
			(SELECT count(*) FROM queue q WHERE q.user_id = ?1 AND q.kind = 1 AND q.conv = -c.gid
				AND q.message_id > c.mine AND q.own = 0)
		FROM (SELECT gm.group_id AS gid, gm.read_upto AS mine,
				(SELECT max(q.message_id) FROM queue q WHERE q.user_id = ?1 AND q.kind = 1 AND q.conv = -gm.group_id) AS last
			FROM group_members gm WHERE gm.user_id = ?1) c
		JOIN groups g ON g.id = c.gid`, me)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c Conversation
		var g groupRef
		var last sql.NullInt64
		if err := rows.Scan(&g.ID, &g.Name, &last, &c.ReadUpto, &c.Unread); err != nil {
			rows.Close()
			return nil, err
		}
		c.Group = &g
		if last.Valid {
			c.LastMessage = &Message{ID: last.Int64}
			lastIDs = append(lastIDs, last.Int64)
		}
		convs = append(convs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	msgs := map[int64]Message{}
	for start := 0; start < len(lastIDs); start += 500 {
		ids := lastIDs[start:min(start+500, len(lastIDs))]
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		rows, err := s.read.QueryContext(ctx, messageSelect+` WHERE m.id IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			msgs[m.ID] = m
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	out := convs[:0]
	for _, c := range convs {
		if c.LastMessage != nil {
			m, ok := msgs[c.LastMessage.ID]
			if !ok {
				if c.Group == nil {
					continue // cleaned meanwhile: no message left with them
				}
				c.LastMessage = nil
			} else {
				c.LastMessage = &m
			}
		}
		out = append(out, c)
	}
	sortConversations(out)
	return out, nil
}

// sortConversations puts the newest message first; groups without one
// follow, the newest group first.
func sortConversations(cs []Conversation) {
	key := func(c Conversation) (int64, int64) {
		if c.LastMessage != nil {
			return 1, c.LastMessage.ID
		}
		return 0, c.Group.ID
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a1, a2 := key(cs[i])
		b1, b2 := key(cs[j])
		if a1 != b1 {
			return a1 > b1
		}
		return a2 > b2
	})
}

// TypingRecipients checks, as a send would, that sender may type to the
// user named to or in group gid, and returns who would see it.
func (s *sqliteStore) TypingRecipients(ctx context.Context, sender User, to string, gid int64) ([]Recipient, error) {
	if gid != 0 {
		rows, err := s.read.QueryContext(ctx, `SELECT gm.user_id,
				EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = ?2 AND f.friend_id = gm.user_id)
			FROM group_members gm WHERE gm.group_id = ?1`, gid, sender.ID)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []Recipient
		in := false
		for rows.Next() {
			var r Recipient
			if err := rows.Scan(&r.ID, &r.Friend); err != nil {
				return nil, err
			}
			if r.ID == sender.ID {
				in = true
			} else {
				out = append(out, r)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if !in {
			return nil, errNoSuchGroup
		}
		return out, nil
	}
	var id int64
	var friends, blocked bool
	err := s.read.QueryRowContext(ctx, `SELECT u.id,
		EXISTS (SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = u.id),
		EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = ?1 AND blocked_id = u.id) OR (blocker_id = u.id AND blocked_id = ?1))
		FROM users u WHERE u.username = ?2`, sender.ID, to).Scan(&id, &friends, &blocked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, errNoSuchUser
	case err != nil:
		return nil, err
	case id == sender.ID:
		return nil, errMessageSelf
	case blocked:
		return nil, errBlocked
	case !friends:
		return nil, errNotFriends
	}
	return []Recipient{{ID: id, Friend: true}}, nil
}
