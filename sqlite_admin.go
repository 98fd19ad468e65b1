package main

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The store side of the admin commands (admin.go). Each change that a
// running server must act on at once (sessions to end, messages no longer
// queued) also writes a row of admin_events in the same transaction; the
// server reads new rows every adminCheckEvery (App.applyAdminEvents).

// ListUsers returns every account, by username.
func (s *sqliteStore) ListUsers(ctx context.Context) ([]adminUser, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT u.id, u.username, u.display_name, u.created_at, u.disabled,
			(SELECT count(*) FROM queue q WHERE q.user_id = u.id AND q.kind = ?)
		FROM users u ORDER BY u.username`, kindMessage)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []adminUser
	for rows.Next() {
		var u adminUser
		var created int64
		if err := rows.Scan(&u.ID, &u.Username, &u.DisplayName, &created, &u.Disabled, &u.Queued); err != nil {
			return nil, err
		}
		u.Created = fromMilli(created)
		out = append(out, u)
	}
	return out, rows.Err()
}

// adminEvent tells a running server that user's sessions are gone and the
// queues changed by queuedDelta messages.
func (tx *writeTx) adminEvent(user, queuedDelta int64) error {
	_, err := tx.exec(`INSERT INTO admin_events (user_id, queued_delta, at) VALUES (?, ?, ?)`,
		user, queuedDelta, unixMilli(tx.now))
	if err != nil {
		return err
	}
	// A day is far longer than any server takes to read them.
	_, err = tx.exec(`DELETE FROM admin_events WHERE at < ?`, unixMilli(tx.now.Add(-24*time.Hour)))
	return err
}

// endSessions deletes every session of user, so its tokens are unknown.
func (tx *writeTx) endSessions(user int64) error {
	_, err := tx.exec(`DELETE FROM sessions WHERE user_id = ?`, user)
	return err
}

// SetPassword replaces username's password hash and ends its sessions.
func (s *sqliteStore) SetPassword(ctx context.Context, username, hash string) error {
	return s.do(ctx, func(tx *writeTx) error {
		u, err := tx.userByName(username)
		if err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE users SET password_hash = ? WHERE id = ?`, hash, u.ID); err != nil {
			return err
		}
		if err := tx.endSessions(u.ID); err != nil {
			return err
		}
		return tx.adminEvent(u.ID, 0)
	})
}

// SetDisabled disables username (ending its sessions; login answers
// account_disabled) or enables it again. changed is false when it already
// was so.
func (s *sqliteStore) SetDisabled(ctx context.Context, username string, disabled bool) (changed bool, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
		u, err := tx.userByName(username)
		if err != nil {
			return err
		}
		res, err := tx.exec(`UPDATE users SET disabled = ? WHERE id = ? AND disabled <> ?`, disabled, u.ID, disabled)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		changed = n > 0
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

// DeleteUser removes username's account with its sessions, friendships,
// friend requests and blocks (both ways), its queue, and every message (and
// file) no other queue holds any more. Messages it sent stay in their
// recipients' queues: they carry the sender's name.
func (s *sqliteStore) DeleteUser(ctx context.Context, username string) (deletedUser, error) {
	var d deletedUser
	err := s.do(ctx, func(tx *writeTx) error {
		d = deletedUser{}
		u, err := tx.userByName(username)
		if err != nil {
			return err
		}
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
		const held = `SELECT message_id FROM queue WHERE user_id = ?1 AND kind = 1`
		if d.Queued, d.Files, err = tx.releaseMessages(held, u.ID); err != nil {
			return err
		}
		if _, err := tx.exec(`DELETE FROM queue WHERE user_id = ?`, u.ID); err != nil {
			return err
		}
		// Owned groups pass to their next member first: the owner's row
		// must not outlive the user.
		if err := tx.leaveAllGroups(u.ID); err != nil {
			return err
		}
		// Sessions, cursor, friendships, requests, blocks, read markers and push
		// subscriptions cascade.
		if _, err := tx.exec(`DELETE FROM users WHERE id = ?`, u.ID); err != nil {
			return err
		}
		// The writer's cache knows the user by name, their relations and
		// their cursor: a deletion from this process (DELETE /api/me) does
		// not move data_version, which resets it for admin commands.
		tx.cache.reset()
		tx.forgetTail(u.ID)
		if err := tx.adminEvent(u.ID, -d.Queued); err != nil {
			return err
		}
		return nil
	})
	return d, err
}

// AdminEventsAfter returns the admin events after id, oldest first. The
// queued gauge moves by what they removed: the command's process kept its own.
func (s *sqliteStore) AdminEventsAfter(ctx context.Context, id int64) ([]adminEventRow, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, user_id, queued_delta FROM admin_events WHERE id > ? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []adminEventRow
	for rows.Next() {
		var e adminEventRow
		if err := rows.Scan(&e.ID, &e.User, &e.QueuedDelta); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, e := range out {
		s.queued.Add(e.QueuedDelta)
	}
	return out, nil
}

// LastAdminEvent is the id of the newest admin event, 0 for none.
func (s *sqliteStore) LastAdminEvent(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT max(id) FROM admin_events`).Scan(&id)
	return id.Int64, err
}

// Stats counts accounts and queued messages and sizes the files.
func (s *sqliteStore) Stats(ctx context.Context) (storeStats, error) {
	var st storeStats
	err := s.read.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(disabled), 0), (SELECT count(*) FROM queue WHERE kind = ?) FROM users`,
		kindMessage).Scan(&st.Users, &st.Disabled, &st.Queued)
	if err != nil {
		return st, err
	}
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(s.path + suffix); err == nil {
			st.DBBytes += fi.Size()
		}
	}
	err = filepath.WalkDir(s.filesDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted meanwhile
			}
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				st.Files++
				st.FilesBytes += fi.Size()
			}
		}
		return nil
	})
	return st, err
}
