package main

import "context"

// quickUser creates a user and a session straight through the store, with
// no password hashing (19 MiB of argon2id per call is slow under -race).
// The client can use the API with its token but cannot log in again.
func (ts *testServer) quickUser(prefix string) *client {
	ts.t.Helper()
	c := &client{ts: ts, t: ts.t, username: uniqueName(prefix)}
	u, err := ts.app.store.CreateUser(context.Background(), c.username, c.username, "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	if err != nil {
		ts.t.Fatalf("creating %s: %v", c.username, err)
	}
	token, _, _, err := ts.app.sessions.Login(context.Background(), u)
	if err != nil {
		ts.t.Fatalf("session for %s: %v", c.username, err)
	}
	ts.app.presence.LoggedIn(u)
	c.token = token
	return c
}
