package main

import (
	"context"
	"io"
	"time"
)

// Store is the contract between the server and a storage engine. Two engines
// implement it: SQLite (sqlite*.go, the default, one file beside the binary)
// and PostgreSQL (postgres*.go, chosen by a postgres:// URL, shared by several
// nodes). Everything above this line of the code — handlers, sessions,
// presence, the admin commands — sees only this interface, so an engine
// difference is never an if outside the engine's own files.
//
// Every write method returns only once its change is durable (committed and
// fsync'd), or with an error after which nothing of it is stored. Errors are
// webim's own sentinels (errors.go) for what the client did wrong, and
// errStorage (wrapped) when the database failed: the client may retry.
type Store interface {
	// Wire connects the server's in-memory parts before it serves (see
	// storeHooks). Only a serving process calls it: an engine shared by
	// several processes starts listening to the others here.
	Wire(h storeHooks)
	// PollWaiting tells the other processes of a shared database that a
	// poll of session h waits here now, so that an older poll of the same
	// session elsewhere ends (one poll per session, across nodes). It never
	// waits; an engine with a single process does nothing.
	PollWaiting(user int64, h tokenHash)
	// Now is the store's clock; SetClock replaces it (tests).
	Now() time.Time
	SetClock(now func() time.Time)
	Ping(ctx context.Context) error
	// Close commits what is pending and releases the database.
	Close() error

	// Accounts.
	CreateUser(ctx context.Context, username, displayName, passwordHash string) (User, error)
	AccountByName(ctx context.Context, username string) (account, error)
	SearchUsers(ctx context.Context, callerID int64, prefix string, limit int) ([]DirectoryEntry, error)

	// Sessions. StartSession stores a new session for user, marks every
	// older one replaced and drops the user's transient notices (API.md does
	// not redeliver them after a new login), in one commit.
	StartSession(ctx context.Context, user int64, h tokenHash) error
	// EndSession deletes a session, so its token is unknown from then on.
	EndSession(ctx context.Context, h tokenHash) error
	// ForgetSession is EndSession without waiting (an expired token).
	ForgetSession(h tokenHash)
	LoadSession(ctx context.Context, h tokenHash) (storedSession, error)
	// SaveLastSeen records a session's last use without waiting.
	SaveLastSeen(h tokenHash, unixMs int64)
	PruneSessions(ctx context.Context, unusedSince time.Time) error

	// Queues.
	SendMessage(ctx context.Context, sender User, to, body, clientMsgID string, file *newFile) (msg Message, created bool, err error)
	// EventsAfter returns up to limit events of user's queue with seq >
	// cursor, oldest first.
	EventsAfter(ctx context.Context, user, cursor int64, limit int) ([]Event, error)
	// RecentEvents answers a poll from memory when the engine can (ok false:
	// ask EventsAfter); RequestTail asks it to start keeping user's recent
	// events there.
	RecentEvents(user, cursor int64, limit int) (events []Event, ok bool)
	RequestTail(user int64)
	// Clean deletes every event of user's queue with seq <= upto, and the
	// messages (and files) no queue holds any more; it returns how many
	// message events went.
	Clean(ctx context.Context, user, upto int64) (removed int64, err error)
	LastSeq(ctx context.Context, user int64) (int64, error)
	// QueuedMessages counts uncleaned message events over all queues.
	QueuedMessages() int64
	// PresenceChanged queues, without waiting, a presence notice for each
	// online friend of u and, when u went offline, drops u's own notices.
	PresenceChanged(u User, online bool)
	// NewPresence returns the tracker of who is online, with grace the time
	// a user stays online with no poll open. On SQLite it is this process's
	// own view (presence.go), the whole truth for one node; on PostgreSQL
	// it is the view of every node using the database (postgres_presence.go).
	// The server passes its IsOnline to Wire.
	NewPresence(grace time.Duration) presenceTracker
	// LoginFailures returns where failed logins are counted beyond this
	// process, so that several nodes give an attacker no more attempts
	// than one: on SQLite, nowhere (the in-memory limits of ratelimit.go
	// see every attempt); on PostgreSQL, a table every node reads.
	LoginFailures(byName, byAddr windowRule) sharedFailures

	// Groups (API.md, "Groups, read state and typing"). viewer-relative
	// answers mark which members are the viewer's friends. maxMembers is
	// -max-group-members. A non-member gets errNoSuchGroup from every one,
	// as for a group that does not exist. Each change queues its notices
	// (group_joined, group_updated, group_left) in the same commit.
	CreateGroup(ctx context.Context, owner User, name string, members []string, maxMembers int) (Group, error)
	GroupsOf(ctx context.Context, viewer int64) ([]Group, error)
	GroupOf(ctx context.Context, viewer, group int64) (Group, error)
	RenameGroup(ctx context.Context, me User, group int64, name string) (Group, error)
	AddGroupMember(ctx context.Context, me User, group int64, username string, maxMembers int) (Group, error)
	// RemoveGroupMember is a leave when username is me's own.
	RemoveGroupMember(ctx context.Context, me User, group int64, username string) error
	// SendGroupMessage stores one message with a queue row for every member
	// (the sender's always; others' unless at the queue cap, then they are
	// listed in undelivered), in one commit. created is as for SendMessage.
	SendGroupMessage(ctx context.Context, sender User, group int64, body, clientMsgID string, file *newFile) (msg Message, undelivered []string, created bool, err error)
	GroupCount(ctx context.Context) (int64, error)

	// Read state. MarkRead moves me's marker of the conversation with the
	// user named with, or of group, forward to upto (never back), and
	// queues read notices when it moved. Conversations lists me's.
	MarkRead(ctx context.Context, me User, with string, group, upto int64) error
	Conversations(ctx context.Context, me int64) ([]Conversation, error)

	// Typing. TypingRecipients checks that sender may type to the user
	// named to (or in group) and returns who would be told, and which of
	// them are sender's friends (who see sender's presence); QueueEphemeral
	// puts e, with a seq of each user's queue, into the polls of those
	// users, in memory only: it is never written and never redelivered.
	TypingRecipients(ctx context.Context, sender User, to string, group int64) ([]Recipient, error)
	QueueEphemeral(users []int64, e Event)

	// Relations.
	RequestFriend(ctx context.Context, me User, to string) (other User, completed bool, err error)
	AcceptFriend(ctx context.Context, me User, from string) (User, error)
	RefuseFriend(ctx context.Context, me User, from string) (User, error)
	RemoveFriend(ctx context.Context, me User, name string) error
	Block(ctx context.Context, me User, name string) (User, error)
	Unblock(ctx context.Context, me User, name string) error
	FriendsOf(ctx context.Context, me int64) (Friends, error)
	BlockedBy(ctx context.Context, me int64) ([]User, error)

	// Files. SaveUpload stores an upload durably before its message is sent;
	// the caller removes it with RemoveUpload if the message is not stored.
	SaveUpload(r io.Reader, name string, maxSize int64) (*newFile, error)
	RemoveUpload(f *newFile)
	// OpenFile opens file id for user if they may download it (they sent or
	// received a message that some queue still holds); anyone else gets
	// errNotFound.
	OpenFile(ctx context.Context, user, id int64) (FileInfo, io.ReadSeekCloser, error)

	// Administration (admin.go). Each change a running server must act on
	// also writes an admin event in the same commit.
	ListUsers(ctx context.Context) ([]adminUser, error)
	SetPassword(ctx context.Context, username, hash string) error
	SetDisabled(ctx context.Context, username string, disabled bool) (changed bool, err error)
	DeleteUser(ctx context.Context, username string) (deletedUser, error)
	// AdminEventsAfter returns the admin events after id, oldest first, and
	// accounts for what they changed in QueuedMessages.
	AdminEventsAfter(ctx context.Context, id int64) ([]adminEventRow, error)
	LastAdminEvent(ctx context.Context) (int64, error)
	Stats(ctx context.Context) (storeStats, error)

	// Self-service (handlers_me.go). SetDisplayName renames me and queues
	// a user_updated notice for each online friend, in one commit.
	SetDisplayName(ctx context.Context, me User, displayName string) (User, error)
	// ChangePassword replaces user's password hash and deletes every
	// session of theirs but keep, so no older token comes back to life.
	ChangePassword(ctx context.Context, user int64, hash string, keep tokenHash) error

	// Web Push (push.go). PushKey returns the VAPID key pair, creating it
	// on the first call; of racing creators (nodes of a cluster) one wins
	// and every caller gets the winner's.
	PushKey(ctx context.Context) (vapidKey, error)
	// AddPushSubscription stores sub for user (taking the endpoint over
	// from another user if need be); created is false when user already
	// had that endpoint. Beyond maxPushSubscriptions the oldest goes.
	AddPushSubscription(ctx context.Context, user int64, sub pushSubscription) (created bool, err error)
	// RemovePushSubscription deletes user's subscription with endpoint,
	// if any.
	RemovePushSubscription(ctx context.Context, user int64, endpoint string) error
	// PushSubscriptions lists user's subscriptions, oldest first.
	PushSubscriptions(ctx context.Context, user int64) ([]pushSubscription, error)
	// DeletePushSubscription deletes the subscription with endpoint,
	// whoever has it: its push service said it is gone.
	DeletePushSubscription(ctx context.Context, endpoint string) error
}

// maxPushSubscriptions is how many subscriptions (browsers) a user keeps.
const maxPushSubscriptions = 10

// vapidKey is the server's VAPID key pair, base64url without padding: the
// public key an uncompressed P-256 point, the private key its scalar.
type vapidKey struct {
	Public, Private string
}

// pushSubscription is a browser's PushSubscription, with the host the
// browser reached us by when it subscribed.
type pushSubscription struct {
	Endpoint string
	P256dh   string // base64url
	Auth     string // base64url
	Host     string
}

// presenceTracker is what the server tells presence and asks of it. None of
// its methods waits on the store: changes are written in the background, so
// the writer may call IsOnline at any time.
type presenceTracker interface {
	IsOnline(user int64) bool
	// Online counts online users (of the whole service, on PostgreSQL).
	Online() int
	// LoggedIn marks u online; a replacing login changes nothing (no flap).
	LoggedIn(u User)
	// LoggedOut marks u offline at once.
	LoggedOut(u User)
	// PollStarted and PollEnded count u's open polls: with none open
	// anywhere for the grace, u goes offline.
	PollStarted(u User)
	PollEnded(u User)
	// PollOpenSince reports whether user had a poll open at any moment
	// since t (no push is needed then).
	PollOpenSince(user int64, t time.Time) bool
	// Renamed updates the display name u's presence notices carry.
	Renamed(u User)
}

// windowRule is a rate limit: at most limit events in any window.
type windowRule struct {
	limit  int
	window time.Duration
}

// sharedFailures counts failed logins where every node sees them. Keys are
// the limits' keys: the lower-cased name tried, the client address.
type sharedFailures interface {
	// RetryAfter is how long a login for name from addr must wait because
	// failures counted for either key reach their rule; zero: it may go.
	RetryAfter(ctx context.Context, name, addr string) (time.Duration, error)
	// Record counts one failed login for both keys.
	Record(ctx context.Context, name, addr string) error
}

// storedSession is a session row as Authenticate needs it.
type storedSession struct {
	User     User
	LastSeen int64 // Unix ms
	Replaced bool
	Disabled bool
}

// adminUser is a row of "webim user list".
type adminUser struct {
	User
	Created  time.Time
	Disabled bool
	Queued   int64 // uncleaned messages in the user's queue
}

// deletedUser is what a deletion removed.
type deletedUser struct {
	Queued int64 // the user's uncleaned messages
	Files  int   // files no other queue held
}

// adminEventRow is a row of admin_events: user's sessions are gone, and the
// queues changed by QueuedDelta messages.
type adminEventRow struct {
	ID, User, QueuedDelta int64
}

// storeStats are the numbers of "webim stats" that the database tells.
type storeStats struct {
	Users, Disabled int64
	Queued          int64 // uncleaned messages over all queues
	DBBytes         int64 // the database (with its WAL, on SQLite)
	Files           int64
	FilesBytes      int64
}

// storeHooks are what an engine tells the server's in-memory parts. An
// engine calls them from its writer and, on a database shared by several
// processes, from the goroutine that hears the others: so none may wait on
// the store, and none may block.
type storeHooks struct {
	// Node names this process in what it tells the others, so that it can
	// skip its own announcements (it acted on them when it made them).
	Node string
	// Woken is told which users' queues a commit added events to: this
	// process's commits, and on a shared database the others' too. Their
	// polls wake and read the queue again.
	Woken func(users []int64)
	// IsOnline says whether a user can get transient notices, which are
	// only written for those who can.
	IsOnline func(user int64) bool
	// Resync says that what other processes did may have gone unheard for
	// a while (the engine lost its line to them): every waiting poll reads
	// again, and every live session is checked against the database.
	Resync func()
	// SessionsChanged is told which users another process started or ended
	// sessions of (a login, a logout, an admin command): their live sessions
	// here are checked against the database.
	SessionsChanged func(users []int64)
	// PollTaken says that a poll of the session with this tag (tokenHash.tag)
	// of user began waiting in another process: the one here, if any, ends.
	PollTaken func(user int64, tag string)
}

// withDefaults fills the hooks left nil with ones that do nothing, so an
// engine calls them without checking.
func (h storeHooks) withDefaults() storeHooks {
	if h.Woken == nil {
		h.Woken = func([]int64) {}
	}
	if h.IsOnline == nil {
		h.IsOnline = func(int64) bool { return false }
	}
	if h.Resync == nil {
		h.Resync = func() {}
	}
	if h.SessionsChanged == nil {
		h.SessionsChanged = func([]int64) {}
	}
	if h.PollTaken == nil {
		h.PollTaken = func(int64, string) {}
	}
	return h
}
