package main

import "net/http"

// handleSession is GET /api/session (an addition to API.md's version 1):
// GET /api/me's answer for a live session, and 200 {"user": null} without
// one (no credentials, or a token that is unknown, expired or replaced).
// A page asking whether its cookie still holds a session thus meets no
// failed request, which browsers report in the console; GET /api/me keeps
// its 401.
func (a *App) handleSession(w http.ResponseWriter, r *http.Request) error {
	err := a.authenticated(a.handleMe)(w, r)
	if e, ok := asAPIError(err); ok && e.Status == http.StatusUnauthorized {
		writeJSON(w, http.StatusOK, map[string]any{"user": nil})
		return nil
	}
	return err
}
