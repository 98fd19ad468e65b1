package main

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Groups, read markers and typing: the domain types of API.md's section
// "Groups, read state and typing", shared by the engines and the handlers.

// Event kinds of that section, beside queue.go's. All are transient notices
// (written like presence notices, dropped when the user goes offline); typing
// is not written at all (typing.go).
const (
	kindGroupJoined  = 6
	kindGroupUpdated = 7
	kindGroupLeft    = 8
	kindRead         = 9
	kindTyping       = 10
)

func init() {
	kindNames[kindGroupJoined] = "group_joined"
	kindNames[kindGroupUpdated] = "group_updated"
	kindNames[kindGroupLeft] = "group_left"
	kindNames[kindRead] = "read"
	kindNames[kindTyping] = "typing"
}

const (
	defaultMaxGroupMembers = 256
	maxGroupNameLen        = 64
)

// Group is a group as one member (the viewer) sees it: Friend on a member
// says whether that member is the viewer's friend, whose presence the
// viewer may then know.
type Group struct {
	ID        int64
	Name      string
	Owner     string
	Members   []GroupMember // by username
	CreatedAt int64         // Unix ms
}

// GroupMember is a member with how far they have read the group.
type GroupMember struct {
	User
	Friend   bool
	ReadUpto int64
}

// groupJSON is API.md's group object.
type groupJSON struct {
	ID        int64        `json:"id"`
	Name      string       `json:"name"`
	Owner     string       `json:"owner"`
	Members   []memberJSON `json:"members"`
	CreatedAt string       `json:"created_at"`
}

type memberJSON struct {
	userJSON
	ReadUpto int64 `json:"read_upto"`
}

// groupRef is the short form of a group in group_left and conversations.
type groupRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// json renders g for its viewer; online says who is online now.
func (g Group) json(online func(user int64) bool) groupJSON {
	out := groupJSON{ID: g.ID, Name: g.Name, Owner: g.Owner, Members: make([]memberJSON, len(g.Members)),
		CreatedAt: apiTime(fromMilli(g.CreatedAt))}
	for i, m := range g.Members {
		u := m.User.json()
		if m.Friend {
			u = m.User.jsonWithPresence(online(m.ID))
		}
		out.Members[i] = memberJSON{userJSON: u, ReadUpto: m.ReadUpto}
	}
	return out
}

// member returns g's member with id user.
func (g Group) member(user int64) (GroupMember, bool) {
	for _, m := range g.Members {
		if m.ID == user {
			return m, true
		}
	}
	return GroupMember{}, false
}

// validateGroupName accepts what a display name may be: 1 to 64 printable
// characters, not only spaces.
func validateGroupName(s string) error {
	if !utf8.ValidString(s) || validateDisplayName(s) != nil {
		return errInvalidGroupName
	}
	return nil
}

// Conversation is one entry of GET /api/conversations, as the store finds
// it: with a user (Peer) or a group.
type Conversation struct {
	Peer         *User // nil for a group
	Group        *groupRef
	LastMessage  *Message
	Unread       int64
	ReadUpto     int64
	PeerReadUpto int64
}

// conversationKey names a conversation for the typing throttle and the
// queue's conv column: a peer's user id, or minus a group's id.
func conversationKey(peer, group int64) int64 {
	if group != 0 {
		return -group
	}
	return peer
}

// noticePayload's fuller form, for the notices of this section: the stored
// payload is the event's own fields.
type groupNoticePayload struct {
	User  json.RawMessage `json:"user,omitempty"`
	Group json.RawMessage `json:"group,omitempty"`
	Upto  *int64          `json:"upto,omitempty"`
}

// groupIDJSON is a bare group id as the read and typing events carry it.
func groupIDJSON(id int64) json.RawMessage { return json.RawMessage(strconv.FormatInt(id, 10)) }

func marshalRaw(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	return json.RawMessage(b), err
}

// Recipient is a user an event goes to, and whether they are the actor's
// friend (the event's user object then carries presence).
type Recipient struct {
	ID     int64
	Friend bool
}
