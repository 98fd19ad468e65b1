package main

// Friends and blocks.

import (
	"net/http"
)

// pathUser reads the {username} of the path. A name that cannot exist
// belongs to no user.
func pathUser(r *http.Request) (string, error) {
	name, err := normalizeUsername(r.PathValue("username"))
	if err != nil {
		return "", errNoSuchUser
	}
	return name, nil
}

func (a *App) handleFriends(w http.ResponseWriter, r *http.Request, s *Session) error {
	f, err := a.store.FriendsOf(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	friends := make([]userJSON, len(f.Friends))
	for i, u := range f.Friends {
		friends[i] = u.jsonWithPresence(a.presence.IsOnline(u.ID))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"friends":  friends,
		"incoming": usersJSON(f.Incoming),
		"outgoing": usersJSON(f.Outgoing),
	})
	return nil
}

func usersJSON(users []User) []userJSON {
	out := make([]userJSON, len(users))
	for i, u := range users {
		out[i] = u.json()
	}
	return out
}

func (a *App) handleFriendRequest(w http.ResponseWriter, r *http.Request, s *Session) error {
	name, err := pathUser(r)
	if err != nil {
		return err
	}
	if name == s.User.Username {
		return errBefriendSelf
	}
	other, completed, err := a.store.RequestFriend(r.Context(), s.Me(), name)
	if err != nil {
		return err
	}
	if completed {
		writeJSON(w, http.StatusOK, map[string]any{"status": "friends", "user": other.jsonWithPresence(a.presence.IsOnline(other.ID))})
		return nil
	}
	writeJSON(w, http.StatusCreated, map[string]any{"status": "requested", "user": other.json()})
	return nil
}

func (a *App) handleFriendAccept(w http.ResponseWriter, r *http.Request, s *Session) error {
	name, err := pathUser(r)
	if err != nil {
		return err
	}
	other, err := a.store.AcceptFriend(r.Context(), s.Me(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "friends", "user": other.jsonWithPresence(a.presence.IsOnline(other.ID))})
	return nil
}

func (a *App) handleFriendRefuse(w http.ResponseWriter, r *http.Request, s *Session) error {
	name, err := pathUser(r)
	if err != nil {
		return err
	}
	other, err := a.store.RefuseFriend(r.Context(), s.Me(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "refused", "user": other.json()})
	return nil
}

func (a *App) handleFriendRemove(w http.ResponseWriter, r *http.Request, s *Session) error {
	name, err := pathUser(r)
	if err != nil {
		return err
	}
	if err := a.store.RemoveFriend(r.Context(), s.Me(), name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *App) handleBlocks(w http.ResponseWriter, r *http.Request, s *Session) error {
	blocked, err := a.store.BlockedBy(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"blocked": usersJSON(blocked)})
	return nil
}

func (a *App) handleBlock(w http.ResponseWriter, r *http.Request, s *Session) error {
	name, err := pathUser(r)
	if err != nil {
		return err
	}
	if name == s.User.Username {
		return errBlockSelf
	}
	other, err := a.store.Block(r.Context(), s.Me(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "blocked", "user": other.json()})
	return nil
}

func (a *App) handleUnblock(w http.ResponseWriter, r *http.Request, s *Session) error {
	name, err := pathUser(r)
	if err != nil {
		return err
	}
	if err := a.store.Unblock(r.Context(), s.User, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
