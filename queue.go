package main

import (
	"encoding/json"
	"strconv"
)

// Event kinds as stored in queue.kind. Only messages are durable; the rest
// are notices, dropped when the user goes offline or logs in anew.
const (
	kindMessage        = 1
	kindPresence       = 2
	kindFriendRequest  = 3
	kindFriendAccepted = 4
	kindFriendRemoved  = 5
	// Kinds are stored, and other features add theirs at the same time:
	// self-service takes 16 onwards, so numbers cannot collide at a merge.
	kindUserUpdated = 16
)

var kindNames = map[int]string{
	kindMessage:        "message",
	kindPresence:       "presence",
	kindFriendRequest:  "friend_request",
	kindFriendAccepted: "friend_accepted",
	kindFriendRemoved:  "friend_removed",
	kindUserUpdated:    "user_updated",
}

// maxPollBatch is the most events one poll answer carries.
const maxPollBatch = 100

// Message is API.md's message object.
type Message struct {
	ID     int64     `json:"id"`
	From   string    `json:"from"`
	To     string    `json:"to,omitempty"` // empty for a group message
	Group  int64     `json:"group,omitempty"`
	Body   string    `json:"body"`
	SentAt string    `json:"sent_at"`
	File   *FileInfo `json:"file,omitempty"`
	// ClientMsgID is the sender's client_msg_id, when it gave one: the
	// sender's page matches its pending copy with the event by it.
	ClientMsgID string `json:"client_msg_id,omitempty"`
}

// FileInfo is the file part of a file message.
type FileInfo struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	URL         string `json:"url"`
}

func fileURL(id int64) string { return "/api/files/" + strconv.FormatInt(id, 10) }

// Event is one entry of a user's queue as a poll returns it.
type Event struct {
	Seq     int64           `json:"seq"`
	Type    string          `json:"type"`
	At      string          `json:"at"`
	Message *Message        `json:"message,omitempty"`
	User    json.RawMessage `json:"user,omitempty"`
	// Group is a group object (group_joined, group_updated, group_left) or
	// a bare id (read, typing).
	Group json.RawMessage `json:"group,omitempty"`
	Upto  *int64          `json:"upto,omitempty"`
	// ephemeral events (typing) live only in a tail, and leave it once a
	// poll has taken them: they are never delivered twice.
	ephemeral bool
}

// noticePayload is what a notice stores: the user it is about.
type noticePayload struct {
	User userJSON `json:"user"`
}

// newFile is an uploaded file already written (and fsync'd) to the files
// folder, waiting for its message to commit.
type newFile struct {
	StorageName string
	Name        string
	Size        int64
	ContentType string
}
