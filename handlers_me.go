package main

// The caller's own account: display name, password, deletion.

import (
	"errors"
	"net/http"
)

func (a *App) handleUpdateMe(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.DisplayName == nil {
		return errBadRequest.withMessage("display_name is required.")
	}
	if err := validateDisplayName(*req.DisplayName); err != nil {
		return err
	}
	u, err := a.store.SetDisplayName(r.Context(), s.Me(), *req.DisplayName)
	if err != nil {
		return err
	}
	s.Renamed(u.DisplayName)
	a.presence.Renamed(u)
	writeJSON(w, http.StatusOK, map[string]any{"user": u.json()})
	return nil
}

func (a *App) handleChangePassword(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		Password    *string `json:"password"`
		NewPassword *string `json:"new_password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Password == nil {
		return errBadRequest.withMessage("password (the current one) is required.")
	}
	if req.NewPassword == nil {
		return errWeakPassword.withMessage("new_password is required.")
	}
	if err := validatePassword(*req.NewPassword); err != nil {
		return err
	}
	if err := a.checkOwnPassword(r, s, *req.Password); err != nil {
		return err
	}
	hash, err := a.hasher.hash(r.Context(), *req.NewPassword)
	if err != nil {
		return err
	}
	// The caller's session is kept; any other token of the user dies.
	if err := a.store.ChangePassword(r.Context(), s.User.ID, hash, s.hash); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *App) handleDeleteMe(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		Password *string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Password == nil {
		return errBadRequest.withMessage("password is required to delete the account.")
	}
	if err := a.checkOwnPassword(r, s, *req.Password); err != nil {
		return err
	}
	// As "webim user delete" does, admin event included, so that every
	// node ends the user's session.
	if _, err := a.store.DeleteUser(r.Context(), s.User.Username); err != nil {
		if errors.Is(err, errNoSuchUser) {
			return errUnauthorized // deleted meanwhile
		}
		return err
	}
	// This node need not wait for the admin event: as a logout, the open
	// poll answers now and the token is unknown.
	a.sessions.EndUser(s.User.ID, errUnauthorized)
	a.presence.LoggedOut(s.Me())
	a.setSessionCookie(w, r, "", -1)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkOwnPassword verifies the caller's current password. A wrong one is
// a failed login for the rate limits (per name and per address), so a
// stolen session cannot be used to guess the password faster than a login
// form allows.
func (a *App) checkOwnPassword(r *http.Request, s *Session, password string) error {
	ctx := r.Context()
	addr := a.clientAddr(r)
	settle := func(bool) {}
	if !a.limits.isExempt(addr) {
		limited, st, err := a.reserveLogin(ctx, s.User.Username, addr.String())
		if err != nil {
			return err
		}
		if limited != nil {
			return limited
		}
		settle = st
	}
	acct, err := a.store.AccountByName(ctx, s.User.Username)
	if err != nil {
		settle(false)
		if errors.Is(err, errNoSuchUser) {
			return errUnauthorized
		}
		return err
	}
	ok, err := a.hasher.verify(ctx, acct.PasswordHash, password)
	settle(err == nil && !ok)
	if err != nil {
		return err
	}
	if !ok {
		return errInvalidCredentials.withMessage("The current password is wrong.")
	}
	return nil
}
