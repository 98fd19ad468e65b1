package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// Groups on SQLite. Every change is one write op that also queues its
// notices, so a change and its events commit together; reads use the read
// pool. The writer remembers each group's members (writerCache.groups) so a
// group send reads nothing but the cursors it already caches.

// querier is what both the writer's transaction and the read pool offer,
// so a group is loaded the same way by either.
type querier interface {
	query(q string, args ...any) (*sql.Rows, error)
	queryRow(q string, args ...any) *sql.Row
}

type readQuerier struct {
	ctx context.Context
	db  *sql.DB
}

func (r readQuerier) query(q string, args ...any) (*sql.Rows, error) {
	return r.db.QueryContext(r.ctx, q, args...)
}

func (r readQuerier) queryRow(q string, args ...any) *sql.Row {
	return r.db.QueryRowContext(r.ctx, q, args...)
}

func (s *sqliteStore) reader(ctx context.Context) readQuerier { return readQuerier{ctx, s.read} }

// groupMember is a member as the writer's cache keeps it.
type cachedMember struct {
	id       int64
	username string
}

// loadGroup reads group gid as viewer sees it (viewer 0: nobody's friend).
// It answers errNoSuchGroup when there is no such group or, for a viewer,
// when the viewer is not in it.
func loadGroup(q querier, gid, viewer int64) (Group, error) {
	g := Group{ID: gid}
	err := q.queryRow(`SELECT g.name, o.username, g.created_at FROM groups g JOIN users o ON o.id = g.owner_id
		WHERE g.id = ?`, gid).Scan(&g.Name, &g.Owner, &g.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return g, errNoSuchGroup
	}
	if err != nil {
		return g, err
	}
	rows, err := q.query(`SELECT u.id, u.username, u.display_name, gm.read_upto,
			EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = ?2 AND f.friend_id = u.id)
		FROM group_members gm JOIN users u ON u.id = gm.user_id
		WHERE gm.group_id = ?1 ORDER BY u.username`, gid, viewer)
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
	if !in {
		return Group{}, errNoSuchGroup
	}
	return g, nil
}

// members returns group gid's members (by username) from the writer's cache.
func (tx *writeTx) members(gid int64) ([]cachedMember, error) {
	if ms, ok := tx.cache.groups[gid]; ok {
		if ms == nil {
			return nil, errNoSuchGroup
		}
		return ms, nil
	}
	rows, err := tx.query(`SELECT u.id, u.username FROM group_members gm JOIN users u ON u.id = gm.user_id
		WHERE gm.group_id = ? ORDER BY u.username`, gid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ms := []cachedMember{}
	for rows.Next() {
		var m cachedMember
		if err := rows.Scan(&m.id, &m.username); err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		// Every group has a member; none is no group.
		tx.cache.groups[gid] = nil
		return nil, errNoSuchGroup
	}
	tx.cache.groups[gid] = ms
	return ms, nil
}

// memberOf checks that user is in gid and returns the members.
func (tx *writeTx) memberOf(gid, user int64) ([]cachedMember, error) {
	ms, err := tx.members(gid)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.id == user {
			return ms, nil
		}
	}
	return nil, errNoSuchGroup
}

// groupChanging forgets what the cache knows of gid's members.
func (tx *writeTx) groupChanging(gid int64) { delete(tx.cache.groups, gid) }

// addPayloadNotice appends a transient event with payload p to user's queue.
func (tx *writeTx) addPayloadNotice(user int64, kind int, p groupNoticePayload) error {
	payload, err := json.Marshal(p)
	if err != nil {
		return err
	}
	c, err := tx.cursor(user)
	if err != nil {
		return err
	}
	seq, at := tx.nextSeq(c), unixMilli(tx.now)
	if _, err := tx.exec(`INSERT INTO queue (user_id, seq, kind, payload, at) VALUES (?, ?, ?, ?, ?)`,
		user, seq, kind, string(payload), at); err != nil {
		return err
	}
	e := Event{Seq: seq, Type: kindNames[kind], At: apiTime(fromMilli(at)), User: p.User, Group: p.Group, Upto: p.Upto}
	tx.tail(func(t *tails) { t.add(user, e) })
	tx.wakeUser(user)
	return nil
}

// groupNotice queues kind with the group object, as each recipient sees
// it, for every online member of recipients.
func (tx *writeTx) groupNotice(kind int, gid int64, recipients []int64) error {
	var g Group
	loaded := false
	for _, r := range recipients {
		if !tx.s.isOnline(r) {
			continue
		}
		if !loaded {
			var err error
			if g, err = loadGroup(tx, gid, 0); err != nil {
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
		raw, err := json.Marshal(seen.json(tx.s.isOnline))
		if err != nil {
			return err
		}
		if err := tx.addPayloadNotice(r, kind, groupNoticePayload{Group: raw}); err != nil {
			return err
		}
	}
	return nil
}

// others lists the ids of ms but those of except.
func others(ms []cachedMember, except ...int64) []int64 {
	var out []int64
	for _, m := range ms {
		if !slices.Contains(except, m.id) {
			out = append(out, m.id)
		}
	}
	return out
}

// CreateGroup makes a group owned by owner with the named friends of
// owner's; nothing is made when any of them is refused.
func (s *sqliteStore) CreateGroup(ctx context.Context, owner User, name string, members []string, maxMembers int) (g Group, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
		var added []User
		for _, n := range members {
			if n == owner.Username || slices.ContainsFunc(added, func(u User) bool { return u.Username == n }) {
				continue
			}
			u, err := tx.cachedUser(n)
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
		if err := tx.queryRow(`INSERT INTO groups (name, owner_id, created_at) VALUES (?, ?, ?) RETURNING id`,
			name, owner.ID, unixMilli(tx.now)).Scan(&gid); err != nil {
			return err
		}
		ids := []int64{owner.ID}
		for _, u := range added {
			ids = append(ids, u.ID)
		}
		for _, id := range ids {
			if _, err := tx.exec(`INSERT INTO group_members (group_id, user_id) VALUES (?, ?)`, gid, id); err != nil {
				return err
			}
		}
		tx.groupChanging(gid)
		if err := tx.groupNotice(kindGroupJoined, gid, ids[1:]); err != nil {
			return err
		}
		g, err = loadGroup(tx, gid, owner.ID)
		return err
	})
	return g, err
}

// GroupsOf lists viewer's groups by id.
func (s *sqliteStore) GroupsOf(ctx context.Context, viewer int64) ([]Group, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT group_id FROM group_members WHERE user_id = ? ORDER BY group_id`, viewer)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	groups := []Group{}
	for _, id := range ids {
		g, err := loadGroup(s.reader(ctx), id, viewer)
		if errors.Is(err, errNoSuchGroup) {
			continue // left meanwhile
		}
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// GroupOf reads group gid for one of its members.
func (s *sqliteStore) GroupOf(ctx context.Context, viewer, gid int64) (Group, error) {
	return loadGroup(s.reader(ctx), gid, viewer)
}

// RenameGroup renames gid; only its owner may.
func (s *sqliteStore) RenameGroup(ctx context.Context, me User, gid int64, name string) (g Group, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
		if g, err = loadGroup(tx, gid, me.ID); err != nil {
			return err
		}
		if g.Owner != me.Username {
			return errNotGroupOwner
		}
		if g.Name == name {
			return nil
		}
		if _, err := tx.exec(`UPDATE groups SET name = ? WHERE id = ?`, name, gid); err != nil {
			return err
		}
		ms, err := tx.members(gid)
		if err != nil {
			return err
		}
		if err := tx.groupNotice(kindGroupUpdated, gid, others(ms, me.ID)); err != nil {
			return err
		}
		g.Name = name
		return nil
	})
	return g, err
}

// AddGroupMember adds the user named username, one of me's friends, to gid.
func (s *sqliteStore) AddGroupMember(ctx context.Context, me User, gid int64, username string, maxMembers int) (g Group, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
		ms, err := tx.memberOf(gid, me.ID)
		if err != nil {
			return err
		}
		u, err := tx.cachedUser(username)
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
		if _, err := tx.exec(`INSERT INTO group_members (group_id, user_id) VALUES (?, ?)`, gid, u.ID); err != nil {
			return err
		}
		tx.groupChanging(gid)
		if err := tx.groupNotice(kindGroupJoined, gid, []int64{u.ID}); err != nil {
			return err
		}
		if err := tx.groupNotice(kindGroupUpdated, gid, others(ms, me.ID)); err != nil {
			return err
		}
		g, err = loadGroup(tx, gid, me.ID)
		return err
	})
	return g, err
}

// RemoveGroupMember removes the user named username from gid: me leaving,
// or the owner removing someone.
func (s *sqliteStore) RemoveGroupMember(ctx context.Context, me User, gid int64, username string) error {
	return s.do(ctx, func(tx *writeTx) error {
		g, err := loadGroup(tx, gid, me.ID)
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
	})
}

// removeMember takes user out of g on actor's behalf: ownership passes to
// the earliest member left, a group left empty is deleted, and the others
// are told (the removed member too, when it was not their own doing).
func (tx *writeTx) removeMember(g Group, user, actor int64) error {
	if _, err := tx.exec(`DELETE FROM group_members WHERE group_id = ? AND user_id = ?`, g.ID, user); err != nil {
		return err
	}
	tx.groupChanging(g.ID)
	var heir sql.NullInt64
	if err := tx.queryRow(`SELECT user_id FROM group_members WHERE group_id = ? ORDER BY id LIMIT 1`, g.ID).Scan(&heir); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if !heir.Valid {
		_, err := tx.exec(`DELETE FROM groups WHERE id = ?`, g.ID)
		return err
	}
	if owner, _ := g.member(user); owner.Username == g.Owner {
		if _, err := tx.exec(`UPDATE groups SET owner_id = ? WHERE id = ?`, heir.Int64, g.ID); err != nil {
			return err
		}
	}
	if user != actor && tx.s.isOnline(user) {
		raw, err := json.Marshal(groupRef{ID: g.ID, Name: g.Name})
		if err != nil {
			return err
		}
		if err := tx.addPayloadNotice(user, kindGroupLeft, groupNoticePayload{Group: raw}); err != nil {
			return err
		}
	}
	ms, err := tx.members(g.ID)
	if err != nil {
		return err
	}
	return tx.groupNotice(kindGroupUpdated, g.ID, others(ms, actor))
}

// leaveAllGroups takes a user about to be deleted out of each of their
// groups, as if they left.
func (tx *writeTx) leaveAllGroups(user int64) error {
	rows, err := tx.query(`SELECT group_id FROM group_members WHERE user_id = ?`, user)
	if err != nil {
		return err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range ids {
		g, err := loadGroup(tx, id, 0)
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
func (s *sqliteStore) GroupCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM groups`).Scan(&n)
	return n, err
}

// queueRowsPerInsert is how many queue rows one statement of a group send
// writes: a few statements for a big group instead of one per member, and
// only two statement shapes to prepare.
const queueRowsPerInsert = 32

var queueInsertMany = `INSERT OR FAIL INTO queue (user_id, seq, kind, message_id, at, conv, own) VALUES ` +
	strings.TrimSuffix(strings.Repeat("(?, ?, 1, ?, ?, ?, ?), ", queueRowsPerInsert), ", ")

// SendGroupMessage stores body from sender in group gid: one message row and
// one queue row for each member it reaches, all in one commit.
func (s *sqliteStore) SendGroupMessage(ctx context.Context, sender User, gid int64, body, clientMsgID string, file *newFile) (msg Message, undelivered []string, created bool, err error) {
	run := s.doLean
	if file != nil {
		run = s.do
	}
	err = run(ctx, func(tx *writeTx) error {
		undelivered = nil
		if clientMsgID != "" {
			// A repeat is answered with what was stored, whatever it names.
			prior, found, err := tx.messageByClientID(sender.ID, clientMsgID)
			if err != nil || found {
				msg = prior
				return err
			}
		}
		ms, err := tx.memberOf(gid, sender.ID)
		if err != nil {
			return err
		}
		type copyTo struct {
			c   *cursorState
			own int
		}
		var to []copyTo
		for _, m := range ms {
			c, err := tx.cursor(m.id)
			if err != nil {
				return err
			}
			if m.id != sender.ID && c.queued >= int64(tx.s.maxQueue) {
				undelivered = append(undelivered, m.username)
				continue
			}
			own := 0
			if m.id == sender.ID {
				own = 1
			}
			to = append(to, copyTo{c, own})
		}
		var fileID sql.NullInt64
		if file != nil {
			if err := tx.queryRow(`INSERT INTO files (storage_name, name, size, content_type, created_at)
				VALUES (?, ?, ?, ?, ?) RETURNING id`,
				file.StorageName, file.Name, file.Size, file.ContentType, unixMilli(tx.now)).Scan(&fileID); err != nil {
				return err
			}
		}
		var cid sql.NullString
		if clientMsgID != "" {
			cid = sql.NullString{String: clientMsgID, Valid: true}
		}
		sentAt := unixMilli(tx.now)
		id, err := tx.nextMessageID()
		if err != nil {
			return err
		}
		// The client_msg_id was looked up above, so a conflict here is a bug.
		if _, err := tx.exec(`INSERT OR FAIL INTO messages
			(id, sender_id, recipient_id, from_name, to_name, body, sent_at, client_msg_id, file_id, refs, group_id)
			VALUES (?, ?, 0, ?, '', ?, ?, ?, ?, ?, ?)`,
			id, sender.ID, sender.Username, body, sentAt, cid, fileID, len(to), gid); err != nil {
			return err
		}
		tx.cache.lastMessageID = id
		msg = Message{ID: id, From: sender.Username, Group: gid, Body: body, SentAt: apiTime(fromMilli(sentAt)), ClientMsgID: clientMsgID}
		if file != nil {
			msg.File = &FileInfo{ID: fileID.Int64, Name: file.Name, Size: file.Size, ContentType: file.ContentType, URL: fileURL(fileID.Int64)}
		}
		seqs := make([]int64, len(to))
		args := make([]any, 0, 6*queueRowsPerInsert)
		for start := 0; start < len(to); {
			n := queueRowsPerInsert
			query := queueInsertMany
			if len(to)-start < n {
				n = 1
				query = `INSERT OR FAIL INTO queue (user_id, seq, kind, message_id, at, conv, own) VALUES (?, ?, 1, ?, ?, ?, ?)`
			}
			args = args[:0]
			for i := start; i < start+n; i++ {
				seqs[i] = tx.nextSeq(to[i].c)
				args = append(args, to[i].c.user, seqs[i], id, sentAt, -gid, to[i].own)
			}
			if _, err := tx.exec(query, args...); err != nil {
				return err
			}
			start += n
		}
		shared := msg
		users := make([]int64, len(to))
		for i, t := range to {
			t.c.queued++
			users[i] = t.c.user
			// As for a 1:1 send, the sender's own copy wakes no poll of
			// theirs: the sending session has it from the answer, and it
			// comes with their poll's next answer (API.md).
			if t.own == 0 {
				tx.wakeUser(t.c.user)
			}
		}
		tx.queuedDelta += int64(len(to))
		tx.tail(func(t *tails) {
			for i, u := range users {
				t.add(u, Event{Seq: seqs[i], Type: "message", At: shared.SentAt, Message: &shared})
			}
		})
		created = true
		return nil
	})
	return msg, undelivered, created, err
}
