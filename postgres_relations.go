package main

import (
	"context"
)

// Friendships, friend requests and blocks on PostgreSQL. As on SQLite each
// change is one write op that also queues the notice for the other user, so
// the change and its event commit together. Relations are read in the op's
// own transaction, never cached: another process may change them.

// pgRelation is how two users stand towards each other, seen from "me".
func (tx *pgTx) relation(me, other int64) (relation, error) {
	var r relation
	err := tx.queryRow(`SELECT
		EXISTS (SELECT 1 FROM friendships WHERE user_id = $1 AND friend_id = $2),
		EXISTS (SELECT 1 FROM friend_requests WHERE from_id = $1 AND to_id = $2),
		EXISTS (SELECT 1 FROM friend_requests WHERE from_id = $2 AND to_id = $1),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1)`, me, other).
		Scan(&r.friends, &r.requestedByMe, &r.requestedByIt, &r.iBlocked, &r.itBlocked)
	return r, err
}

func (tx *pgTx) makeFriends(a, b int64) error {
	if _, err := tx.exec(`DELETE FROM friend_requests WHERE (from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)`, a, b); err != nil {
		return err
	}
	_, err := tx.exec(`INSERT INTO friendships (user_id, friend_id, since) VALUES ($1, $2, $3), ($2, $1, $3)
		ON CONFLICT DO NOTHING`, a, b, unixMilli(tx.now))
	return err
}

// unlink ends any friendship and pending requests between a and b, and
// reports whether there was anything to end.
func (tx *pgTx) unlink(a, b int64) (bool, error) {
	r1, err := tx.exec(`DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)`, a, b)
	if err != nil {
		return false, err
	}
	r2, err := tx.exec(`DELETE FROM friend_requests WHERE (from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)`, a, b)
	if err != nil {
		return false, err
	}
	return r1.RowsAffected()+r2.RowsAffected() > 0, nil
}

// RequestFriend asks the user named to to be friends with me. If they had
// already asked me, the two become friends at once (completed = true).
func (s *pgStore) RequestFriend(ctx context.Context, me User, to string) (other User, completed bool, err error) {
	err = s.do(func(tx *pgTx) error {
		completed = false
		other, err = tx.userByName(to)
		if err != nil {
			return err
		}
		if other.ID == me.ID {
			return errBefriendSelf
		}
		r, err := tx.relation(me.ID, other.ID)
		switch {
		case err != nil:
			return err
		case r.iBlocked || r.itBlocked:
			return errBlocked
		case r.friends:
			return errAlreadyFriends
		case r.requestedByMe:
			return errAlreadyRequested
		case r.requestedByIt:
			completed = true
			if err := tx.makeFriends(me.ID, other.ID); err != nil {
				return err
			}
			return tx.notify(other.ID, kindFriendAccepted, me.jsonWithPresence(s.isOnline(me.ID)))
		}
		// A request another process stored meanwhile is no error here:
		// the relation was read before it committed.
		if _, err := tx.exec(`INSERT INTO friend_requests (from_id, to_id, created_at) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, me.ID, other.ID, unixMilli(tx.now)); err != nil {
			return err
		}
		return tx.notify(other.ID, kindFriendRequest, me.json())
	})
	return other, completed, err
}

// AcceptFriend accepts the pending request from the user named from.
func (s *pgStore) AcceptFriend(ctx context.Context, me User, from string) (other User, err error) {
	err = s.do(func(tx *pgTx) error {
		other, err = tx.userByName(from)
		if err != nil {
			return err
		}
		r, err := tx.relation(me.ID, other.ID)
		switch {
		case err != nil:
			return err
		case r.requestedByIt:
		case r.friends:
			return errAlreadyFriends
		default:
			return errNoSuchRequest
		}
		if err := tx.makeFriends(me.ID, other.ID); err != nil {
			return err
		}
		return tx.notify(other.ID, kindFriendAccepted, me.jsonWithPresence(s.isOnline(me.ID)))
	})
	return other, err
}

// RefuseFriend refuses the pending request from the user named from.
func (s *pgStore) RefuseFriend(ctx context.Context, me User, from string) (other User, err error) {
	err = s.do(func(tx *pgTx) error {
		other, err = tx.userByName(from)
		if err != nil {
			return err
		}
		res, err := tx.exec(`DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2`, other.ID, me.ID)
		if err != nil {
			return err
		}
		if res.RowsAffected() == 0 {
			return errNoSuchRequest
		}
		return tx.notify(other.ID, kindFriendRemoved, me.json())
	})
	return other, err
}

// RemoveFriend ends a friendship with, or withdraws my request to, the user
// named name.
func (s *pgStore) RemoveFriend(ctx context.Context, me User, name string) error {
	return s.do(func(tx *pgTx) error {
		other, err := tx.userByName(name)
		if err != nil {
			return err
		}
		res, err := tx.exec(`DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)`, me.ID, other.ID)
		if err != nil {
			return err
		}
		if res.RowsAffected() == 0 {
			res, err = tx.exec(`DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2`, me.ID, other.ID)
			if err != nil {
				return err
			}
			if res.RowsAffected() == 0 {
				return errNoSuchRequest
			}
		}
		return tx.notify(other.ID, kindFriendRemoved, me.json())
	})
}

// Block blocks the user named name: any friendship and requests between us
// end, and they can no longer ask or message me. Blocking twice is no error.
func (s *pgStore) Block(ctx context.Context, me User, name string) (other User, err error) {
	err = s.do(func(tx *pgTx) error {
		other, err = tx.userByName(name)
		if err != nil {
			return err
		}
		if other.ID == me.ID {
			return errBlockSelf
		}
		ended, err := tx.unlink(me.ID, other.ID)
		if err != nil {
			return err
		}
		if _, err := tx.exec(`INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, me.ID, other.ID, unixMilli(tx.now)); err != nil {
			return err
		}
		if ended {
			return tx.notify(other.ID, kindFriendRemoved, me.json())
		}
		return nil
	})
	return other, err
}

// Unblock lifts my block of the user named name; friendship is not restored.
func (s *pgStore) Unblock(ctx context.Context, me User, name string) error {
	return s.do(func(tx *pgTx) error {
		other, err := tx.userByName(name)
		if err != nil {
			return err
		}
		_, err = tx.exec(`DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2`, me.ID, other.ID)
		return err
	})
}

// FriendsOf reads me's friends and pending requests, each ordered by
// username (bytewise, as SQLite orders).
func (s *pgStore) FriendsOf(ctx context.Context, me int64) (Friends, error) {
	var f Friends
	var err error
	if f.Friends, err = s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM friendships x
		JOIN users u ON u.id = x.friend_id WHERE x.user_id = $1 ORDER BY u.username COLLATE "C"`, me); err != nil {
		return f, err
	}
	if f.Incoming, err = s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM friend_requests x
		JOIN users u ON u.id = x.from_id WHERE x.to_id = $1 ORDER BY u.username COLLATE "C"`, me); err != nil {
		return f, err
	}
	f.Outgoing, err = s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM friend_requests x
		JOIN users u ON u.id = x.to_id WHERE x.from_id = $1 ORDER BY u.username COLLATE "C"`, me)
	return f, err
}

// BlockedBy lists the users me has blocked, ordered by username.
func (s *pgStore) BlockedBy(ctx context.Context, me int64) ([]User, error) {
	return s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM blocks x
		JOIN users u ON u.id = x.blocked_id WHERE x.blocker_id = $1 ORDER BY u.username COLLATE "C"`, me)
}

// friendIDs lists me's friends' ids, for presence notices.
func (tx *pgTx) friendIDs(me int64) ([]int64, error) {
	rows, err := tx.query(`SELECT friend_id FROM friendships WHERE user_id = $1`, me)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *pgStore) usersWhere(ctx context.Context, query string, args ...any) ([]User, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.interpretError(err)
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Username, &u.DisplayName); err != nil {
			return nil, s.interpretError(err)
		}
		users = append(users, u)
	}
	return users, s.interpretError(rows.Err())
}
