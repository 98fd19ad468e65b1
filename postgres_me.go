package main

import (
	"context"
	"strings"
)

// Self-service on PostgreSQL (handlers_me.go); semantics are SQLite's
// (sqlite_me.go).

// SetDisplayName renames me and queues a user_updated notice for each online
// friend, in one commit. The name cache (s.users) holds ids only for what
// decides anything, so it needs no change.
func (s *pgStore) SetDisplayName(ctx context.Context, me User, displayName string) (User, error) {
	if !pgValidText(displayName) {
		return me, errInvalidDisplayName // validateDisplayName lets none through
	}
	u := me
	err := s.do(func(tx *pgTx) error {
		u = me
		res, err := tx.exec(`UPDATE users SET display_name = $1, display_fold = $2 WHERE id = $3`,
			displayName, strings.ToLower(displayName), me.ID)
		if err != nil {
			return err
		}
		if res.RowsAffected() == 0 {
			return errUnauthorized // deleted meanwhile: nothing was written
		}
		u.DisplayName = displayName
		friends, err := tx.friendIDs(me.ID)
		if err != nil {
			return err
		}
		who := u.jsonWithPresence(s.isOnline(me.ID))
		for _, f := range friends {
			if err := tx.notify(f, kindUserUpdated, who); err != nil {
				return err
			}
		}
		return nil
	})
	return u, err
}

// ChangePassword replaces user's hash and deletes every session of theirs
// but keep, so that no older token answers anything but unauthorized.
func (s *pgStore) ChangePassword(ctx context.Context, user int64, hash string, keep tokenHash) error {
	return s.do(func(tx *pgTx) error {
		res, err := tx.exec(`UPDATE users SET password_hash = $1 WHERE id = $2`, hash, user)
		if err != nil {
			return err
		}
		if res.RowsAffected() == 0 {
			return errUnauthorized
		}
		_, err = tx.exec(`DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2`, user, keep[:])
		return err
	})
}
