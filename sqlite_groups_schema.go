package main

// migrationGroups is schema step 4 (see migrations in sqlite.go).
//
// A group message is one messages row (group_id set, recipient_id 0,
// to_name ”) held by one queue row per member it reached; refs counts
// them as for a 1:1 message.
//
// queue.conv names the conversation a message row belongs to from the
// queue owner's side: the other user's id for a 1:1 message, minus the
// group's id for a group message (0 for notices); own is 1 on the sender's
// copy. The partial index on them is what keeps GET /api/conversations
// cheap: a conversation's newest message is one seek, and its unread count
// reads only the index entries above the reader's marker, never the rest of
// the queue.
//
// group_members.id is the join order: when the owner leaves, the member
// with the lowest id becomes owner.
//
// engine_state.unsaved_seqs is 1 while a server runs: typing events take
// seqs that are never written (typing.go), so a server that stopped
// without saving them (a crash) leaves it at 1, and the next one starts
// every queue's seqs past anything the lost ones may have reached.
const migrationGroups = `CREATE TABLE groups (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		name       TEXT    NOT NULL,
		owner_id   INTEGER NOT NULL REFERENCES users(id),
		created_at INTEGER NOT NULL
	);
	CREATE TABLE group_members (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
		user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		read_upto INTEGER NOT NULL DEFAULT 0,
		UNIQUE (group_id, user_id)
	);
	CREATE INDEX group_members_user ON group_members(user_id, group_id);
	CREATE TABLE read_markers (
		user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		peer_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		upto    INTEGER NOT NULL,
		PRIMARY KEY (user_id, peer_id)
	) WITHOUT ROWID;
	CREATE TABLE engine_state (
		key   TEXT PRIMARY KEY,
		value INTEGER NOT NULL
	) WITHOUT ROWID;
	INSERT INTO engine_state (key, value) VALUES ('unsaved_seqs', 0);
	ALTER TABLE messages ADD COLUMN group_id INTEGER; -- no foreign key: the group may be gone
	ALTER TABLE queue ADD COLUMN conv INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE queue ADD COLUMN own INTEGER NOT NULL DEFAULT 0;
	UPDATE queue SET
		conv = (SELECT CASE WHEN m.sender_id = queue.user_id THEN m.recipient_id ELSE m.sender_id END
			FROM messages m WHERE m.id = queue.message_id),
		own = (SELECT m.sender_id = queue.user_id FROM messages m WHERE m.id = queue.message_id)
		WHERE kind = 1;
	CREATE INDEX queue_conv ON queue(user_id, conv, message_id, own) WHERE kind = 1;`
