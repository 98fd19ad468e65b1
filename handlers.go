package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	sessionCookie    = "webim_session"
	defaultPollWait  = 25 * time.Second
	maxPollWait      = 60 * time.Second
	defaultUserLimit = 20
	maxUserLimit     = 50
	maxSearchLen     = 64
)

// pageCSP allows the page's own scripts, styles and images only: no inline
// script, so injected markup cannot run.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

type handlerFunc func(w http.ResponseWriter, r *http.Request) error
type authedFunc func(w http.ResponseWriter, r *http.Request, s *Session) error

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h handlerFunc) {
		a.metrics.register(pattern)
		mux.Handle(pattern, a.serve(h))
	}
	authed := func(pattern string, h authedFunc) { handle(pattern, a.authenticated(h)) }

	handle("POST /api/signup", a.handleSignup)
	handle("POST /api/login", a.handleLogin)
	authed("POST /api/logout", a.handleLogout)
	authed("GET /api/me", a.handleMe)
	authed("GET /api/users", a.handleUsers)
	authed("GET /api/friends", a.handleFriends)
	authed("POST /api/friends/{username}/request", a.handleFriendRequest)
	authed("POST /api/friends/{username}/accept", a.handleFriendAccept)
	authed("POST /api/friends/{username}/refuse", a.handleFriendRefuse)
	authed("DELETE /api/friends/{username}", a.handleFriendRemove)
	authed("GET /api/blocks", a.handleBlocks)
	authed("POST /api/blocks/{username}", a.handleBlock)
	authed("DELETE /api/blocks/{username}", a.handleUnblock)
	authed("POST /api/messages", a.handleSendMessage)
	authed("POST /api/files", a.handleUpload)
	authed("GET /api/files/{id}", a.handleDownload)
	authed("GET /api/poll", a.handlePoll)
	authed("POST /api/clean", a.handleClean)
	handle("GET /api/config", a.handleConfig)
	handle("GET /api/health", a.handleHealth)
	handle("GET /metrics", a.handleMetrics)
	handle("GET /{$}", a.handlePage)
	handle("GET /static/", a.handleStatic)
	handle("/", func(w http.ResponseWriter, r *http.Request) error {
		// Distinguish a known path with the wrong method from an unknown one.
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, p := mux.Handler(r2); p != "/" && p != "" {
				return errMethodNotAllowed
			}
		}
		return errNotFound
	})
	return a.withCommonHeaders(mux)
}

// serve adapts a handlerFunc: errors become API.md's error shape, panics a
// logged 500, and each request is timed for /metrics.
func (a *App) serve(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.log.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", p)
				if sw.status == 0 {
					a.writeError(sw, r, errInternal)
				}
			}
			a.metrics.observe(r.Pattern, time.Since(start))
			a.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "dur", time.Since(start))
		}()
		if err := h(sw, r); err != nil {
			a.writeError(sw, r, err)
		}
	})
}

func (a *App) withCommonHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/metrics" {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status for logs; Unwrap keeps
// http.ResponseController (flush, deadlines) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// The client is gone or the value cannot be encoded; either way
		// the status line has been sent and nothing better can be said.
		return
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (a *App) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := asAPIError(err)
	if !ok && isStorageFailure(err) {
		// A read that the disk failed is the server's trouble, as a write's is.
		e = errStorage
	}
	if !ok {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else if e.Status >= 500 {
		a.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	writeJSON(w, e.Status, body)
}

// --- authentication ---------------------------------------------------------

type sessionKey struct{}

// authenticated resolves the session from the bearer token or the cookie,
// refusing cookie-authenticated writes from another origin first.
func (a *App) authenticated(h authedFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		token := ""
		if auth := r.Header.Get("Authorization"); auth != "" {
			scheme, rest, ok := strings.Cut(auth, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") {
				return errUnauthorized
			}
			token = strings.TrimSpace(rest)
		}
		if c, err := r.Cookie(sessionCookie); err == nil {
			if isStateChanging(r.Method) && !a.sameOrigin(r) {
				return errBadOrigin
			}
			if token == "" {
				token = c.Value
			}
		}
		if token == "" {
			return errUnauthorized
		}
		s, err := a.sessions.Authenticate(r.Context(), token)
		if err != nil {
			return err
		}
		return h(w, r, s)
	}
}

func isStateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// sameOrigin reports whether the request's Origin header, if any, names this
// server as the client reached it.
func (a *App) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme, host := a.requestScheme(r), r.Host
	if a.fromTrustedProxy(r) {
		if h := r.Header.Get("X-Forwarded-Host"); h != "" {
			host = strings.TrimSpace(strings.Split(h, ",")[0])
		}
	}
	oScheme, oHost, ok := strings.Cut(origin, "://")
	if !ok || strings.ContainsAny(oHost, "/?#@") {
		return false // "null" and anything else that is not scheme://host[:port]
	}
	return strings.EqualFold(oScheme, scheme) &&
		canonicalHostPort(oHost, strings.ToLower(oScheme)) == canonicalHostPort(host, scheme)
}

// requestScheme is the scheme the client used: the connection's, or behind a
// trusted proxy the one it forwards in X-Forwarded-Proto.
func (a *App) requestScheme(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if a.fromTrustedProxy(r) {
		if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
			scheme = strings.ToLower(strings.TrimSpace(strings.Split(p, ",")[0]))
		}
	}
	return scheme
}

// canonicalHostPort lower-cases host and adds the scheme's default port.
func canonicalHostPort(hostport, scheme string) string {
	hostport = strings.ToLower(hostport)
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		return hostport
	}
	if scheme == "https" {
		return hostport + ":443"
	}
	return hostport + ":80"
}

// setSessionCookie sets (or, with maxAge < 0, clears) the session cookie;
// it is Secure whenever the client reached us over TLS, directly or through
// a trusted proxy.
func (a *App) setSessionCookie(w http.ResponseWriter, r *http.Request, token string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    token,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   a.requestScheme(r) == "https",
	})
}

// --- accounts -----------------------------------------------------------------

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
	writeJSON(w, http.StatusOK, map[string]any{"user": s.User.json()})
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

// --- friends and blocks -------------------------------------------------------

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
	other, completed, err := a.store.RequestFriend(r.Context(), s.User, name)
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
	other, err := a.store.AcceptFriend(r.Context(), s.User, name)
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
	other, err := a.store.RefuseFriend(r.Context(), s.User, name)
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
	if err := a.store.RemoveFriend(r.Context(), s.User, name); err != nil {
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
	other, err := a.store.Block(r.Context(), s.User, name)
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

// --- messages -------------------------------------------------------------------

// takeMessageToken applies the per-user message and upload limit.
func (a *App) takeMessageToken(r *http.Request, s *Session) error {
	if a.limits.isExempt(a.clientAddr(r)) {
		return nil
	}
	if ok, wait := a.limits.messagesPerUser.take(s.User.ID, time.Now()); !ok {
		return rateLimited(seconds(wait))
	}
	return nil
}

// recipientName validates the "to" of a send.
func recipientName(to string, me User) (string, error) {
	name, err := normalizeUsername(to)
	if err != nil {
		return "", errNoSuchUser
	}
	if name == me.Username {
		return "", errMessageSelf
	}
	return name, nil
}

func (a *App) handleSendMessage(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		To          *string `json:"to"`
		Body        *string `json:"body"`
		ClientMsgID *string `json:"client_msg_id"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.To == nil {
		return errBadRequest.withMessage("to is required.")
	}
	if req.Body == nil {
		return errInvalidBody.withMessage("body is required.")
	}
	if err := validateBody(*req.Body); err != nil {
		return err
	}
	clientMsgID := ""
	if req.ClientMsgID != nil {
		if err := validateClientMsgID(*req.ClientMsgID); err != nil {
			return err
		}
		clientMsgID = *req.ClientMsgID
	}
	to, err := recipientName(*req.To, s.User)
	if err != nil {
		return err
	}
	if err := a.takeMessageToken(r, s); err != nil {
		return err
	}
	return a.sendAndAnswer(w, r, s, to, *req.Body, clientMsgID, nil)
}

func (a *App) sendAndAnswer(w http.ResponseWriter, r *http.Request, s *Session, to, body, clientMsgID string, file *newFile) error {
	msg, created, err := a.store.SendMessage(r.Context(), s.User, to, body, clientMsgID, file)
	if file != nil && (err != nil || !created) {
		a.store.RemoveUpload(file)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		a.metrics.messagesSent.Add(1)
	}
	writeJSON(w, status, map[string]any{"message": msg})
	return nil
}

func (a *App) handleUpload(w http.ResponseWriter, r *http.Request, s *Session) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return errBadRequest.withMessage("Upload a file as multipart/form-data with the fields to and file.")
	}
	// Room for the other fields and the multipart framing around the file.
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxFileSize+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return errBadRequest.withMessage("The multipart body is malformed.")
	}
	if err := a.takeMessageToken(r, s); err != nil {
		return err
	}
	var to, clientMsgID *string
	var file *newFile
	discard := func() {
		if file != nil {
			a.store.RemoveUpload(file)
		}
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			discard()
			return uploadReadError(err)
		}
		switch part.FormName() {
		case "to", "client_msg_id":
			v, err := io.ReadAll(io.LimitReader(part, 1024))
			if err != nil {
				discard()
				return uploadReadError(err)
			}
			sv := string(v)
			if part.FormName() == "to" {
				to = &sv
			} else {
				clientMsgID = &sv
			}
		case "file":
			if file != nil {
				discard()
				return errBadRequest.withMessage("Send one file per upload.")
			}
			file, err = a.store.SaveUpload(part, part.FileName(), a.cfg.MaxFileSize)
			if err != nil {
				return uploadReadError(err)
			}
		}
		part.Close()
	}
	if file == nil {
		return errBadRequest.withMessage("The upload has no file field.")
	}
	if to == nil {
		discard()
		return errBadRequest.withMessage("to is required.")
	}
	name, err := recipientName(*to, s.User)
	if err != nil {
		discard()
		return err
	}
	cid := ""
	if clientMsgID != nil {
		if err := validateClientMsgID(*clientMsgID); err != nil {
			discard()
			return err
		}
		cid = *clientMsgID
	}
	return a.sendAndAnswer(w, r, s, name, file.Name, cid, file)
}

func uploadReadError(err error) error {
	if errors.Is(err, errStorage) {
		return err
	}
	var tooLarge *http.MaxBytesError
	if errors.Is(err, errFileTooLarge) || errors.As(err, &tooLarge) {
		return errTooLarge.withMessage("The file is larger than this server accepts.")
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: %w", errStorage, err)
	}
	return errBadRequest.withMessage("The multipart body is malformed.")
}

func (a *App) handleDownload(w http.ResponseWriter, r *http.Request, s *Session) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return errNotFound
	}
	f, err := a.store.FileFor(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	defer fh.Close()
	disposition := "attachment"
	if inlineImageTypes[f.ContentType] {
		disposition = "inline"
	}
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": f.Name}))
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", time.Time{}, fh)
	return nil
}

// --- the queue ------------------------------------------------------------------

type pollAnswer struct {
	Cursor int64   `json:"cursor"`
	Events []Event `json:"events"`
}

func (a *App) handlePoll(w http.ResponseWriter, r *http.Request, s *Session) error {
	q := r.URL.Query()
	var cursor int64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errBadRequest.withMessage("cursor is a whole number, 0 or more.")
		}
		cursor = n
	}
	wait := defaultPollWait
	if v := q.Get("timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errBadRequest.withMessage("timeout is a whole number of seconds from 0 to 60.")
		}
		wait = min(time.Duration(n)*time.Second, maxPollWait)
	}

	superseded, endPoll := s.beginPoll()
	defer endPoll()
	a.presence.PollStarted(s.User)
	defer a.presence.PollEnded(s.User)
	a.metrics.openPolls.Add(1)
	defer a.metrics.openPolls.Add(-1)

	ctx := r.Context()
	var deadline <-chan time.Time
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		deadline = timer.C
	}
	for {
		// Take the wake-up channel before reading, so a commit in between
		// is not missed.
		woken, release := a.notifier.wait(s.User.ID)
		events, err := a.pollEvents(ctx, s.User.ID, cursor)
		if err != nil {
			release()
			if ctx.Err() != nil {
				return nil // the client left; nobody to answer
			}
			return err
		}
		if len(events) > 0 {
			release()
			a.countDelivered(events)
			writeJSON(w, http.StatusOK, pollAnswer{Cursor: events[len(events)-1].Seq, Events: events})
			return nil
		}
		if wait == 0 {
			release()
			return a.answerEmptyOrEnded(w, r, s, cursor)
		}
		select {
		case <-woken:
			release()
			continue
		case <-s.Ended():
		case <-superseded:
		case <-deadline:
		case <-a.shuttingDown:
		case <-ctx.Done():
			release()
			return nil
		}
		release()
		return a.answerEmptyOrEnded(w, r, s, cursor)
	}
}

// pollEvents reads the events after cursor: from the in-memory tail when the
// client is caught up, else from the database (asking for a tail to be
// kept from now on).
func (a *App) pollEvents(ctx context.Context, user, cursor int64) ([]Event, error) {
	if events, ok := a.store.RecentEvents(user, cursor, maxPollBatch); ok {
		return events, nil
	}
	events, err := a.store.EventsAfter(ctx, user, cursor, maxPollBatch)
	if err == nil && len(events) < maxPollBatch {
		a.store.RequestTail(user)
	}
	return events, err
}

// answerEmptyOrEnded answers a poll with nothing new: for a session that a
// newer login replaced, the session_replaced event, its last.
func (a *App) answerEmptyOrEnded(w http.ResponseWriter, r *http.Request, s *Session, cursor int64) error {
	if errors.Is(s.EndReason(), errSessionReplaced) {
		last, err := a.store.LastSeq(r.Context(), s.User.ID)
		if err != nil {
			last = cursor
		}
		seq := max(last, cursor) + 1
		writeJSON(w, http.StatusOK, pollAnswer{Cursor: seq, Events: []Event{{
			Seq: seq, Type: "session_replaced", At: apiTime(time.Now()),
		}}})
		return nil
	}
	writeJSON(w, http.StatusOK, pollAnswer{Cursor: cursor, Events: []Event{}})
	return nil
}

func (a *App) countDelivered(events []Event) {
	n := 0
	for _, e := range events {
		if e.Message != nil {
			n++
		}
	}
	a.metrics.messagesDelivered.Add(int64(n))
}

func (a *App) handleClean(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		Upto *int64 `json:"upto"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Upto == nil || *req.Upto < 0 {
		return errBadRequest.withMessage("upto is required: a whole number, 0 or more.")
	}
	removed, err := a.store.Clean(r.Context(), s.User.ID, *req.Upto)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": removed})
	return nil
}

// --- operations and the page ------------------------------------------------------

func (a *App) handleHealth(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %w", errStorage, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (a *App) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	queued := a.store.QueuedMessages()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	a.metrics.write(w, gauges{
		onlineUsers:    a.presence.Online(),
		queuedMessages: queued,
		waitingUsers:   a.notifier.waiting(),
	})
	return nil
}

func (a *App) handlePage(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, a.static, "index.html")
	return nil
}

func (a *App) handleStatic(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-cache")
	http.StripPrefix("/static", http.FileServerFS(a.static)).ServeHTTP(w, r)
	return nil
}
