package main

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CreateUser stores a new account with its (empty) queue cursor. The UNIQUE
// constraint, not a prior look-up, decides a race between two sign-ups: ON
// CONFLICT makes a taken name a refusal rather than an error, which would
// abort the whole batch's transaction.
func (s *pgStore) CreateUser(ctx context.Context, username, displayName, passwordHash string) (User, error) {
	u := User{Username: username, DisplayName: displayName}
	err := s.do(func(tx *pgTx) error {
		err := tx.queryRow(`INSERT INTO users (username, display_name, display_fold, password_hash, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING RETURNING id`,
			username, displayName, strings.ToLower(displayName), passwordHash, unixMilli(tx.now)).Scan(&u.ID)
		if errors.Is(err, pgx.ErrNoRows) {
			return errUsernameTaken
		}
		if err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO cursors (user_id) VALUES ($1)`, u.ID)
		return err
	})
	return u, err
}

// AccountByName returns the account for login, or errNoSuchUser.
func (s *pgStore) AccountByName(ctx context.Context, username string) (account, error) {
	var a account
	if !pgText(username) {
		return a, errNoSuchUser
	}
	err := s.pool.QueryRow(ctx, `SELECT id, username, display_name, password_hash, disabled
		FROM users WHERE username = $1`, username).
		Scan(&a.ID, &a.Username, &a.DisplayName, &a.PasswordHash, &a.Disabled)
	return a, s.readErr(err, errNoSuchUser)
}

// userByName looks a user up inside a write transaction.
func (tx *pgTx) userByName(username string) (User, error) {
	u := User{Username: username}
	if !pgText(username) {
		return u, errNoSuchUser
	}
	err := tx.queryRow(`SELECT id, display_name FROM users WHERE username = $1`, username).Scan(&u.ID, &u.DisplayName)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, errNoSuchUser
	}
	return u, err
}

// SearchUsers lists users whose username or display name starts with prefix
// (case-insensitively), excluding the caller, ordered by username. The
// comparisons are bytewise (COLLATE "C"), as SQLite's.
func (s *pgStore) SearchUsers(ctx context.Context, callerID int64, prefix string, limit int) ([]DirectoryEntry, error) {
	if !pgText(prefix) {
		// No name holds a NUL, and Postgres text cannot hold one to compare.
		return []DirectoryEntry{}, nil
	}
	fold := strings.ToLower(prefix)
	upper := fold + "\U0010FFFF"
	rows, err := s.pool.Query(ctx, `
		SELECT id, username, display_name,
			EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = $1 AND f.friend_id = users.id)
		FROM users
		WHERE id <> $1 AND ((username COLLATE "C" >= $2 AND username COLLATE "C" < $3)
			OR (display_fold COLLATE "C" >= $2 AND display_fold COLLATE "C" < $3))
		ORDER BY username COLLATE "C" LIMIT $4`, callerID, fold, upper, limit)
	if err != nil {
		return nil, s.interpretError(err)
	}
	defer rows.Close()
	users := []DirectoryEntry{}
	for rows.Next() {
		var e DirectoryEntry
		if err := rows.Scan(&e.ID, &e.Username, &e.DisplayName, &e.Friend); err != nil {
			return nil, s.interpretError(err)
		}
		users = append(users, e)
	}
	return users, s.interpretError(rows.Err())
}

// pgText reports whether s can be a text parameter: Postgres refuses NUL in
// text (the whole batch's transaction would fail with it), and no username
// or display name holds one, so a string with NUL matches nothing.
func pgText(s string) bool { return !strings.ContainsRune(s, 0) }
