package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// user is one signed-in account of the run.
type user struct {
	idx   int
	name  string
	token string
}

// tokenCache keeps session tokens between runs in a JSON file (username →
// token), so a run over thousands of prepared users skips their logins: each
// login costs a deliberately slow password hash. A token the server no longer
// knows is simply replaced by a new login.
type tokenCache struct {
	path string
	mu   sync.Mutex
	m    map[string]string
}

func loadTokenCache(path string) *tokenCache {
	tc := &tokenCache{path: path, m: make(map[string]string)}
	if path == "" {
		return tc
	}
	if data, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(data, &tc.m)
	}
	return tc
}

func (tc *tokenCache) get(name string) string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.m[name]
}

func (tc *tokenCache) put(name, token string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.m[name] = token
}

// save writes the cache atomically (write, then rename).
func (tc *tokenCache) save() error {
	if tc.path == "" {
		return nil
	}
	tc.mu.Lock()
	data, err := json.Marshal(tc.m)
	tc.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := tc.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, tc.path)
}

// setupStats says how the users of a run got their sessions.
type setupStats struct {
	Users   int     `json:"users"`
	Cached  int     `json:"cached_tokens"`
	Signups int     `json:"signups"`
	Logins  int     `json:"logins"`
	Seconds float64 `json:"seconds"`
}

// retryable runs f until it succeeds, fails with something other than a 429
// or a transport error, or attempts run out; it honours Retry-After.
func retryable(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		err = f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		wait := time.Duration(attempt+1) * 200 * time.Millisecond
		var ae *apiError
		if errors.As(err, &ae) {
			if ae.Status != 429 && ae.Status != 503 {
				return err
			}
			if ae.RetryAfter > 0 {
				wait = ae.RetryAfter
			}
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// setupUsers gives every name a live session, conc at a time: a cached token
// that still works, else sign-up (409 username_taken means the user exists
// from an earlier run) and login. With loginFirst, for users known to exist,
// it tries the login first and signs up only after a 401, which saves one
// password hash per existing user.
func setupUsers(ctx context.Context, c *client, names []string, password string, conc int, loginFirst bool, tc *tokenCache, lg *logger) ([]*user, setupStats, error) {
	st := setupStats{Users: len(names)}
	t0 := time.Now()
	users := make([]*user, len(names))
	var done, cached, signups, logins atomic.Int64
	var firstErr error
	var errOnce sync.Once
	jobs := make(chan int)
	var wg sync.WaitGroup
	lastSave := time.Now()
	stop := lg.progress(ctx, func() string {
		// Keep the logins done so far, should the run be cut short.
		if time.Since(lastSave) >= 10*time.Second {
			lastSave = time.Now()
			if err := tc.save(); err != nil {
				lg.printf("token cache: %v", err)
			}
		}
		return fmt.Sprintf("setup: %d/%d users (%d cached, %d logins)", done.Load(), len(names), cached.Load(), logins.Load())
	})
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				name := names[i]
				u := &user{idx: i, name: name}
				if tok := tc.get(name); tok != "" && c.me(ctx, tok) == nil {
					u.token = tok
					cached.Add(1)
				} else {
					login := func() error {
						return retryable(ctx, func() error {
							tok, err := c.login(ctx, name, password)
							u.token = tok
							return err
						})
					}
					var err error
					if loginFirst {
						err = login()
					}
					if !loginFirst || codeOf(err) == "invalid_credentials" {
						err = retryable(ctx, func() error { return c.signup(ctx, name, password) })
						if err == nil {
							signups.Add(1)
						} else if codeOf(err) != "username_taken" {
							errOnce.Do(func() { firstErr = fmt.Errorf("signup %s: %w", name, err) })
							done.Add(1)
							continue
						}
						err = login()
					}
					if err != nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("login %s: %w", name, err) })
						done.Add(1)
						continue
					}
					logins.Add(1)
					tc.put(name, u.token)
				}
				users[i] = u
				done.Add(1)
			}
		}()
	}
feed:
	for i := range names {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	stop()
	if err := tc.save(); err != nil {
		lg.printf("token cache: %v", err)
	}
	st.Cached, st.Signups, st.Logins = int(cached.Load()), int(signups.Load()), int(logins.Load())
	st.Seconds = time.Since(t0).Seconds()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return users, st, firstErr
}

// befriend makes each pair friends by request and accept. Pairs that are
// already friends from an earlier run are left as they are.
func befriend(ctx context.Context, c *client, pairs [][2]*user, conc int) error {
	return parallel(ctx, len(pairs), conc, func(i int) error {
		a, b := pairs[i][0], pairs[i][1]
		err := retryable(ctx, func() error { return c.friendRequest(ctx, a.token, b.name) })
		switch {
		case err == nil:
			// 201: b must accept; 200: it completed the friendship already,
			// and the accept below answers 404 no_such_request.
		case codeOf(err) == "already_friends":
			return nil
		case codeOf(err) == "already_requested":
		default:
			return fmt.Errorf("friend request %s→%s: %w", a.name, b.name, err)
		}
		err = retryable(ctx, func() error { return c.friendAccept(ctx, b.token, a.name) })
		if err != nil && codeOf(err) != "no_such_request" && codeOf(err) != "already_friends" {
			return fmt.Errorf("friend accept %s→%s: %w", a.name, b.name, err)
		}
		return nil
	})
}

// cleanAll empties the message queues of users, so a run starts from queues
// holding nothing of earlier runs.
func cleanAll(ctx context.Context, c *client, users []*user, conc int) error {
	return parallel(ctx, len(users), conc, func(i int) error {
		return retryable(ctx, func() error {
			_, err := c.clean(ctx, users[i].token, maxUpto)
			return err
		})
	})
}

// parallel runs f(0..n-1), conc at a time, and returns the first error.
func parallel(ctx context.Context, n, conc int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, conc)
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
