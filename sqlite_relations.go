package main

import (
	"context"
)

// Friendships, friend requests and blocks. Every change runs as one write op
// that also queues the notice for the other user it concerns, so the change
// and its event commit together.

// relation is how two users stand towards each other, seen from "me".
type relation struct {
	friends       bool
	requestedByMe bool // an outgoing request me → other is pending
	requestedByIt bool // an incoming request other → me is pending
	iBlocked      bool
	itBlocked     bool
}

func (tx *writeTx) relation(me, other int64) (relation, error) {
	var r relation
	err := tx.queryRow(`SELECT
		EXISTS (SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2),
		EXISTS (SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2),
		EXISTS (SELECT 1 FROM friend_requests WHERE from_id = ?2 AND to_id = ?1),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?2 AND blocked_id = ?1)`, me, other).
		Scan(&r.friends, &r.requestedByMe, &r.requestedByIt, &r.iBlocked, &r.itBlocked)
	return r, err
}

// checkMayMessage allows a message only between friends with no block either way.
func (tx *writeTx) checkMayMessage(from, to int64) error {
	var friends, blocked bool
	err := tx.queryRow(`SELECT
		EXISTS (SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2),
		EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = ?1 AND blocked_id = ?2) OR (blocker_id = ?2 AND blocked_id = ?1))`,
		from, to).Scan(&friends, &blocked)
	switch {
	case err != nil:
		return err
	case blocked:
		return errBlocked
	case !friends:
		return errNotFriends
	}
	return nil
}

// mayMessage is checkMayMessage remembered by the writer. Every op that
// changes a friendship or block forgets the pair first (relationChanging).
func (tx *writeTx) mayMessage(from, to int64) error {
	key := pairKey(from, to)
	if err, ok := tx.cache.mayMessage[key]; ok {
		return err
	}
	err := tx.checkMayMessage(from, to)
	if err == nil || isClientError(err) {
		tx.cache.mayMessage[key] = err
	}
	return err
}

// relationChanging forgets what the cache knows of a and b.
func (tx *writeTx) relationChanging(a, b int64) { delete(tx.cache.mayMessage, pairKey(a, b)) }

func (tx *writeTx) makeFriends(a, b int64) error {
	tx.relationChanging(a, b)
	if _, err := tx.exec(`DELETE FROM friend_requests WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)`, a, b); err != nil {
		return err
	}
	_, err := tx.exec(`INSERT OR IGNORE INTO friendships (user_id, friend_id, since) VALUES (?1, ?2, ?3), (?2, ?1, ?3)`, a, b, unixMilli(tx.now))
	return err
}

// unlink ends any friendship and pending requests between a and b, and
// reports whether there was anything to end.
func (tx *writeTx) unlink(a, b int64) (bool, error) {
	tx.relationChanging(a, b)
	r1, err := tx.exec(`DELETE FROM friendships WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)`, a, b)
	if err != nil {
		return false, err
	}
	r2, err := tx.exec(`DELETE FROM friend_requests WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)`, a, b)
	if err != nil {
		return false, err
	}
	n1, _ := r1.RowsAffected()
	n2, _ := r2.RowsAffected()
	return n1+n2 > 0, nil
}

// notify queues a notice about me for other, if other is online to get it:
// notices are transient, so an offline user would only have them dropped.
func (tx *writeTx) notify(other int64, kind int, me userJSON) error {
	if !tx.s.isOnline(other) {
		return nil
	}
	return tx.addNotice(other, kind, me)
}

// RequestFriend asks the user named to to be friends with me. If they had
// already asked me, the two become friends at once (completed = true).
func (s *sqliteStore) RequestFriend(ctx context.Context, me User, to string) (other User, completed bool, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
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
		if _, err := tx.exec(`INSERT INTO friend_requests (from_id, to_id, created_at) VALUES (?, ?, ?)`,
			me.ID, other.ID, unixMilli(tx.now)); err != nil {
			return err
		}
		return tx.notify(other.ID, kindFriendRequest, me.json())
	})
	return other, completed, err
}

// AcceptFriend accepts the pending request from the user named from.
func (s *sqliteStore) AcceptFriend(ctx context.Context, me User, from string) (other User, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
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

// RefuseFriend refuses the pending request from the user named from; they
// may ask again later.
func (s *sqliteStore) RefuseFriend(ctx context.Context, me User, from string) (other User, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
		other, err = tx.userByName(from)
		if err != nil {
			return err
		}
		res, err := tx.exec(`DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?`, other.ID, me.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNoSuchRequest
		}
		return tx.notify(other.ID, kindFriendRemoved, me.json())
	})
	return other, err
}

// RemoveFriend ends a friendship with, or withdraws my request to, the user
// named name.
func (s *sqliteStore) RemoveFriend(ctx context.Context, me User, name string) error {
	return s.do(ctx, func(tx *writeTx) error {
		other, err := tx.userByName(name)
		if err != nil {
			return err
		}
		tx.relationChanging(me.ID, other.ID)
		res, err := tx.exec(`DELETE FROM friendships WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)`, me.ID, other.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			res, err = tx.exec(`DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?`, me.ID, other.ID)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return errNoSuchRequest
			}
		}
		return tx.notify(other.ID, kindFriendRemoved, me.json())
	})
}

// Block blocks the user named name: any friendship and requests between us
// end, and they can no longer ask or message me. Blocking twice is no error.
func (s *sqliteStore) Block(ctx context.Context, me User, name string) (other User, err error) {
	err = s.do(ctx, func(tx *writeTx) error {
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
		tx.relationChanging(me.ID, other.ID)
		if _, err := tx.exec(`INSERT OR IGNORE INTO blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)`,
			me.ID, other.ID, unixMilli(tx.now)); err != nil {
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
func (s *sqliteStore) Unblock(ctx context.Context, me User, name string) error {
	return s.do(ctx, func(tx *writeTx) error {
		other, err := tx.userByName(name)
		if err != nil {
			return err
		}
		tx.relationChanging(me.ID, other.ID)
		_, err = tx.exec(`DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?`, me.ID, other.ID)
		return err
	})
}

// Friends is a user's friend list with its pending requests both ways.
type Friends struct {
	Friends, Incoming, Outgoing []User
}

// FriendsOf reads me's friends and pending requests, each ordered by username.
func (s *sqliteStore) FriendsOf(ctx context.Context, me int64) (Friends, error) {
	var f Friends
	var err error
	if f.Friends, err = s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM friendships x
		JOIN users u ON u.id = x.friend_id WHERE x.user_id = ? ORDER BY u.username`, me); err != nil {
		return f, err
	}
	if f.Incoming, err = s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM friend_requests x
		JOIN users u ON u.id = x.from_id WHERE x.to_id = ? ORDER BY u.username`, me); err != nil {
		return f, err
	}
	f.Outgoing, err = s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM friend_requests x
		JOIN users u ON u.id = x.to_id WHERE x.from_id = ? ORDER BY u.username`, me)
	return f, err
}

// BlockedBy lists the users me has blocked, ordered by username.
func (s *sqliteStore) BlockedBy(ctx context.Context, me int64) ([]User, error) {
	return s.usersWhere(ctx, `SELECT u.id, u.username, u.display_name FROM blocks x
		JOIN users u ON u.id = x.blocked_id WHERE x.blocker_id = ? ORDER BY u.username`, me)
}

// FriendIDs lists me's friends' ids, for presence notices.
func (tx *writeTx) friendIDs(me int64) ([]int64, error) {
	rows, err := tx.query(`SELECT friend_id FROM friendships WHERE user_id = ?`, me)
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

// relatedIDs lists the users me is friends with or has a pending request
// with, either way.
func (tx *writeTx) relatedIDs(me int64) ([]int64, error) {
	rows, err := tx.query(`SELECT friend_id FROM friendships WHERE user_id = ?1
		UNION SELECT to_id FROM friend_requests WHERE from_id = ?1
		UNION SELECT from_id FROM friend_requests WHERE to_id = ?1`, me)
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

func (s *sqliteStore) usersWhere(ctx context.Context, query string, args ...any) ([]User, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Username, &u.DisplayName); err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, rows.Err()
}
