package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Groups, read markers, conversations and typing on PostgreSQL, the same
// contract as sqlite_groups.go and sqlite_reads.go. Every change is one
// function op of the writer, which refuses (a client error) before its
// first write, as the writer requires; its notices go into the batch's
// queue rows, so a change and its events commit together. Nothing is
// cached across transactions: another process may change a group.

// pgQuerier is what both a writer transaction and the pool offer.
type pgQuerier interface {
	query(q string, args ...any) (pgx.Rows, error)
	queryRow(q string, args ...any) pgx.Row
}

type pgPoolQuerier struct {
	ctx context.Context
	s   *pgStore
}

func (p pgPoolQuerier) query(q string, args ...any) (pgx.Rows, error) {
	return p.s.pool.Query(p.ctx, q, args...)
}

func (p pgPoolQuerier) queryRow(q string, args ...any) pgx.Row {
	return p.s.pool.QueryRow(p.ctx, q, args...)
}

// pgLoadGroup reads group gid as viewer sees it (viewer 0: nobody's
// friend); errNoSuchGroup when there is none or the viewer is not in it.
func pgLoadGroup(q pgQuerier, gid, viewer int64) (Group, error) {
	g := Group{ID: gid}
	err := q.queryRow(`SELECT g.name, o.username, g.created_at FROM groups g JOIN users o ON o.id = g.owner_id
		WHERE g.id = $1`, gid).Scan(&g.Name, &g.Owner, &g.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, errNoSuchGroup
	}
	if err != nil {
		return g, err
	}
	rows, err := q.query(`SELECT u.id, u.username, u.display_name, gm.read_upto,
			EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = $2 AND f.friend_id = u.id)
		FROM group_members gm JOIN users u ON u.id = gm.user_id
		WHERE gm.group_id = $1 ORDER BY u.username COLLATE "C"`, gid, viewer)
	if err != nil {
		return g, err
	}
	defer rows.Close()
	g.Members = []GroupMember{}
	in := viewer == 0
	for rows.Next() {
		var m GroupMember
		if err := rows.Scan(&m.ID, &m.Username, &m.DisplayName, &m.ReadUpto, &m.Friend); err != nil {
			return g, err
		}
		in = in || m.ID == viewer
		g.Members = append(g.Members, m)
	}
	if err := rows.Err(); err != nil {
		return g, err
	}
	if !in || len(g.Members) == 0 {
		return Group{}, errNoSuchGroup
	}
	return g, nil
}

// members returns gid's members by username, or errNoSuchGroup when user
// (if not 0) is not one of them.
func (tx *pgTx) members(gid, user int64) ([]cachedMember, error) {
	rows, err := tx.query(`SELECT u.id, u.username FROM group_members gm JOIN users u ON u.id = gm.user_id
		WHERE gm.group_id = $1 ORDER BY u.username COLLATE "C"`, gid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []cachedMember
	in := user == 0
	for rows.Next() {
		var m cachedMember
		if err := rows.Scan(&m.id, &m.username); err != nil {
			return nil, err
		}
		in = in || m.id == user
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !in || len(ms) == 0 {
		return nil, errNoSuchGroup
	}
	return ms, nil
}

// lockCursors locks the cursor rows of ids that this transaction has not
// locked yet, in one statement.
func (tx *pgTx) lockCursors(ids []int64) error {
	var lock []int64
	for _, id := range ids {
		if tx.cur[id] == nil && !slices.Contains(lock, id) {
			lock = append(lock, id)
		}
	}
	if len(lock) == 0 {
		return nil
	}
	slices.Sort(lock)
	rows, err := tx.query(pgLockCursors, lock)
	if err != nil {
		return err
	}
	return tx.scanLocked(rows, lock)
}

// addPayloadNotice appends a transient event with payload p to user's queue.
func (tx *pgTx) addPayloadNotice(user int64, kind int, p groupNoticePayload) error {
	c, err := tx.cursor(user)
	if errors.Is(err, errNoSuchUser) {
		return nil
	}
	if err != nil {
		return err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return err
	}
	c.lastSeq++
	c.dirty = true
	tx.rows.add(user, c.lastSeq, int16(kind), 0, string(payload), unixMilli(tx.now))
	tx.wakeUser(user)
	return nil
}

// groupNotice queues kind with the group object, as each recipient sees
// it, for every online one of recipients.
func (tx *pgTx) groupNotice(kind int, gid int64, recipients []int64) error {
	var g Group
	loaded := false
	for _, r := range recipients {
		if !tx.s.isOnline(r) {
			continue
		}
		if !loaded {
			var err error
			if g, err = pgLoadGroup(tx, gid, 0); err != nil {
				return err
			}
			loaded = true
		}
		friends, err := tx.friendIDs(r)
		if err != nil {
			return err
		}
		seen := g
		seen.Members = slices.Clone(g.Members)
		for i := range seen.Members {
			seen.Members[i].Friend = slices.Contains(friends, seen.Members[i].ID)
		}
		raw, err := marshalRaw(seen.json(tx.s.isOnline))
		if err != nil {
			return err
		}
		if err := tx.addPayloadNotice(r, kind, groupNoticePayload{Group: raw}); err != nil {
			return err
		}
	}
	return nil
}

// pgMayMessage is checkMayMessage on PostgreSQL.
func (tx *pgTx) mayMessage(from, to int64) error {
	r, err := tx.relation(from, to)
	switch {
	case err != nil:
		return err
	case r.iBlocked || r.itBlocked:
		return errBlocked
	case !r.friends:
		return errNotFriends
	}
	return nil
}

// CreateGroup makes a group owned by owner with the named friends of owner's.
func (s *pgStore) CreateGroup(ctx context.Context, owner User, name string, members []string, maxMembers int) (g Group, err error) {
	err = s.do(func(tx *pgTx) error {
		var added []User
		for _, n := range members {
			if n == owner.Username || slices.ContainsFunc(added, func(u User) bool { return u.Username == n }) {
				continue
			}
			u, err := tx.userByName(n)
			if err != nil {
				return err
			}
			if err := tx.mayMessage(owner.ID, u.ID); err != nil {
				return err
			}
			added = append(added, u)
		}
		if 1+len(added) > maxMembers {
			return errGroupFull
		}
		var gid int64
		if err := tx.queryRow(`INSERT INTO groups (name, owner_id, created_at) VALUES ($1, $2, $3) RETURNING id`,
			name, owner.ID, unixMilli(tx.now)).Scan(&gid); err != nil {
			return err
		}
		ids := []int64{owner.ID}
		for _, u := range added {
			ids = append(ids, u.ID)
		}
		// In this order, so the join order (the id) is the list's.
		if _, err := tx.exec(`INSERT INTO group_members (group_id, user_id)
			SELECT $1, u FROM unnest($2::int8[]) WITH ORDINALITY AS v(u, i) ORDER BY i`, gid, ids); err != nil {
			return err
		}
		if err := tx.groupNotice(kindGroupJoined, gid, ids[1:]); err != nil {
			return err
		}
		g, err = pgLoadGroup(tx, gid, owner.ID)
		return err
	})
	return g, s.interpretError(err)
}

// GroupsOf lists viewer's groups by id.
func (s *pgStore) GroupsOf(ctx context.Context, viewer int64) ([]Group, error) {
	rows, err := s.pool.Query(ctx, `SELECT group_id FROM group_members WHERE user_id = $1 ORDER BY group_id`, viewer)
	if err != nil {
		return nil, s.interpretError(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, s.interpretError(err)
	}
	groups := []Group{}
	for _, id := range ids {
		g, err := pgLoadGroup(pgPoolQuerier{ctx, s}, id, viewer)
		if errors.Is(err, errNoSuchGroup) {
			continue // left meanwhile
		}
		if err != nil {
			return nil, s.interpretError(err)
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// GroupOf reads group gid for one of its members.
func (s *pgStore) GroupOf(ctx context.Context, viewer, gid int64) (Group, error) {
	g, err := pgLoadGroup(pgPoolQuerier{ctx, s}, gid, viewer)
	return g, s.interpretError(err)
}

// RenameGroup renames gid; only its owner may.
func (s *pgStore) RenameGroup(ctx context.Context, me User, gid int64, name string) (g Group, err error) {
	err = s.do(func(tx *pgTx) error {
		if g, err = pgLoadGroup(tx, gid, me.ID); err != nil {
			return err
		}
		if g.Owner != me.Username {
			return errNotGroupOwner
		}
		if g.Name == name {
			return nil
		}
		if _, err := tx.exec(`UPDATE groups SET name = $1 WHERE id = $2`, name, gid); err != nil {
			return err
		}
		var others []int64
		for _, m := range g.Members {
			if m.ID != me.ID {
				others = append(others, m.ID)
			}
		}
		if err := tx.groupNotice(kindGroupUpdated, gid, others); err != nil {
			return err
		}
		g.Name = name
		return nil
	})
	return g, s.interpretError(err)
}

// AddGroupMember adds the user named username, one of me's friends, to gid.
func (s *pgStore) AddGroupMember(ctx context.Context, me User, gid int64, username string, maxMembers int) (g Group, err error) {
	err = s.do(func(tx *pgTx) error {
		ms, err := tx.members(gid, me.ID)
		if err != nil {
			return err
		}
		if !pgText(username) {
			return errNoSuchUser
		}
		u, err := tx.userByName(username)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(ms, func(m cachedMember) bool { return m.id == u.ID }) {
			return errAlreadyMember
		}
		if err := tx.mayMessage(me.ID, u.ID); err != nil {
			return err
		}
		if len(ms) >= maxMembers {
			return errGroupFull
		}
		if _, err := tx.exec(`INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)`, gid, u.ID); err != nil {
			return err
		}
		if err := tx.groupNotice(kindGroupJoined, gid, []int64{u.ID}); err != nil {
			return err
		}
		if err := tx.groupNotice(kindGroupUpdated, gid, others(ms, me.ID)); err != nil {
			return err
		}
		g, err = pgLoadGroup(tx, gid, me.ID)
		return err
	})
	return g, s.interpretError(err)
}

// RemoveGroupMember removes the user named username from gid: me leaving,
// or the owner removing someone.
func (s *pgStore) RemoveGroupMember(ctx context.Context, me User, gid int64, username string) error {
	return s.interpretError(s.do(func(tx *pgTx) error {
		g, err := pgLoadGroup(tx, gid, me.ID)
		if err != nil {
			return err
		}
		if username == me.Username {
			return tx.removeMember(g, me.ID, me.ID)
		}
		if g.Owner != me.Username {
			return errNotGroupOwner
		}
		for _, m := range g.Members {
			if m.Username == username {
				return tx.removeMember(g, m.ID, me.ID)
			}
		}
		return errNotMember
	}))
}

// removeMember is sqlite_groups.go's on PostgreSQL.
func (tx *pgTx) removeMember(g Group, user, actor int64) error {
	if _, err := tx.exec(`DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, g.ID, user); err != nil {
		return err
	}
	var heir int64
	err := tx.queryRow(`SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY id LIMIT 1`, g.ID).Scan(&heir)
	if errors.Is(err, pgx.ErrNoRows) {
		_, err := tx.exec(`DELETE FROM groups WHERE id = $1`, g.ID)
		return err
	}
	if err != nil {
		return err
	}
	if m, _ := g.member(user); m.Username == g.Owner {
		if _, err := tx.exec(`UPDATE groups SET owner_id = $1 WHERE id = $2`, heir, g.ID); err != nil {
			return err
		}
	}
	if user != actor && tx.s.isOnline(user) {
		raw, err := marshalRaw(groupRef{ID: g.ID, Name: g.Name})
		if err != nil {
			return err
		}
		if err := tx.addPayloadNotice(user, kindGroupLeft, groupNoticePayload{Group: raw}); err != nil {
			return err
		}
	}
	ms, err := tx.members(g.ID, 0)
	if err != nil {
		return err
	}
	return tx.groupNotice(kindGroupUpdated, g.ID, others(ms, actor))
}

// leaveAllGroups takes a user about to be deleted out of each of their groups.
func (tx *pgTx) leaveAllGroups(user int64) error {
	rows, err := tx.query(`SELECT group_id FROM group_members WHERE user_id = $1 ORDER BY group_id`, user)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	for _, id := range ids {
		g, err := pgLoadGroup(tx, id, 0)
		if err != nil {
			return err
		}
		if err := tx.removeMember(g, user, user); err != nil {
			return err
		}
	}
	return nil
}

// GroupCount counts the groups, for /metrics.
func (s *pgStore) GroupCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM groups`).Scan(&n)
	return n, s.interpretError(err)
}

// SendGroupMessage stores body from sender in group gid: one message row and
// a queue row for each member it reaches, in one commit.
func (s *pgStore) SendGroupMessage(ctx context.Context, sender User, gid int64, body, clientMsgID string, file *newFile) (msg Message, undelivered []string, created bool, err error) {
	err = s.do(func(tx *pgTx) error {
		msg, undelivered, created = Message{}, nil, false
		if clientMsgID != "" {
			var sid int64
			m, err := pgScanMessage(tx.queryRow(pgMessageSelect+` WHERE m.sender_id = $1 AND m.client_msg_id = $2`,
				sender.ID, []byte(clientMsgID)), &sid)
			if err == nil {
				msg = m
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		ms, err := tx.members(gid, sender.ID)
		if err != nil {
			return err
		}
		ids := make([]int64, len(ms))
		for i, m := range ms {
			ids[i] = m.id
		}
		if err := tx.lockCursors(ids); err != nil {
			return err
		}
		type copyTo struct {
			id  int64
			c   *pgCursor
			own bool
		}
		var to []copyTo
		for _, m := range ms {
			c := tx.cur[m.id]
			if c == nil || c.missing {
				continue // deleted meanwhile by another process
			}
			if m.id != sender.ID && c.queued >= int64(s.maxQueue) {
				undelivered = append(undelivered, m.username)
				continue
			}
			to = append(to, copyTo{m.id, c, m.id == sender.ID})
		}
		at := unixMilli(tx.now)
		var fileID *int64
		if file != nil {
			var id int64
			if err := tx.queryRow(`INSERT INTO files (storage_name, name, size, content_type, created_at)
				VALUES ($1, $2, $3, $4, $5) RETURNING id`,
				file.StorageName, file.Name, file.Size, file.ContentType, at).Scan(&id); err != nil {
				return err
			}
			fileID = &id
		}
		var cid []byte
		if clientMsgID != "" {
			cid = []byte(clientMsgID)
		}
		var id int64
		if err := tx.queryRow(`INSERT INTO messages
			(sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs, group_id)
			VALUES ($1, 0, $2, '', $3, $4, $5, $6, $7, $8) RETURNING id`,
			sender.ID, sender.Username, []byte(body), at, cid, fileID, len(to), gid).Scan(&id); err != nil {
			return err
		}
		for _, t := range to {
			t.c.lastSeq++
			t.c.queued++
			t.c.dirty = true
			tx.rows.addMessage(t.id, t.c.lastSeq, id, at, -gid, t.own)
			// As for a 1:1 send, the sender's own copy wakes no poll of theirs.
			if !t.own {
				tx.wakeUser(t.id)
			}
		}
		tx.queuedDelta += int64(len(to))
		msg = Message{ID: id, From: sender.Username, Group: gid, Body: body, SentAt: apiTime(fromMilli(at)), ClientMsgID: clientMsgID}
		if file != nil {
			msg.File = &FileInfo{ID: *fileID, Name: file.Name, Size: file.Size, ContentType: file.ContentType, URL: fileURL(*fileID)}
		}
		created = true
		return nil
	})
	return msg, undelivered, created, s.interpretError(err)
}

// MarkRead moves me's read marker forward and tells the others when it moved.
func (s *pgStore) MarkRead(ctx context.Context, me User, with string, gid, upto int64) error {
	return s.interpretError(s.do(func(tx *pgTx) error {
		if gid != 0 {
			ms, err := tx.members(gid, me.ID)
			if err != nil {
				return err
			}
			if upto <= 0 {
				return nil
			}
			tag, err := tx.exec(`UPDATE group_members SET read_upto = $1 WHERE group_id = $2 AND user_id = $3 AND read_upto < $1`,
				upto, gid, me.ID)
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			for _, id := range others(ms, me.ID) {
				if err := tx.readNotice(me, id, gid, upto); err != nil {
					return err
				}
			}
			return nil
		}
		if !pgText(with) {
			return errNoSuchUser
		}
		peer, err := tx.userByName(with)
		if err != nil {
			return err
		}
		if peer.ID == me.ID {
			return errMessageSelf
		}
		if upto <= 0 {
			return nil
		}
		tag, err := tx.exec(`INSERT INTO read_markers (user_id, peer_id, upto) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, peer_id) DO UPDATE SET upto = excluded.upto WHERE read_markers.upto < excluded.upto`,
			me.ID, peer.ID, upto)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return tx.readNotice(me, peer.ID, 0, upto)
	}))
}

// readNotice is sqlite_reads.go's on PostgreSQL.
func (tx *pgTx) readNotice(me User, to, gid, upto int64) error {
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

// Conversations is sqlite_reads.go's on PostgreSQL: per conversation one
// index seek for the newest message and a count of the index entries above
// the reader's marker (queue_conv).
func (s *pgStore) Conversations(ctx context.Context, me int64) ([]Conversation, error) {
	var convs []Conversation
	var lastIDs []int64
	rows, err := s.pool.Query(ctx, `SELECT u.id, u.username, u.display_name, c.last, c.mine, c.theirs,
			(SELECT count(*) FROM queue q WHERE q.user_id = $1 AND q.kind = 1 AND q.conv = c.peer
				AND q.message_id > c.mine AND q.own = 0)
		FROM (SELECT f.friend_id AS peer,
				(SELECT max(q.message_id) FROM queue q WHERE q.user_id = $1 AND q.kind = 1 AND q.conv = f.friend_id) AS last,
				coalesce((SELECT r.upto FROM read_markers r WHERE r.user_id = $1 AND r.peer_id = f.friend_id), 0) AS mine,
				coalesce((SELECT r.upto FROM read_markers r WHERE r.user_id = f.friend_id AND r.peer_id = $1), 0) AS theirs
			FROM friendships f WHERE f.user_id = $1) c
		JOIN users u ON u.id = c.peer
		WHERE c.last IS NOT NULL`, me)
	if err != nil {
		return nil, s.interpretError(err)
	}
	for rows.Next() {
		var c Conversation
		var peer User
		var last int64
		if err := rows.Scan(&peer.ID, &peer.Username, &peer.DisplayName, &last, &c.ReadUpto, &c.PeerReadUpto, &c.Unread); err != nil {
			rows.Close()
			return nil, s.interpretError(err)
		}
		c.Peer = &peer
		c.LastMessage = &Message{ID: last}
		convs = append(convs, c)
		lastIDs = append(lastIDs, last)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.interpretError(err)
	}
	rows, err = s.pool.Query(ctx, `SELECT g.id, g.name, c.last, c.mine,
			(SELECT count(*) FROM queue q WHERE q.user_id = $1 AND q.kind = 1 AND q.conv = -c.gid
				AND q.message_id > c.mine AND q.own = 0)
		FROM (SELECT gm.group_id AS gid, gm.read_upto AS mine,
				(SELECT max(q.message_id) FROM queue q WHERE q.user_id = $1 AND q.kind = 1 AND q.conv = -gm.group_id) AS last
			FROM group_members gm WHERE gm.user_id = $1) c
		JOIN groups g ON g.id = c.gid`, me)
	if err != nil {
		return nil, s.interpretError(err)
	}
	for rows.Next() {
		var c Conversation
		var g groupRef
		var last *int64
		if err := rows.Scan(&g.ID, &g.Name, &last, &c.ReadUpto, &c.Unread); err != nil {
			rows.Close()
			return nil, s.interpretError(err)
		}
		c.Group = &g
		if last != nil {
			c.LastMessage = &Message{ID: *last}
			lastIDs = append(lastIDs, *last)
		}
		convs = append(convs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.interpretError(err)
	}
	msgs := map[int64]Message{}
	if len(lastIDs) > 0 {
		rows, err := s.pool.Query(ctx, pgMessageSelect+` WHERE m.id = ANY($1)`, lastIDs)
		if err != nil {
			return nil, s.interpretError(err)
		}
		for rows.Next() {
			var sid int64
			m, err := pgScanMessage(rows, &sid)
			if err != nil {
				rows.Close()
				return nil, s.interpretError(err)
			}
			msgs[m.ID] = m
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, s.interpretError(err)
		}
	}
	out := convs[:0]
	for _, c := range convs {
		if c.LastMessage != nil {
			m, ok := msgs[c.LastMessage.ID]
			if !ok {
				if c.Group == nil {
					continue // cleaned meanwhile
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

// TypingRecipients checks, as a send would, that sender may type to the user
// named to or in group gid, and returns who would see it.
func (s *pgStore) TypingRecipients(ctx context.Context, sender User, to string, gid int64) ([]Recipient, error) {
	if gid != 0 {
		rows, err := s.pool.Query(ctx, `SELECT gm.user_id,
				EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = $2 AND f.friend_id = gm.user_id)
			FROM group_members gm WHERE gm.group_id = $1`, gid, sender.ID)
		if err != nil {
			return nil, s.interpretError(err)
		}
		defer rows.Close()
		var out []Recipient
		in := false
		for rows.Next() {
			var r Recipient
			if err := rows.Scan(&r.ID, &r.Friend); err != nil {
				return nil, s.interpretError(err)
			}
			if r.ID == sender.ID {
				in = true
			} else {
				out = append(out, r)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, s.interpretError(err)
		}
		if !in {
			return nil, errNoSuchGroup
		}
		return out, nil
	}
	if !pgText(to) {
		return nil, errNoSuchUser
	}
	var id int64
	var friends, blocked bool
	err := s.pool.QueryRow(ctx, `SELECT u.id,
		EXISTS (SELECT 1 FROM friendships WHERE user_id = $1 AND friend_id = u.id),
		EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = u.id) OR (blocker_id = u.id AND blocked_id = $1))
		FROM users u WHERE u.username = $2`, sender.ID, to).Scan(&id, &friends, &blocked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, errNoSuchUser
	case err != nil:
		return nil, s.interpretError(err)
	case id == sender.ID:
		return nil, errMessageSelf
	case blocked:
		return nil, errBlocked
	case !friends:
		return nil, errNotFriends
	}
	return []Recipient{{ID: id, Friend: true}}, nil
}

// --- typing: ephemeral events ----------------------------------------------
//
// A typing event takes the next seq of the recipient's queue, and, unlike on
// SQLite, that seq is taken in the database: the cursor row's last_seq moves
// under its lock in the writer's transaction, so that no other node (whose
// sends lock the same row) can give the seq to a stored event. Without it a
// client whose cursor passed a typing event would skip the message another
// node stored under the same seq. The event itself is never written: it
// waits in memory (pgEphemeral) until a poll of its user here reads the
// queue. seqFloor and engine_state remain for what this process gave before
// a crash.

// pgEphemeralKeep bounds how long, and how many, undelivered typing events a
// user keeps: a "typing…" older than the page shows it is worth nothing.
const (
	pgEphemeralKeep = 10 * time.Second
	pgEphemeralMax  = 64
)

type pgEphemeral struct {
	mu     sync.Mutex
	byUser map[int64][]pgEphemeralEvent
}

type pgEphemeralEvent struct {
	e     Event
	added time.Time
}

func (p *pgEphemeral) add(user int64, e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byUser == nil {
		p.byUser = map[int64][]pgEphemeralEvent{}
	}
	now := time.Now()
	kept := p.byUser[user][:0:0]
	for _, x := range p.byUser[user] {
		if now.Sub(x.added) < pgEphemeralKeep {
			kept = append(kept, x)
		}
	}
	kept = append(kept, pgEphemeralEvent{e, now})
	if len(kept) > pgEphemeralMax {
		kept = kept[len(kept)-pgEphemeralMax:]
	}
	p.byUser[user] = kept
}

// take removes and returns user's events with seq > cursor.
func (p *pgEphemeral) take(user, cursor int64) []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Event
	var kept []pgEphemeralEvent
	now := time.Now()
	for _, x := range p.byUser[user] {
		switch {
		case now.Sub(x.added) >= pgEphemeralKeep:
		case x.e.Seq > cursor:
			out = append(out, x.e)
		default:
			kept = append(kept, x)
		}
	}
	if len(kept) == 0 {
		delete(p.byUser, user)
	} else {
		p.byUser[user] = kept
	}
	return out
}

func (p *pgEphemeral) drop(user int64) {
	p.mu.Lock()
	delete(p.byUser, user)
	p.mu.Unlock()
}

// QueueEphemeral gives each online one of users a copy of e with the next
// seq of their queue, written nowhere, and wakes their polls.
func (s *pgStore) QueueEphemeral(users []int64, e Event) {
	s.goDo(func(tx *pgTx) error {
		for _, u := range users {
			if !tx.s.isOnline(u) {
				continue
			}
			f := tx.s.seqFloor[u]
			var seq int64
			if c := tx.cur[u]; c != nil {
				if c.missing {
					continue
				}
				// Locked by this batch and written back at its commit.
				seq = max(c.lastSeq, f.seq) + 1
				c.lastSeq = seq // a stored event later in this batch comes after it
				c.dirty = true
			} else {
				err := tx.queryRow(`UPDATE cursors SET last_seq = greatest(last_seq, $2) + 1 WHERE user_id = $1 RETURNING last_seq`,
					u, f.seq).Scan(&seq)
				if errors.Is(err, pgx.ErrNoRows) {
					continue
				}
				if err != nil {
					return err
				}
			}
			tx.s.seqFloor[u] = seqFloor{seq: seq, safe: seq}
			ev := e
			ev.Seq, ev.At = seq, apiTime(tx.now)
			user := u
			tx.onCommit(func() { tx.s.ephemeral.add(user, ev) })
			tx.notes.typing = append(tx.notes.typing, pgTypingNote{user, ev})
			tx.wakeUser(u)
		}
		return nil
	})
}

// applySeqFloor starts a freshly locked cursor after the seqs this process
// gave to ephemeral events.
func (s *pgStore) applySeqFloor(user int64, c *pgCursor) {
	if f, ok := s.seqFloor[user]; ok && f.seq > c.lastSeq {
		c.lastSeq = f.seq
	}
}

// openSeqState reads whether the last server stopped without saving its
// ephemeral seqs (then every queue skips ahead) and marks this one running.
func (s *pgStore) openSeqState(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	var unsaved int64
	if err := tx.QueryRow(ctx, `SELECT value FROM engine_state WHERE key = 'unsaved_seqs' FOR UPDATE`).Scan(&unsaved); err != nil {
		return err
	}
	if unsaved != 0 {
		if _, err := tx.Exec(ctx, `UPDATE cursors SET last_seq = last_seq + $1`, int64(seqGapAfterCrash)); err != nil {
			return err
		}
	} else if _, err := tx.Exec(ctx, `UPDATE engine_state SET value = 1 WHERE key = 'unsaved_seqs'`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// saveSeqState writes the seqs given to ephemeral events, so the next server
// continues after them, and marks them saved.
func (s *pgStore) saveSeqState() error {
	return s.do(func(tx *pgTx) error {
		var users, seqs []int64
		for u, f := range tx.s.seqFloor {
			users = append(users, u)
			seqs = append(seqs, f.seq)
		}
		if len(users) > 0 {
			if _, err := tx.exec(`UPDATE cursors c SET last_seq = greatest(c.last_seq, v.s)
				FROM unnest($1::int8[], $2::int8[]) AS v(u, s) WHERE c.user_id = v.u`, users, seqs); err != nil {
				return err
			}
		}
		_, err := tx.exec(`UPDATE engine_state SET value = 0 WHERE key = 'unsaved_seqs'`)
		return err
	})
}
