package main

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// CreateUser stores a new account with its (empty) queue cursor. The UNIQUE
// constraint, not a prior look-up, decides a race between two sign-ups.
func (s *sqliteStore) CreateUser(ctx context.Context, username, displayName, passwordHash string) (User, error) {
	u := User{Username: username, DisplayName: displayName}
	err := s.do(ctx, func(tx *writeTx) error {
		err := tx.queryRow(`INSERT INTO users (username, display_name, display_fold, password_hash, created_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`,
			username, displayName, strings.ToLower(displayName), passwordHash, unixMilli(tx.now)).Scan(&u.ID)
		if isUniqueViolation(err) {
			return errUsernameTaken
		}
		if err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO cursors (user_id) VALUES (?)`, u.ID)
		return err
	})
	return u, err
}

// AccountByName returns the account for login, or errNoSuchUser.
func (s *sqliteStore) AccountByName(ctx context.Context, username string) (account, error) {
	var a account
	err := s.read.QueryRowContext(ctx, `SELECT id, username, display_name, password_hash, disabled
		FROM users WHERE username = ?`, username).
		Scan(&a.ID, &a.Username, &a.DisplayName, &a.PasswordHash, &a.Disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return a, errNoSuchUser
	}
	return a, err
}

// userByName looks a user up inside a write transaction.
func (tx *writeTx) userByName(username string) (User, error) {
	u := User{Username: username}
	err := tx.queryRow(`SELECT id, display_name FROM users WHERE username = ?`, username).Scan(&u.ID, &u.DisplayName)
	if errors.Is(err, sql.ErrNoRows) {
		return u, errNoSuchUser
	}
	return u, err
}

// cachedUser is userByName remembered by the writer: names never change.
func (tx *writeTx) cachedUser(username string) (User, error) {
	if u, ok := tx.cache.users[username]; ok {
		return u, nil
	}
	u, err := tx.userByName(username)
	if err == nil {
		tx.cache.users[username] = u
	}
	return u, err
}

// SearchUsers lists users whose username or display name starts with prefix
// (case-insensitively), excluding the caller, ordered by username.
func (s *sqliteStore) SearchUsers(ctx context.Context, callerID int64, prefix string, limit int) ([]DirectoryEntry, error) {
	fold := strings.ToLower(prefix)
	// A prefix is a range of the index: [p, p + U+10FFFF).
	upper := fold + "\U0010FFFF"
	rows, err := s.read.QueryContext(ctx, `
		SELECT id, username, display_name,
			EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = ?1 AND f.friend_id = users.id)
		FROM users
		WHERE id <> ?1 AND ((username >= ?2 AND username < ?3) OR (display_fold >= ?2 AND display_fold < ?3))
		ORDER BY username LIMIT ?4`, callerID, fold, upper, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	users := []DirectoryEntry{}
	for rows.Next() {
		var e DirectoryEntry
		if err := rows.Scan(&e.ID, &e.Username, &e.DisplayName, &e.Friend); err != nil {
			return nil, err
		}
		users = append(users, e)
	}
	return users, rows.Err()
}
