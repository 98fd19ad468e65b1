package main

import (
	"context"
	"time"
)

// Failed logins counted in the database, so that N nodes give an attacker
// the attempts of one (ratelimit.go keeps the same limits in memory, which
// still hold the places of attempts in flight on this node). Each key's
// failures are summed in buckets of a tenth of its window: one upsert per
// failed login, one indexed read per login attempt. A bucket counts while
// any part of it is inside the window, so the database refuses a little
// longer than the exact sliding window would, never shorter.

const (
	pgScopeName = 1
	pgScopeAddr = 2
	// pgFailureBuckets is how many buckets a window is cut into.
	pgFailureBuckets = 10
	// pgFailurePrune is how often a node deletes buckets out of every window.
	pgFailurePrune = time.Minute
)

type pgFailures struct {
	s              *pgStore
	byName, byAddr windowRule
}

func (s *pgStore) LoginFailures(byName, byAddr windowRule) sharedFailures {
	f := &pgFailures{s: s, byName: byName, byAddr: byAddr}
	if !s.shared {
		s.bg.Add(1)
		go f.prune()
	}
	return f
}

func bucketWidth(r windowRule) int64 {
	return max(1, r.window.Milliseconds()/pgFailureBuckets)
}

// oldestBucket is the start of the oldest bucket that still reaches into the
// window ending at now.
func oldestBucket(r windowRule, now int64) int64 {
	return now - r.window.Milliseconds() - bucketWidth(r) + 1
}

func (f *pgFailures) RetryAfter(ctx context.Context, name, addr string) (time.Duration, error) {
	now := unixMilli(time.Now())
	rows, err := f.s.pool.Query(ctx, `SELECT scope, bucket, failures FROM login_failures
		WHERE (scope = $1 AND key = $2 AND bucket >= $3) OR (scope = $4 AND key = $5 AND bucket >= $6)
		ORDER BY bucket`,
		pgScopeName, name, oldestBucket(f.byName, now), pgScopeAddr, addr, oldestBucket(f.byAddr, now))
	if err != nil {
		return 0, f.s.interpretError(err)
	}
	defer rows.Close()
	type bucket struct{ start, n int64 }
	var byScope [3][]bucket
	for rows.Next() {
		var scope int16
		var b bucket
		if err := rows.Scan(&scope, &b.start, &b.n); err != nil {
			return 0, f.s.interpretError(err)
		}
		if scope == pgScopeName || scope == pgScopeAddr {
			byScope[scope] = append(byScope[scope], b)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, f.s.interpretError(err)
	}
	// How long until the failures left in the window are below the limit:
	// the oldest buckets leave first, each a window after it ended.
	wait := func(r windowRule, buckets []bucket) time.Duration {
		var total int64
		for _, b := range buckets {
			total += b.n
		}
		for _, b := range buckets {
			if total < int64(r.limit) {
				return 0
			}
			total -= b.n
			if total < int64(r.limit) {
				return time.Duration(b.start+bucketWidth(r)+r.window.Milliseconds()-now) * time.Millisecond
			}
		}
		return 0
	}
	return max(wait(f.byName, byScope[pgScopeName]), wait(f.byAddr, byScope[pgScopeAddr])), nil
}

// Record counts a failure under both keys in one statement, before the 401
// is sent: the attacker's next try, on whichever node, sees it.
func (f *pgFailures) Record(ctx context.Context, name, addr string) error {
	now := unixMilli(time.Now())
	wn, wa := bucketWidth(f.byName), bucketWidth(f.byAddr)
	_, err := f.s.pool.Exec(ctx, `INSERT INTO login_failures (scope, key, bucket, failures)
		VALUES ($1, $2, $3, 1), ($4, $5, $6, 1)
		ON CONFLICT (scope, key, bucket) DO UPDATE SET failures = login_failures.failures + 1`,
		pgScopeName, name, now-now%wn, pgScopeAddr, addr, now-now%wa)
	return f.s.interpretError(err)
}

// prune deletes the buckets no window reaches any more, so the table follows
// recent failures, not every name ever tried.
func (f *pgFailures) prune() {
	defer f.s.bg.Done()
	t := time.NewTicker(pgFailurePrune)
	defer t.Stop()
	for {
		select {
		case <-f.s.quit:
			return
		case <-t.C:
			now := unixMilli(time.Now())
			ctx, cancel := context.WithTimeout(context.Background(), pgBatchTimeout)
			_, err := f.s.pool.Exec(ctx, `DELETE FROM login_failures WHERE (scope = $1 AND bucket < $2) OR (scope = $3 AND bucket < $4)`,
				pgScopeName, oldestBucket(f.byName, now), pgScopeAddr, oldestBucket(f.byAddr, now))
			cancel()
			if err != nil {
				f.s.log.Warn("pruning failed logins failed", "err", err)
			}
		}
	}
}
