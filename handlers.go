package main

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
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
	authed("PATCH /api/me", a.handleUpdateMe)
	authed("DELETE /api/me", a.handleDeleteMe)
	authed("POST /api/me/password", a.handleChangePassword)
	handle("GET /api/push/key", a.handlePushKey)
	authed("POST /api/push/subscriptions", a.handleAddPushSubscription)
	authed("DELETE /api/push/subscriptions", a.handleRemovePushSubscription)
	handle("GET /api/session", a.handleSession)
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
	authed("POST /api/groups", a.handleCreateGroup)
	authed("GET /api/groups", a.handleGroups)
	authed("GET /api/groups/{id}", a.handleGroup)
	authed("PATCH /api/groups/{id}", a.handleRenameGroup)
	authed("POST /api/groups/{id}/members/{username}", a.handleAddGroupMember)
	authed("DELETE /api/groups/{id}/members/{username}", a.handleRemoveGroupMember)
	authed("POST /api/read", a.handleRead)
	authed("GET /api/conversations", a.handleConversations)
	authed("POST /api/typing", a.handleTyping)
	handle("GET /api/config", a.handleConfig)
	handle("GET /api/health", a.handleHealth)
	handle("GET /metrics", a.handleMetrics)
	handle("GET /{$}", a.handlePage)
	handle("GET /static/", a.handleStatic)
	handle("GET /sw.js", a.handleServiceWorker)
	handle("/", func(w http.ResponseWriter, r *http.Request) error {
		// Distinguish a known path with the wrong method from an unknown one.
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPatch} {
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
		parked := false
		defer func() {
			if parked {
				return // the parked poll is timed when it answers
			}
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
			if a.log.Enabled(r.Context(), slog.LevelDebug) { // spare the arguments' boxing
				a.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "dur", time.Since(start))
			}
		}()
		if err := h(sw, r); err == errParked {
			parked = true
		} else if err != nil {
			a.writeError(sw, r, err)
		}
	})
}

var (
	headerNosniff    = []string{"nosniff"}
	headerNoReferrer = []string{"no-referrer"}
	headerDeny       = []string{"DENY"}
	headerNoStore    = []string{"no-store"}
	headerHSTS       = []string{hstsMaxAge}
)

func (a *App) withCommonHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Shared, never-mutated value slices: Header.Set would allocate
		// four of them on every request.
		h := w.Header()
		h["X-Content-Type-Options"] = headerNosniff
		h["Referrer-Policy"] = headerNoReferrer
		h["X-Frame-Options"] = headerDeny
		if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/metrics" {
			h["Cache-Control"] = headerNoStore
		}
		if r.TLS != nil {
			// Only on webim's own HTTPS: behind a proxy the proxy decides.
			h["Strict-Transport-Security"] = headerHSTS
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
	switch {
	case !ok && r.Context().Err() != nil:
		// The client went away (say, while waiting for a password hash):
		// nobody reads this answer and nothing went wrong here.
		a.log.Debug("client gone", "method", r.Method, "path", r.URL.Path, "err", err)
	case !ok:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case e.Status >= 500:
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
