package main

import (
	"context"
	"time"
)

// Ephemeral events (typing) on SQLite: in memory only.
//
// A typing event must carry a seq of the recipient's queue like every other
// event, or a client's cursor would stop meaning "everything up to here":
// so the writer hands it the queue's next seq, as for a durable event, but
// writes no row and puts the event only into the recipient's in-memory tail
// (tails.go), where polls find it. A later durable event takes a seq after
// it, so no client ever skips one.
//
// What must not happen is a seq handed out twice: a client whose cursor is
// a typing event's seq would miss the durable event that took the same seq
// after a restart forgot it. The writer therefore remembers, for the
// process's life, the highest seq given to each queue (seqFloor), which
// survives its cache being dropped; Close saves those seqs to the cursor
// rows (a counter, not the events); and engine_state.unsaved_seqs is 1
// while the server runs, so after a crash, which saves nothing, each
// queue's first seq is taken seqGapAfterCrash past its last stored one.
// A user gets at most seqGapAfterCrash/2 ephemeral events in a row without a
// stored one in between (further ones are dropped, as transient events may
// be), so the gap always covers what a crash lost.
const seqGapAfterCrash = 1 << 16

// seqFloor is what the writer keeps of a queue beyond its cache: the
// highest seq it handed out, and the highest one a restart after a crash
// would not hand out again (stored, or the start's gap).
type seqFloor struct{ seq, safe int64 }

// QueueEphemeral gives each of users who is online and has a tail its own
// copy of e with the next seq of their queue, and wakes their polls.
func (s *sqliteStore) QueueEphemeral(users []int64, e Event) {
	s.goDo(func(tx *writeTx) error {
		for _, u := range users {
			if !tx.s.isOnline(u) || !tx.s.tails.has(u) {
				continue // nobody to show it to: a poll reading the database would not see it
			}
			c, err := tx.cursor(u)
			if err != nil {
				return err
			}
			if c.lastSeq-c.stored >= seqGapAfterCrash/2 {
				continue
			}
			c.lastSeq++
			tx.s.seqFloor[u] = seqFloor{seq: c.lastSeq, safe: c.stored}
			ev := e
			ev.Seq = c.lastSeq
			ev.At = apiTime(tx.now)
			ev.ephemeral = true
			tx.tail(func(t *tails) { t.add(u, ev) })
			tx.wakeUser(u)
		}
		return nil
	})
}

// openSeqState reads whether the last server stopped without saving its
// ephemeral seqs, and marks this one as running, before the writer starts.
func (s *sqliteStore) openSeqState() error {
	ctx := context.Background()
	var unsaved int64
	if err := s.write.QueryRowContext(ctx, `SELECT value FROM engine_state WHERE key = 'unsaved_seqs'`).Scan(&unsaved); err != nil {
		return err
	}
	s.seqGap = unsaved != 0
	if !s.seqGap {
		if _, err := s.write.ExecContext(ctx, `UPDATE engine_state SET value = 1 WHERE key = 'unsaved_seqs'`); err != nil {
			return err
		}
	}
	return nil
}

// saveSeqState writes the highest seq given to each queue, so the next
// server continues after them, and marks the state saved.
func (s *sqliteStore) saveSeqState() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.do(ctx, func(tx *writeTx) error {
		for u, f := range tx.s.seqFloor {
			if _, err := tx.exec(`UPDATE cursors SET last_seq = max(last_seq, ?) WHERE user_id = ?`, f.seq, u); err != nil {
				return err
			}
		}
		_, err := tx.exec(`UPDATE engine_state SET value = 0 WHERE key = 'unsaved_seqs'`)
		return err
	})
}
