package main

// The WAL is checkpointed off the writer's path. SQLite's automatic
// checkpoint runs inside the commit that crosses its threshold: that commit,
// and every send waiting on it, would wait for a thousand pages to be copied
// into the main file and for that file's fsync. Here a goroutine with its own
// connection copies them while the writer goes on committing.
//
// A checkpoint that runs beside the writer never finds the WAL fully copied
// (the writer has appended more meanwhile), and SQLite only rewinds the WAL
// to its start once it is. So when the WAL has grown past walRewindFrames,
// the writer itself checkpoints the little that is left before its next
// transaction, and that transaction starts the WAL afresh: the file stays
// bounded under a load that never pauses.

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

const (
	// checkpointEveryPages is about how many pages the writer commits
	// between two requests to the checkpointer, as SQLite's own automatic
	// checkpoint would: checkpointing more often copies the pages every
	// commit touches (the tables' last pages) over and over.
	checkpointEveryPages = 1000
	// pagesPerCommit and pagesPerOp estimate a commit's pages: the few
	// every commit dirties, and about two per operation (a send touches
	// both users' queues, the messages table and its index, some shared).
	pagesPerCommit = 4
	pagesPerOp     = 2
	// walRewindFrames is the WAL length (in 4 KiB pages) past which the
	// writer catches up so the WAL can start again from the beginning.
	walRewindFrames = 4096
)

type checkpointer struct {
	db  *sql.DB
	due chan struct{} // capacity 1: "commits since the last checkpoint"
	// rewind asks the writer to finish the checkpoint itself.
	rewind  atomic.Bool
	stopped chan struct{}
	pages   int // writer goroutine only: pages committed since the last request

	rewindFrames int
	log          func(msg string, args ...any)

	// running is held across a checkpoint, so now can wait for one.
	running sync.Mutex
}

func newCheckpointer(path string, warn func(msg string, args ...any)) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	c := &checkpointer{db: db, due: make(chan struct{}, 1), stopped: make(chan struct{}),
		rewindFrames: walRewindFrames, log: warn}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.stopped)
	for range c.due {
		if err := c.now(); err != nil {
			c.log("wal checkpoint failed", "err", err)
		}
	}
}

// now checkpoints at once (waiting for one under way), so a test can know
// that the checkpointer will not write what is already in the WAL.
func (c *checkpointer) now() error {
	c.running.Lock()
	defer c.running.Unlock()
	frames, err := checkpointPassive(context.Background(), c.db)
	if err == nil && frames >= c.rewindFrames {
		c.rewind.Store(true)
	}
	return err
}

// committed is the writer's note of a commit of ops operations.
func (c *checkpointer) committed(ops int) {
	c.pages += pagesPerCommit + pagesPerOp*ops
	if c.pages < checkpointEveryPages {
		return
	}
	select {
	case c.due <- struct{}{}:
		c.pages = 0
	default: // one is running; it will see these commits' frames too
	}
}

// catchUp runs on the writer's connection between transactions when the WAL
// has grown long: it copies what the checkpointer has not yet, so the next
// transaction rewinds the WAL.
func (c *checkpointer) catchUp(ctx context.Context, conn *sql.Conn) error {
	if !c.rewind.Swap(false) {
		return nil
	}
	_, err := checkpointPassive(ctx, conn)
	return err
}

func (c *checkpointer) close() error {
	close(c.due)
	<-c.stopped
	return c.db.Close()
}

// checkpointPassive copies what it can of the WAL into the main file without
// waiting for anyone, and says how many frames the WAL holds.
// (Both *sql.DB and *sql.Conn can run it.)
func checkpointPassive(ctx context.Context, db interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (frames int, err error) {
	var busy, copied int
	err = db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
	return frames, err
}
