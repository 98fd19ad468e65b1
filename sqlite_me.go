package main

import (
	"context"
	"strings"
)

// SetDisplayName renames me and tells each online friend (user_updated), in
// one commit.
func (s *sqliteStore) SetDisplayName(ctx context.Context, me User, displayName string) (User, error) {
	u := me
	err := s.do(ctx, func(tx *writeTx) error {
		res, err := tx.exec(`UPDATE users SET display_name = ?, display_fold = ? WHERE id = ?`,
			displayName, strings.ToLower(displayName), me.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errUnauthorized // deleted meanwhile
		}
		// The writer remembers users by name; should this op be undone, a
		// forgotten entry is merely read again.
		delete(tx.cache.users, me.Username)
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

// ChangePassword replaces user's hash and deletes their other sessions: the
// replaced ones would only have answered session_replaced, but a password
// change is when no old token should answer anything but unauthorized.
func (s *sqliteStore) ChangePassword(ctx context.Context, user int64, hash string, keep tokenHash) error {
	return s.do(ctx, func(tx *writeTx) error {
		res, err := tx.exec(`UPDATE users SET password_hash = ? WHERE id = ?`, hash, user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errUnauthorized
		}
		_, err = tx.exec(`DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?`, user, keep[:])
		return err
	})
}
