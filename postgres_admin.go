package main

import (
	"context"
	"time"
)

// The store side of the admin commands on PostgreSQL. As on SQLite, each
// change a running server must act on writes a row of admin_events in the
// same transaction; servers read new rows every adminCheckEvery.

// ListUsers returns every account, by username.
func (s *pgStore) ListUsers(ctx context.Context) ([]adminUser, error) {
	rows, err := s.pool.Query(ctx, `SELECT u.id, u.username, u.display_name, u.created_at, u.disabled, coalesce(c.queued, 0)
		FROM users u LEFT JOIN cursors c ON c.user_id = u.id ORDER BY u.username COLLATE "C"`)
	if err != nil {
		return nil, s.interpretError(err)
	}
	defer rows.Close()
	var out []adminUser
	for rows.Next() {
		var u adminUser
		var created int64
		if err := rows.Scan(&u.ID, &u.Username, &u.DisplayName, &created, &u.Disabled, &u.Queued); err != nil {
			return nil, s.interpretError(err)
		}
		u.Created = fromMilli(created)
		out = append(out, u)
	}
	return out, s.interpretError(rows.Err())
}

// adminEvent tells running servers that user's sessions are gone and the
// queues changed by queuedDelta messages.
func (tx *pgTx) adminEvent(user, queuedDelta int64) error {
	// admin_events reach every node within adminCheckEvery; the hint makes
	// it at once, and covers an event whose id a slower transaction took
	// before one a node has already read.
	tx.sessionChanged(user)
	if _, err := tx.exec(`INSERT INTO admin_events (user_id, queued_delta, at) VALUES ($1, $2, $3)`,
		user, queuedDelta, unixMilli(tx.now)); err != nil {
		return err
	}
	// A day is far longer than any server takes to read them.
	_, err := tx.exec(`DELETE FROM admin_events WHERE at < $1`, unixMilli(tx.now.Add(-24*time.Hour)))
	return err
}

func (tx *pgTx) endSessions(user int64) error {
	_, err := tx.exec(`DELETE FROM sessions WHERE user_id = $1`, user)
	return err
}

// SetPassword replaces username's password hash and ends its sessions.
func (s *pgStore) SetPassword(ctx context.Context, username, hash string) error {
	return s.do(func(tx *pgTx) error {
		u, err := tx.userByName(username)
		if err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE users SET password_hash = $1 WHERE id = $2`, hash, u.ID); err != nil {
			return err
		}
		if err := tx.endSessions(u.ID); err != nil {
			return err
		}
		return tx.adminEvent(u.ID, 0)
	})
}

// SetDisabled disables username (ending its sessions) or enables it again.
// changed is false when it already was so.
func (s *pgStore) SetDisabled(ctx context.Context, username string, disabled bool) (changed bool, err error) {
	err = s.do(func(tx *pgTx) error {
		u, err := tx.userByName(username)
		if err != nil {
			return err
		}
		res, err := tx.exec(`UPDATE users SET disabled = $1 WHERE id = $2 AND disabled <> $1`, disabled, u.ID)
		if err != nil {
			return err
		}
		changed = res.RowsAffected() > 0
		if !disabled {
			return nil
		}
		// Even if it already was disabled: a session left from before is
		// ended now.
		if err := tx.endSessions(u.ID); err != nil {
			return err
		}
		return tx.adminEvent(u.ID, 0)
	})
	return changed, err
}

// DeleteUser removes username's account with its sessions, relations, queue
// and every message (and file) no other queue holds any more. Messages it
// sent stay in their recipients' queues.
func (s *pgStore) DeleteUser(ctx context.Context, username string) (deletedUser, error) {
	var d deletedUser
	err := s.do(func(tx *pgTx) error {
		d = deletedUser{}
		u, err := tx.userByName(username)
		if err != nil {
			return err
		}
		// The cursor's lock keeps other writers from adding to the queue
		// while it goes: they find no cursor once this commits.
		if _, err := tx.cursor(u.ID); err != nil {
			return err
		}
		tx.rows.filter(func(i int) bool { return tx.rows.user[i] != u.ID })
		// Friends and those with a request pending either way see the user
		// go, as they would an unfriending.
		peers, err := tx.relatedIDs(u.ID)
		if err != nil {
			return err
		}
		for _, p := range peers {
			if err := tx.notify(p, kindFriendRemoved, u.json()); err != nil {
				return err
			}
		}
		if err := tx.queryRow(`WITH gone AS (DELETE FROM queue WHERE user_id = $1 RETURNING kind, message_id),
			rel AS (SELECT message_id, count(*) AS n FROM gone WHERE kind = 1 GROUP BY message_id),
			upd AS (UPDATE messages m SET refs = m.refs - rel.n FROM rel WHERE m.id = rel.message_id RETURNING 1)
			SELECT coalesce(sum(n), 0) FROM rel`, u.ID).Scan(&d.Queued); err != nil {
			return err
		}
		var files int64
		if err := tx.queryRow(pgReleaseMessages).Scan(&files); err != nil {
			return err
		}
		d.Files = int(files)
		// Owned groups pass to their next member first: the owner's row
		// must not outlive the user.
		if err := tx.leaveAllGroups(u.ID); err != nil {
			return err
		}
		// Sessions, cursor, friendships, requests, blocks, read markers and push
		// subscriptions cascade.
		if _, err := tx.exec(`DELETE FROM users WHERE id = $1`, u.ID); err != nil {
			return err
		}
		tx.cur[u.ID] = &pgCursor{missing: true}
		tx.queuedDelta -= d.Queued
		name := u.Username
		tx.onCommit(func() { delete(s.users, name) })
		return tx.adminEvent(u.ID, -d.Queued)
	})
	return d, err
}

// AdminEventsAfter returns the admin events after id, oldest first. When
// there are any, the queued gauge is read again from the database (which
// already holds what they removed) rather than moved by their deltas, which
// a refresh may already have counted.
func (s *pgStore) AdminEventsAfter(ctx context.Context, id int64) ([]adminEventRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, user_id, queued_delta FROM admin_events WHERE id > $1 ORDER BY id`, id)
	if err != nil {
		return nil, s.interpretError(err)
	}
	defer rows.Close()
	var out []adminEventRow
	for rows.Next() {
		var e adminEventRow
		if err := rows.Scan(&e.ID, &e.User, &e.QueuedDelta); err != nil {
			return nil, s.interpretError(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.interpretError(err)
	}
	if len(out) > 0 && !s.shared {
		// The writer reads it, so no commit of this process's is counted
		// twice or missed.
		if err := s.do(func(tx *pgTx) error { tx.refreshQueued = true; return nil }); err != nil {
			s.log.Warn("could not refresh the queued gauge", "err", err)
		}
	}
	return out, nil
}

// LastAdminEvent is the id of the newest admin event, 0 for none.
func (s *pgStore) LastAdminEvent(ctx context.Context) (int64, error) {
	var id *int64
	if err := s.pool.QueryRow(ctx, `SELECT max(id) FROM admin_events`).Scan(&id); err != nil || id == nil {
		return 0, s.interpretError(err)
	}
	return *id, nil
}

// Stats counts accounts and queued messages and sizes the database and the
// files in it.
func (s *pgStore) Stats(ctx context.Context) (storeStats, error) {
	var st storeStats
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM users), (SELECT count(*) FROM users WHERE disabled),
		(SELECT coalesce(sum(queued), 0) FROM cursors),
		pg_database_size(current_database()),
		(SELECT count(*) FROM blobs), (SELECT coalesce(sum(size), 0) FROM blobs)`).
		Scan(&st.Users, &st.Disabled, &st.Queued, &st.DBBytes, &st.Files, &st.FilesBytes)
	return st, s.interpretError(err)
}
