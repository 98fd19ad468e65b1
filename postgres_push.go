package main

import (
	"context"
	"errors"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Web Push on PostgreSQL: the VAPID key every node shares and the users'
// subscriptions. Semantics are SQLite's (sqlite_push.go).

// PushKey returns the VAPID key pair, making it on first use. Nodes starting
// together each make a candidate; INSERT … ON CONFLICT DO NOTHING lets the
// first commit win (a racing insert waits for it and then does nothing), and
// the SELECT after it, a statement of its own, sees the winner's row.
func (s *pgStore) PushKey(ctx context.Context) (vapidKey, error) {
	var k vapidKey
	err := s.pool.QueryRow(ctx, `SELECT public_key, private_key FROM push_vapid WHERE id = 1`).Scan(&k.Public, &k.Private)
	if !errors.Is(err, pgx.ErrNoRows) {
		return k, s.interpretError(err)
	}
	candidate, err := newVAPIDKey()
	if err != nil {
		return k, err
	}
	err = s.do(func(tx *pgTx) error {
		if _, err := tx.exec(`INSERT INTO push_vapid (id, public_key, private_key, created_at) VALUES (1, $1, $2, $3)
			ON CONFLICT (id) DO NOTHING`, candidate.Public, candidate.Private, unixMilli(tx.now)); err != nil {
			return err
		}
		return tx.queryRow(`SELECT public_key, private_key FROM push_vapid WHERE id = 1`).Scan(&k.Public, &k.Private)
	})
	return k, err
}

// pgValidText reports whether s can be a text value at all: no NUL and
// valid UTF-8. A statement with anything else fails, and with it the whole
// batch's transaction.
func pgValidText(s string) bool { return pgText(s) && utf8.ValidString(s) }

// AddPushSubscription stores sub for user, taking the endpoint over from
// another user. The UNIQUE endpoint decides a race between nodes: the
// losing batch fails with 23505 and runs again, finding the row.
func (s *pgStore) AddPushSubscription(ctx context.Context, user int64, sub pushSubscription) (created bool, err error) {
	if !pgValidText(sub.Endpoint) || !pgValidText(sub.P256dh) || !pgValidText(sub.Auth) {
		return false, errInvalidSubscription // the handler's checks let none through
	}
	if !pgValidText(sub.Host) {
		// Only a trusted proxy's X-Forwarded-Host can carry such bytes: the
		// subject falls back to the server's own name.
		sub.Host = ""
	}
	err = s.do(func(tx *pgTx) error {
		created = false
		// The user's row, locked against deletion (as the foreign key
		// would, but a deleted user is a refusal here, not a failed batch).
		var exists int
		err := tx.queryRow(`SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE`, user).Scan(&exists)
		if errors.Is(err, pgx.ErrNoRows) {
			return errUnauthorized // deleted meanwhile
		}
		if err != nil {
			return err
		}
		var owner int64
		err = tx.queryRow(`SELECT user_id FROM push_subscriptions WHERE endpoint = $1 FOR UPDATE`, sub.Endpoint).Scan(&owner)
		switch {
		case err == nil && owner == user:
			_, err := tx.exec(`UPDATE push_subscriptions SET p256dh = $1, auth = $2, host = $3 WHERE endpoint = $4`,
				sub.P256dh, sub.Auth, sub.Host, sub.Endpoint)
			return err
		case err == nil:
			// Another account signed in on that browser before: the
			// endpoint is this user's now, and their newest.
			if _, err := tx.exec(`DELETE FROM push_subscriptions WHERE endpoint = $1`, sub.Endpoint); err != nil {
				return err
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if _, err := tx.exec(`INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, host, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, user, sub.Endpoint, sub.P256dh, sub.Auth, sub.Host, unixMilli(tx.now)); err != nil {
			return err
		}
		created = true
		_, err = tx.exec(`DELETE FROM push_subscriptions WHERE user_id = $1 AND id NOT IN
			(SELECT id FROM push_subscriptions WHERE user_id = $1 ORDER BY id DESC LIMIT $2)`, user, maxPushSubscriptions)
		return err
	})
	return created, err
}

// RemovePushSubscription deletes user's subscription with endpoint, if any.
func (s *pgStore) RemovePushSubscription(ctx context.Context, user int64, endpoint string) error {
	if !pgValidText(endpoint) {
		return nil // no stored endpoint is such a string
	}
	return s.do(func(tx *pgTx) error {
		_, err := tx.exec(`DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2`, user, endpoint)
		return err
	})
}

// DeletePushSubscription deletes the subscription with endpoint, whoever
// has it.
func (s *pgStore) DeletePushSubscription(ctx context.Context, endpoint string) error {
	if !pgValidText(endpoint) {
		return nil
	}
	return s.do(func(tx *pgTx) error {
		_, err := tx.exec(`DELETE FROM push_subscriptions WHERE endpoint = $1`, endpoint)
		return err
	})
}

// PushSubscriptions lists user's subscriptions, oldest first.
func (s *pgStore) PushSubscriptions(ctx context.Context, user int64) ([]pushSubscription, error) {
	rows, err := s.pool.Query(ctx, `SELECT endpoint, p256dh, auth, host FROM push_subscriptions
		WHERE user_id = $1 ORDER BY id`, user)
	if err != nil {
		return nil, s.interpretError(err)
	}
	defer rows.Close()
	subs := []pushSubscription{}
	for rows.Next() {
		var sub pushSubscription
		if err := rows.Scan(&sub.Endpoint, &sub.P256dh, &sub.Auth, &sub.Host); err != nil {
			return nil, s.interpretError(err)
		}
		subs = append(subs, sub)
	}
	return subs, s.interpretError(rows.Err())
}
