package main

import (
	"context"
	"time"
)

// StartSession stores a new session for user and marks the older ones
// replaced, dropping the user's notices, in one commit.
func (s *pgStore) StartSession(ctx context.Context, user int64, h tokenHash) error {
	return s.do(func(tx *pgTx) error {
		now := unixMilli(tx.now)
		if _, err := tx.exec(`UPDATE sessions SET replaced = true WHERE user_id = $1 AND NOT replaced`, user); err != nil {
			return err
		}
		if _, err := tx.exec(`INSERT INTO sessions (token_hash, user_id, created_at, last_seen) VALUES ($1, $2, $3, $3)`,
			h[:], user, now); err != nil {
			return err
		}
		return tx.dropNotices(user)
	})
}

func (s *pgStore) EndSession(ctx context.Context, h tokenHash) error {
	return s.do(func(tx *pgTx) error {
		_, err := tx.exec(`DELETE FROM sessions WHERE token_hash = $1`, h[:])
		return err
	})
}

func (s *pgStore) ForgetSession(h tokenHash) {
	s.goDo(func(tx *pgTx) error {
		_, err := tx.exec(`DELETE FROM sessions WHERE token_hash = $1`, h[:])
		return err
	})
}

// LoadSession reads a session row with its user, or errUnauthorized.
func (s *pgStore) LoadSession(ctx context.Context, h tokenHash) (storedSession, error) {
	var row storedSession
	u := &row.User
	err := s.pool.QueryRow(ctx, `SELECT u.id, u.username, u.display_name, u.disabled, s.last_seen, s.replaced
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1`, h[:]).
		Scan(&u.ID, &u.Username, &u.DisplayName, &row.Disabled, &row.LastSeen, &row.Replaced)
	return row, s.readErr(err, errUnauthorized)
}

func (s *pgStore) SaveLastSeen(h tokenHash, ms int64) {
	s.goDo(func(tx *pgTx) error {
		_, err := tx.exec(`UPDATE sessions SET last_seen = greatest(last_seen, $1) WHERE token_hash = $2`, ms, h[:])
		return err
	})
}

func (s *pgStore) PruneSessions(ctx context.Context, unusedSince time.Time) error {
	return s.do(func(tx *pgTx) error {
		_, err := tx.exec(`DELETE FROM sessions WHERE last_seen < $1`, unixMilli(unusedSince))
		return err
	})
}
