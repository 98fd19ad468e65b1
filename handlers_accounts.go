package main

// Accounts and the user directory.

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

func (a *App) handleSignup(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.SignupClosed {
		return errSignupClosed
	}
	var req struct {
		Username    *string `json:"username"`
		Password    *string `json:"password"`
		DisplayName *string `json:"display_name"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Username == nil {
		return errInvalidUsername.withMessage("username is required.")
	}
	username, err := normalizeUsername(*req.Username)
	if err != nil {
		return err
	}
	if req.Password == nil {
		return errWeakPassword.withMessage("password is required.")
	}
	if err := validatePassword(*req.Password); err != nil {
		return err
	}
	display := username
	if req.DisplayName != nil {
		if err := validateDisplayName(*req.DisplayName); err != nil {
			return err
		}
		display = *req.DisplayName
	}
	addr := a.clientAddr(r)
	// A place is held before the work and counted only if an account
	// results, so concurrent sign-ups cannot all pass the check, nor fill
	// it for others while they run.
	settle := func(bool) {}
	if !a.limits.isExempt(addr) {
		wait, s, err := a.limits.signupsByAddr.reserve(r.Context(), addr.String())
		if err != nil {
			return rateLimited(1) // the client is gone
		}
		if wait > 0 {
			return rateLimited(seconds(wait))
		}
		settle = s
	}
	// A taken name is answered before the hash: the 409 tells that it exists
	// anyway. The UNIQUE constraint still decides a race between two.
	if _, err := a.store.AccountByName(r.Context(), username); err == nil {
		settle(false)
		return errUsernameTaken
	} else if !errors.Is(err, errNoSuchUser) {
		settle(false)
		return err
	}
	hash, err := a.hasher.hash(r.Context(), *req.Password)
	if err != nil {
		settle(false)
		return err
	}
	u, err := a.store.CreateUser(r.Context(), username, display, hash)
	settle(err == nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": u.json()})
	return nil
}

func (a *App) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Username == nil || req.Password == nil {
		return errBadRequest.withMessage("username and password are required.")
	}
	// The limiter's key for a malformed name is still that name, lower-cased:
	// such a login can never succeed, but it is counted all the same.
	nameKey := strings.ToLower(*req.Username)
	if len(nameKey) > maxUsernameLen*4 {
		nameKey = nameKey[:maxUsernameLen*4]
	}
	addr := a.clientAddr(r)
	// Each attempt holds a place in both limits while its password is
	// checked, and is counted only if it fails (401s only count, API.md):
	// checking first and counting after let concurrent guesses all pass
	// the check, while counting every attempt at once refused good
	// logins that merely ran together.
	settle := func(bool) {}
	if !a.limits.isExempt(addr) {
		limited, s, err := a.reserveLogin(r.Context(), nameKey, addr.String())
		if err != nil {
			return err
		}
		settle = s
		if limited != nil {
			return limited
		}
	}
	acct, ok, err := a.checkPassword(r.Context(), *req.Username, *req.Password)
	settle(err == nil && !ok)
	if err != nil {
		return err
	}
	if !ok {
		if !a.limits.isExempt(addr) {
			// Counted before the 401, so the next guess, on any node,
			// sees it; a failure that cannot be counted is not answered
			// as one (a 503), or an outage would lift the limit.
			if err := a.limits.failedShared.Record(r.Context(), nameKey, addr.String()); err != nil {
				return err
			}
		}
		return errInvalidCredentials
	}
	if acct.Disabled {
		return errAccountDisabled
	}
	token, _, _, err := a.sessions.Login(r.Context(), acct.User)
	if err != nil {
		return err
	}
	a.presence.LoggedIn(acct.User)
	a.setSessionCookie(w, r, token, int(sessionTTL/time.Second))
	writeJSON(w, http.StatusOK, map[string]any{"user": acct.User.json(), "token": token})
	return nil
}

// reserveLogin holds a login attempt's place in the per-name and per-address
// limits (name first, then address: one order, so waits cannot deadlock). It
// returns a 429 when either limit is reached by counted failures.
func (a *App) reserveLogin(ctx context.Context, nameKey, addrKey string) (limited error, settle func(failed bool), err error) {
	none := func(bool) {}
	now := time.Now()
	waitName, settleName, err := a.limits.failedByName.reserve(ctx, nameKey)
	if err != nil {
		return nil, none, rateLimited(1) // the client is gone
	}
	if waitName > 0 {
		return rateLimited(seconds(max(waitName, a.limits.failedByAddr.retryAfter(addrKey, now)))), none, nil
	}
	waitAddr, settleAddr, err := a.limits.failedByAddr.reserve(ctx, addrKey)
	if err != nil {
		settleName(false)
		return nil, none, rateLimited(1)
	}
	if waitAddr > 0 {
		settleName(false)
		return rateLimited(seconds(waitAddr)), none, nil
	}
	// Failures other nodes counted: the in-memory limits above have seen
	// only this node's.
	wait, err := a.limits.failedShared.RetryAfter(ctx, nameKey, addrKey)
	if err != nil || wait > 0 {
		settleName(false)
		settleAddr(false)
		if err != nil {
			return nil, none, err
		}
		return rateLimited(seconds(wait)), none, nil
	}
	return nil, func(failed bool) { settleName(failed); settleAddr(failed) }, nil
}

// checkPassword verifies a login. An unknown or malformed name costs the
// same hash as a wrong password, so timing does not tell who exists.
func (a *App) checkPassword(ctx context.Context, rawName, password string) (account, bool, error) {
	name, err := normalizeUsername(rawName)
	var acct account
	if err == nil {
		acct, err = a.store.AccountByName(ctx, name)
	}
	if err != nil {
		if !errors.Is(err, errInvalidUsername) && !errors.Is(err, errNoSuchUser) {
			return acct, false, err
		}
		_, verr := a.hasher.verify(ctx, a.hasher.dummy, password)
		return acct, false, verr
	}
	ok, err := a.hasher.verify(ctx, acct.PasswordHash, password)
	return acct, ok, err
}

func (a *App) handleLogout(w http.ResponseWriter, r *http.Request, s *Session) error {
	if err := a.sessions.Logout(r.Context(), s); err != nil {
		return err
	}
	a.presence.LoggedOut(s.User)
	a.setSessionCookie(w, r, "", -1)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *App) handleMe(w http.ResponseWriter, r *http.Request, s *Session) error {
	writeJSON(w, http.StatusOK, map[string]any{"user": s.Me().json()})
	return nil
}

func (a *App) handleUsers(w http.ResponseWriter, r *http.Request, s *Session) error {
	q := r.URL.Query()
	prefix := q.Get("q")
	if !utf8.ValidString(prefix) || utf8.RuneCountInString(prefix) > maxSearchLen {
		return errBadRequest.withMessage("q is at most %d characters of valid UTF-8.", maxSearchLen)
	}
	limit := defaultUserLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errBadRequest.withMessage("limit is a whole number from 1 to %d.", maxUserLimit)
		}
		limit = min(n, maxUserLimit)
	}
	users, err := a.store.SearchUsers(r.Context(), s.User.ID, prefix, limit)
	if err != nil {
		return err
	}
	out := make([]userJSON, len(users))
	for i, u := range users {
		// Presence is the caller's to know for friends only (API.md).
		if u.Friend {
			out[i] = u.jsonWithPresence(a.presence.IsOnline(u.ID))
		} else {
			out[i] = u.json()
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
	return nil
}
