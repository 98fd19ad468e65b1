package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"webim/internal/pgtest"
)

// Web Push and self-service on PostgreSQL, where the HTTP suite cannot see:
// several stores (nodes) on one database, and a database of the schema
// before push.

// Nodes starting together on a database without a key: each makes a
// candidate, one insert wins, and every node signs with the winner's key —
// those that raced and one that opens later.
func TestPostgresPushKeySameOnEveryNode(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const nodes = 4
	stores := make([]*pgStore, nodes)
	for i := range stores {
		stores[i] = openPG(t, url)
	}
	keys := make([]vapidKey, nodes)
	errs := make([]error, nodes)
	var ready, wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range stores {
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-start
			keys[i], errs[i] = s.PushKey(context.Background())
		}()
	}
	ready.Wait()
	close(start)
	wg.Wait()
	for i := range stores {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if keys[i] != keys[0] || keys[i].Public == "" || keys[i].Private == "" {
			t.Fatalf("node %d's key %+v, node 0's %+v: want one key", i, keys[i], keys[0])
		}
	}
	var rows int
	if err := stores[0].pool.QueryRow(context.Background(), `SELECT count(*) FROM push_vapid`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("push_vapid has %d rows (%v), want 1", rows, err)
	}
	if k, err := openPG(t, url).PushKey(context.Background()); err != nil || k != keys[0] {
		t.Fatalf("a node opened later: %+v (%v), want %+v", k, err, keys[0])
	}
}

// One endpoint subscribed at once through two nodes, by two users (a
// browser switching accounts): the unique endpoint lets one row stand, and
// its user is one of the two.
func TestPostgresPushSubscriptionRace(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s1, s2 := openPG(t, url), openPG(t, url)
	ctx := context.Background()
	a, b := pgFriends(t, s1, "alice", "bob")
	const rounds = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for i, s := range []*pgStore{s1, s2} {
		user := []User{a, b}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				sub := pushSubscription{Endpoint: fmt.Sprintf("https://push.example/%d", r), P256dh: "k", Auth: "a", Host: "chat.example"}
				if _, err := s.AddPushSubscription(ctx, user.ID, sub); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sa, err := s1.PushSubscriptions(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := s2.PushSubscriptions(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, sub := range append(sa, sb...) {
		endpoints = append(endpoints, sub.Endpoint)
	}
	slices.Sort(endpoints)
	if n := len(slices.Compact(endpoints)); n != len(sa)+len(sb) {
		t.Fatalf("an endpoint is stored twice: %v", endpoints)
	}
	if len(sa) > maxPushSubscriptions || len(sb) > maxPushSubscriptions {
		t.Fatalf("%d and %d subscriptions: more than %d", len(sa), len(sb), maxPushSubscriptions)
	}
}

// A subscription for a user deleted meanwhile (by another node) is a
// refusal for that request alone, not a failed batch; a deletion ends the
// user's subscriptions and tells their online friends and requesters.
func TestPostgresPushAndDeletedUser(t *testing.T) {
	url := pgtest.NewDatabase(t)
	server, admin := openPG(t, url), openPG(t, url)
	admin.shared = true
	online := map[int64]bool{}
	var mu sync.Mutex
	admin.Wire(storeHooks{IsOnline: func(u int64) bool { mu.Lock(); defer mu.Unlock(); return online[u] }})
	ctx := context.Background()
	a, b := pgFriends(t, server, "alice", "bob")
	c, err := server.CreateUser(ctx, "carol", "Carol", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := server.RequestFriend(ctx, c, "alice"); err != nil {
		t.Fatal(err)
	}
	d, err := server.CreateUser(ctx, "dave", "Dave", "x")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	online[b.ID], online[c.ID], online[d.ID] = true, true, true
	mu.Unlock()
	sub := pushSubscription{Endpoint: "https://push.example/alice", P256dh: "k", Auth: "a", Host: "chat.example"}
	if created, err := server.AddPushSubscription(ctx, a.ID, sub); err != nil || !created {
		t.Fatalf("subscribe: %v %v", created, err)
	}
	if _, err := admin.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := server.pool.QueryRow(ctx, `SELECT count(*) FROM push_subscriptions`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d subscriptions left (%v)", rows, err)
	}
	for _, u := range []User{b, c, d} {
		var removed []string
		for _, e := range allEvents(t, server, u.ID) {
			if e.Type == "friend_removed" {
				removed = append(removed, string(e.User))
			}
		}
		want := 1
		if u.ID == d.ID {
			want = 0 // no relation with alice
		}
		if len(removed) != want {
			t.Errorf("%s's friend_removed events: %v, want %d", u.Username, removed, want)
		}
	}
	// Alice's session on the server does not know yet: her subscribe is
	// refused, and an op that may share its batch stands.
	var wg sync.WaitGroup
	var subErr, renameErr error
	wg.Add(2)
	go func() { defer wg.Done(); _, subErr = server.AddPushSubscription(ctx, a.ID, sub) }()
	go func() { defer wg.Done(); _, renameErr = server.SetDisplayName(ctx, b, "Bobby") }()
	wg.Wait()
	if subErr != errUnauthorized || renameErr != nil {
		t.Fatalf("subscribe for the deleted: %v; a rename beside it: %v", subErr, renameErr)
	}
	if _, err := server.SetDisplayName(ctx, a, "Ghost"); err != errUnauthorized {
		t.Fatalf("rename of the deleted: %v", err)
	}
	if err := server.ChangePassword(ctx, a.ID, "y", tokenHash{}); err != errUnauthorized {
		t.Fatalf("password of the deleted: %v", err)
	}
}

// A database the binary before push created (version 3) migrates to the
// schema a fresh database gets: the same push tables, columns and indexes.
func TestPostgresMigratesToPush(t *testing.T) {
	fresh, old := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	openPG(t, fresh).Close()
	openPG(t, old).Close()
	conn := pgConn(t, old)
	// Back to version 3: without push and without the later cluster tables.
	if _, err := conn.Exec(context.Background(), `DROP TABLE push_subscriptions; DROP TABLE push_vapid;
		DROP TABLE presence_claims; DROP TABLE presence_nodes; DROP TABLE presence; DROP TABLE login_failures;
		DROP TABLE read_markers; DROP TABLE group_members; DROP TABLE groups; DROP TABLE engine_state;
		DROP INDEX queue_conv; ALTER TABLE queue DROP COLUMN conv; ALTER TABLE queue DROP COLUMN own;
		ALTER TABLE messages DROP COLUMN group_id;
		UPDATE schema_version SET version = 3`); err != nil {
		t.Fatal(err)
	}
	s := openPG(t, old)
	var v int
	if err := s.pool.QueryRow(context.Background(), `SELECT version FROM schema_version`).Scan(&v); err != nil || v != pgSchemaVersion() {
		t.Fatalf("version %d (%v), want %d", v, err, pgSchemaVersion())
	}
	if k, err := s.PushKey(context.Background()); err != nil || k.Public == "" {
		t.Fatalf("PushKey after the migration: %+v %v", k, err)
	}
	describe := func(url string) []string {
		var out []string
		rows, err := pgConn(t, url).Query(context.Background(), `
			SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') || ' ' || is_identity
			FROM information_schema.columns WHERE table_schema = current_schema() AND table_name LIKE 'push%'
			UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename LIKE 'push%'
			UNION ALL SELECT conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
				WHERE conrelid::regclass::text LIKE 'push%'
			ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			out = append(out, line)
		}
		return out
	}
	want, got := describe(fresh), describe(old)
	if len(want) == 0 || !slices.Equal(want, got) {
		t.Fatalf("migrated push schema:\n%v\nfresh:\n%v", got, want)
	}
}
