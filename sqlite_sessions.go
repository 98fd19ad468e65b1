package main

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// StartSession stores a new session for user and marks the older ones
// replaced (kept, so their tokens answer session_replaced until they would
// have expired), dropping the user's notices, in one commit.
func (s *sqliteStore) StartSession(ctx context.Context, user int64, h tokenHash) error {
	return s.do(ctx, func(tx *writeTx) error {
		now := unixMilli(tx.now)
		if _, err := tx.exec(`UPDATE sessions SET replaced = 1 WHERE user_id = ? AND replaced = 0`, user); err != nil {
			return err
		}
		if _, err := tx.exec(`INSERT INTO sessions (token_hash, user_id, created_at, last_seen) VALUES (?, ?, ?, ?)`,
			h[:], user, now, now); err != nil {
			return err
		}
		return tx.dropNotices(user)
	})
}

func (s *sqliteStore) EndSession(ctx context.Context, h tokenHash) error {
	return s.do(ctx, func(tx *writeTx) error {
		_, err := tx.exec(`DELETE FROM sessions WHERE token_hash = ?`, h[:])
		return err
	})
}

func (s *sqliteStore) ForgetSession(h tokenHash) {
	s.goDo(func(tx *writeTx) error {
		_, err := tx.exec(`DELETE FROM sessions WHERE token_hash = ?`, h[:])
		return err
	})
}

// LoadSession reads a session row with its user, or errUnauthorized.
func (s *sqliteStore) LoadSession(ctx context.Context, h tokenHash) (storedSession, error) {
	var row storedSession
	u := &row.User
	err := s.read.QueryRowContext(ctx, `SELECT u.id, u.username, u.display_name, u.disabled, s.last_seen, s.replaced
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?`, h[:]).
		Scan(&u.ID, &u.Username, &u.DisplayName, &row.Disabled, &row.LastSeen, &row.Replaced)
	if errors.Is(err, sql.ErrNoRows) {
		return row, errUnauthorized
	}
	return row, err
}

func (s *sqliteStore) SaveLastSeen(h tokenHash, ms int64) {
	s.goDo(func(tx *writeTx) error {
		_, err := tx.exec(`UPDATE sessions SET last_seen = max(last_seen, ?) WHERE token_hash = ?`, ms, h[:])
		return err
	})
}

func (s *sqliteStore) PruneSessions(ctx context.Context, unusedSince time.Time) error {
	return s.do(ctx, func(tx *writeTx) error {
		_, err := tx.exec(`DELETE FROM sessions WHERE last_seen < ?`, unixMilli(unusedSince))
		return err
	})
}
