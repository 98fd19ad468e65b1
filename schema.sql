-- webim schema, version 1. Later versions are steps in migrations (db.go).
-- Times are Unix milliseconds (UTC).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,      -- lower-case, [a-z0-9_.-]{3,32}
    display_name  TEXT    NOT NULL,
    display_fold  TEXT    NOT NULL,             -- lower-cased display_name, for prefix search
    password_hash TEXT    NOT NULL,             -- PHC string ($argon2id$...)
    created_at    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX users_display_fold ON users(display_fold);

-- Only a SHA-256 of each token is stored, so a copy of the file opens no account.
-- A replaced session is kept (replaced = 1) so its token can be told apart from an
-- unknown one (401 session_replaced); it is pruned once it would have expired.
CREATE TABLE sessions (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    replaced   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id, replaced);

-- A friendship is stored in both directions so either side's list is one range scan.
CREATE TABLE friendships (
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    friend_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    since     INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) WITHOUT ROWID;

CREATE TABLE friend_requests (
    from_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    to_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (from_id, to_id)
) WITHOUT ROWID;
CREATE INDEX friend_requests_to ON friend_requests(to_id, from_id);

CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) WITHOUT ROWID;

-- Uploaded files; the bytes live in the folder beside the database
-- (<db>.files/<storage_name>), written and fsync'd before the row commits.
CREATE TABLE files (
    id           INTEGER PRIMARY KEY,
    storage_name TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

-- One row per message, shared by the recipient's and the sender's queue rows.
-- refs counts the queue rows still holding it; at zero the message (and its file) go.
-- Usernames are copied in so a message reads the same after either account is gone.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    sender_id     INTEGER NOT NULL,
    recipient_id  INTEGER NOT NULL,
    from_name     TEXT    NOT NULL,
    to_name       TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    client_msg_id TEXT,
    file_id       INTEGER REFERENCES files(id),
    refs          INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_client_msg_id ON messages(sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

-- Each user's queue of events. kind 1 is a message (message_id set, durable until
-- cleaned); other kinds are transient notices whose payload is the event's JSON
-- fields, dropped when the user goes offline or logs in anew.
CREATE TABLE queue (
    user_id    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    message_id INTEGER,
    payload    TEXT,
    at         INTEGER NOT NULL,
    acked      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;

-- One cursor row per user. A user's last seq handed out is the larger of
-- last_seq and the highest seq in their queue: sends only add queue rows, and
-- last_seq is written when rows are deleted (clean, dropped notices), so seqs
-- never repeat even when the queue is emptied. acked_seq is the highest seq
-- the user has cleaned.
CREATE TABLE cursors (
    user_id   INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    last_seq  INTEGER NOT NULL DEFAULT 0,
    acked_seq INTEGER NOT NULL DEFAULT 0
);
