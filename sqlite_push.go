package main

import (
	"context"
	"database/sql"
	"errors"
)

// PushKey returns the VAPID key pair, making it on first use. A key made
// here is only a candidate: INSERT OR IGNORE lets the first commit win, and
// every caller reads back what is stored.
func (s *sqliteStore) PushKey(ctx context.Context) (vapidKey, error) {
	var k vapidKey
	err := s.read.QueryRowContext(ctx, `SELECT public_key, private_key FROM push_vapid WHERE id = 1`).Scan(&k.Public, &k.Private)
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return k, err
	}
	candidate, err := newVAPIDKey()
	if err != nil {
		return k, err
	}
	err = s.do(ctx, func(tx *writeTx) error {
		if _, err := tx.exec(`INSERT OR IGNORE INTO push_vapid (id, public_key, private_key, created_at) VALUES (1, ?, ?, ?)`,
			candidate.Public, candidate.Private, unixMilli(tx.now)); err != nil {
			return err
		}
		return tx.queryRow(`SELECT public_key, private_key FROM push_vapid WHERE id = 1`).Scan(&k.Public, &k.Private)
	})
	return k, err
}

func (s *sqliteStore) AddPushSubscription(ctx context.Context, user int64, sub pushSubscription) (created bool, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
		created = false
		var owner int64
		err := tx.queryRow(`SELECT user_id FROM push_subscriptions WHERE endpoint = ?`, sub.Endpoint).Scan(&owner)
		switch {
		case err == nil && owner == user:
			_, err := tx.exec(`UPDATE push_subscriptions SET p256dh = ?, auth = ?, host = ? WHERE endpoint = ?`,
				sub.P256dh, sub.Auth, sub.Host, sub.Endpoint)
			return err
		case err == nil:
			// Another account signed in on that browser before: the
			// endpoint is this user's now, and their newest.
			if _, err := tx.exec(`DELETE FROM push_subscriptions WHERE endpoint = ?`, sub.Endpoint); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := tx.exec(`INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, host, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, user, sub.Endpoint, sub.P256dh, sub.Auth, sub.Host, unixMilli(tx.now)); err != nil {
			return err
		}
		created = true
		_, err = tx.exec(`DELETE FROM push_subscriptions WHERE user_id = ?1 AND id NOT IN
			(SELECT id FROM push_subscriptions WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2)`, user, maxPushSubscriptions)
		return err
	})
	return created, err
}

func (s *sqliteStore) RemovePushSubscription(ctx context.Context, user int64, endpoint string) error {
	return s.do(ctx, func(tx *writeTx) error {
		_, err := tx.exec(`DELETE FROM push_subscriptions WHERE user_id = ? AND endpoint = ?`, user, endpoint)
		return err
	})
}

func (s *sqliteStore) DeletePushSubscription(ctx context.Context, endpoint string) error {
	return s.do(ctx, func(tx *writeTx) error {
		_, err := tx.exec(`DELETE FROM push_subscriptions WHERE endpoint = ?`, endpoint)
		return err
	})
}

func (s *sqliteStore) PushSubscriptions(ctx context.Context, user int64) ([]pushSubscription, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT endpoint, p256dh, auth, host FROM push_subscriptions
		WHERE user_id = ? ORDER BY id`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	subs := []pushSubscription{}
	for rows.Next() {
		var sub pushSubscription
		if err := rows.Scan(&sub.Endpoint, &sub.P256dh, &sub.Auth, &sub.Host); err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	return subs, rows.Err()
}
