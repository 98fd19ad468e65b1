package main

// Groups, read markers, conversations and typing (API.md, "Groups, read
// state and typing").

import (
	"net/http"
	"strconv"
)

// pathGroup reads the {id} of the path. An id that cannot exist names no
// group, which a non-member is told of every group.
func pathGroup(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errNoSuchGroup
	}
	return id, nil
}

// anyUsername is a name for the store to look up: a name that cannot exist
// becomes one that exists nowhere, so the store's own order of refusals
// (not a member, not the owner, no such user) holds for it too.
func anyUsername(s string) string {
	name, err := normalizeUsername(s)
	if err != nil {
		return ""
	}
	return name
}

// oneTarget checks that exactly one of a request's "to"/"with" and "group"
// is given.
func oneTarget(user *string, group *int64, userField string) error {
	if (user == nil) == (group == nil) {
		return errBadRequest.withMessage("Give either %s or group, not both.", userField)
	}
	return nil
}

// groupID checks a group id from a body: one that cannot exist names no group.
func groupID(id int64) (int64, error) {
	if id <= 0 {
		return 0, errNoSuchGroup
	}
	return id, nil
}

func (a *App) groupAnswer(w http.ResponseWriter, status int, g Group) {
	writeJSON(w, status, map[string]any{"group": g.json(a.presence.IsOnline)})
}

func (a *App) handleCreateGroup(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		Name    *string  `json:"name"`
		Members []string `json:"members"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil {
		return errInvalidGroupName.withMessage("name is required: 1 to 64 printable characters.")
	}
	if err := validateGroupName(*req.Name); err != nil {
		return err
	}
	members := make([]string, 0, len(req.Members))
	for _, m := range req.Members {
		name, err := normalizeUsername(m)
		if err != nil {
			return errNoSuchUser.withMessage("There is no user named %q.", m)
		}
		members = append(members, name)
	}
	g, err := a.store.CreateGroup(r.Context(), s.User, *req.Name, members, a.cfg.MaxGroupMembers)
	if err != nil {
		return err
	}
	a.groupAnswer(w, http.StatusCreated, g)
	return nil
}

func (a *App) handleGroups(w http.ResponseWriter, r *http.Request, s *Session) error {
	groups, err := a.store.GroupsOf(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	out := make([]groupJSON, len(groups))
	for i, g := range groups {
		out[i] = g.json(a.presence.IsOnline)
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": out})
	return nil
}

func (a *App) handleGroup(w http.ResponseWriter, r *http.Request, s *Session) error {
	id, err := pathGroup(r)
	if err != nil {
		return err
	}
	g, err := a.store.GroupOf(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	a.groupAnswer(w, http.StatusOK, g)
	return nil
}

func (a *App) handleRenameGroup(w http.ResponseWriter, r *http.Request, s *Session) error {
	id, err := pathGroup(r)
	if err != nil {
		return err
	}
	var req struct {
		Name *string `json:"name"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil {
		return errInvalidGroupName.withMessage("name is required: 1 to 64 printable characters.")
	}
	if err := validateGroupName(*req.Name); err != nil {
		return err
	}
	g, err := a.store.RenameGroup(r.Context(), s.User, id, *req.Name)
	if err != nil {
		return err
	}
	a.groupAnswer(w, http.StatusOK, g)
	return nil
}

func (a *App) handleAddGroupMember(w http.ResponseWriter, r *http.Request, s *Session) error {
	id, err := pathGroup(r)
	if err != nil {
		return err
	}
	g, err := a.store.AddGroupMember(r.Context(), s.User, id, anyUsername(r.PathValue("username")), a.cfg.MaxGroupMembers)
	if err != nil {
		return err
	}
	a.groupAnswer(w, http.StatusOK, g)
	return nil
}

func (a *App) handleRemoveGroupMember(w http.ResponseWriter, r *http.Request, s *Session) error {
	id, err := pathGroup(r)
	if err != nil {
		return err
	}
	if err := a.store.RemoveGroupMember(r.Context(), s.User, id, anyUsername(r.PathValue("username"))); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *App) handleRead(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		With  *string `json:"with"`
		Group *int64  `json:"group"`
		Upto  *int64  `json:"upto"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := oneTarget(req.With, req.Group, "with"); err != nil {
		return err
	}
	if req.Upto == nil || *req.Upto < 0 {
		return errBadRequest.withMessage("upto is required: a message id, 0 or more.")
	}
	var with string
	var gid int64
	var err error
	if req.Group != nil {
		if gid, err = groupID(*req.Group); err != nil {
			return err
		}
	} else if with, err = normalizeUsername(*req.With); err != nil {
		return errNoSuchUser
	}
	if err := a.store.MarkRead(r.Context(), s.User, with, gid, *req.Upto); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// conversationJSON is API.md's conversation object.
type conversationJSON struct {
	With         *userJSON `json:"with,omitempty"`
	Group        *groupRef `json:"group,omitempty"`
	LastMessage  *Message  `json:"last_message"`
	Unread       int64     `json:"unread"`
	ReadUpto     int64     `json:"read_upto"`
	PeerReadUpto *int64    `json:"peer_read_upto,omitempty"`
}

func (a *App) handleConversations(w http.ResponseWriter, r *http.Request, s *Session) error {
	convs, err := a.store.Conversations(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	out := make([]conversationJSON, len(convs))
	for i, c := range convs {
		j := conversationJSON{Group: c.Group, LastMessage: c.LastMessage, Unread: c.Unread, ReadUpto: c.ReadUpto}
		if c.Peer != nil {
			// Conversations with users are with friends, whose presence the caller knows.
			u := c.Peer.jsonWithPresence(a.presence.IsOnline(c.Peer.ID))
			peerRead := c.PeerReadUpto
			j.With, j.PeerReadUpto = &u, &peerRead
		}
		out[i] = j
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversations": out})
	return nil
}

func (a *App) handleTyping(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		To    *string `json:"to"`
		Group *int64  `json:"group"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := oneTarget(req.To, req.Group, "to"); err != nil {
		return err
	}
	var to string
	var gid int64
	var err error
	if req.Group != nil {
		if gid, err = groupID(*req.Group); err != nil {
			return err
		}
	} else if to, err = recipientName(*req.To, s.User); err != nil {
		return err
	}
	recipients, err := a.store.TypingRecipients(r.Context(), s.User, to, gid)
	if err != nil {
		return err
	}
	conv := conversationKey(0, gid)
	if gid == 0 {
		conv = recipients[0].ID
	}
	if a.typing.allow(s.User.ID, conv, a.store.Now()) {
		a.sendTyping(s.User, gid, recipients)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sendTyping queues the typing event for the recipients who are online:
// one shape for sender's friends (with presence), one for the others.
func (a *App) sendTyping(sender User, gid int64, recipients []Recipient) {
	var friends, others []int64
	for _, rc := range recipients {
		switch {
		case !a.presence.IsOnline(rc.ID):
		case rc.Friend:
			friends = append(friends, rc.ID)
		default:
			others = append(others, rc.ID)
		}
	}
	event := func(who userJSON) Event {
		e := Event{Type: kindNames[kindTyping]}
		e.User, _ = marshalRaw(who)
		if gid != 0 {
			e.Group = groupIDJSON(gid)
		}
		return e
	}
	if len(friends) > 0 {
		a.store.QueueEphemeral(friends, event(sender.jsonWithPresence(a.presence.IsOnline(sender.ID))))
	}
	if len(others) > 0 {
		a.store.QueueEphemeral(others, event(sender.json()))
	}
}
