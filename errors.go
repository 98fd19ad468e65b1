package main

import (
	"errors"
	"fmt"
	"net/http"
)

// apiError is an error a client is meant to see: its HTTP status, the stable
// snake_case code of API.md, and a sentence for people.
type apiError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, in whole seconds, is sent as Retry-After when positive.
	RetryAfter int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// Is makes errors.Is match any apiError with the same code, so a sentinel
// still matches after withMessage has given it a more precise sentence.
func (e *apiError) Is(target error) bool {
	t, ok := target.(*apiError)
	return ok && t.Code == e.Code
}

func newAPIError(status int, code, message string) *apiError {
	return &apiError{Status: status, Code: code, Message: message}
}

// withMessage returns a copy of e with a more precise message.
func (e *apiError) withMessage(format string, args ...any) *apiError {
	c := *e
	c.Message = fmt.Sprintf(format, args...)
	return &c
}

// Every client-visible error, declared once.
var (
	errBadRequest         = newAPIError(http.StatusBadRequest, "bad_request", "The request is malformed.")
	errInvalidUsername    = newAPIError(http.StatusBadRequest, "invalid_username", "A username is 3 to 32 characters of a-z, 0-9, underscore, dot or hyphen.")
	errInvalidDisplayName = newAPIError(http.StatusBadRequest, "invalid_display_name", "A display name is 1 to 64 printable characters.")
	errWeakPassword       = newAPIError(http.StatusBadRequest, "weak_password", "A password is 8 to 1024 characters.")
	errInvalidBody        = newAPIError(http.StatusBadRequest, "invalid_body", "A message is at most 4000 characters and not only spaces.")
	errBefriendSelf       = newAPIError(http.StatusBadRequest, "cannot_befriend_self", "You cannot befriend yourself.")
	errBlockSelf          = newAPIError(http.StatusBadRequest, "cannot_block_self", "You cannot block yourself.")
	errMessageSelf        = newAPIError(http.StatusBadRequest, "cannot_message_self", "You cannot send a message to yourself.")
	errUnauthorized       = newAPIError(http.StatusUnauthorized, "unauthorized", "Sign in first: the session is missing, unknown or expired.")
	errSessionReplaced    = newAPIError(http.StatusUnauthorized, "session_replaced", "This session ended because the account signed in somewhere else.")
	errInvalidCredentials = newAPIError(http.StatusUnauthorized, "invalid_credentials", "The username or password is wrong.")
	errBadOrigin          = newAPIError(http.StatusForbidden, "bad_origin", "Cross-origin requests with the session cookie are refused.")
	errBlocked            = newAPIError(http.StatusForbidden, "blocked", "One of you has blocked the other.")
	errNotFriends         = newAPIError(http.StatusForbidden, "not_friends", "Messages go to friends only.")
	errAccountDisabled    = newAPIError(http.StatusForbidden, "account_disabled", "This account is disabled.")
	errSignupClosed       = newAPIError(http.StatusForbidden, "signup_closed", "Sign-up is closed on this server; ask its administrator for an account.")
	errNotFound           = newAPIError(http.StatusNotFound, "not_found", "There is nothing here.")
	errNoSuchUser         = newAPIError(http.StatusNotFound, "no_such_user", "There is no user with that name.")
	errNoSuchRequest      = newAPIError(http.StatusNotFound, "no_such_request", "There is no such friend request or friendship.")
	errMethodNotAllowed   = newAPIError(http.StatusMethodNotAllowed, "method_not_allowed", "That method is not allowed here.")
	errUsernameTaken      = newAPIError(http.StatusConflict, "username_taken", "That username is taken.")
	errAlreadyFriends     = newAPIError(http.StatusConflict, "already_friends", "You are already friends.")
	errAlreadyRequested   = newAPIError(http.StatusConflict, "already_requested", "You have already asked.")
	errQueueFull          = newAPIError(http.StatusConflict, "queue_full", "The recipient's queue is full until they clean it.")
	errTooLarge           = newAPIError(http.StatusRequestEntityTooLarge, "too_large", "The request body is too large.")
	errRateLimited        = newAPIError(http.StatusTooManyRequests, "rate_limited", "Too many requests; try again later.")
	errStorage            = newAPIError(http.StatusServiceUnavailable, "storage_unavailable", "The server cannot store anything right now; try again shortly.")
	errShuttingDown       = newAPIError(http.StatusServiceUnavailable, "shutting_down", "The server is shutting down; try again shortly.")
	errInvalidGroupName   = newAPIError(http.StatusBadRequest, "invalid_group_name", "A group name is 1 to 64 printable characters.")
	errNoSuchGroup        = newAPIError(http.StatusNotFound, "no_such_group", "There is no such group, or you are not in it.")
	errNotGroupOwner      = newAPIError(http.StatusForbidden, "not_group_owner", "Only the group's owner may do that.")
	errNotMember          = newAPIError(http.StatusNotFound, "not_member", "That user is not in the group.")
	errAlreadyMember      = newAPIError(http.StatusConflict, "already_member", "That user is already in the group.")
	errGroupFull          = newAPIError(http.StatusConflict, "group_full", "The group has as many members as this server allows.")
	errInternal           = newAPIError(http.StatusInternalServerError, "internal", "Something went wrong on the server.")

	errInvalidSubscription = newAPIError(http.StatusBadRequest, "invalid_subscription", "A push subscription needs an https endpoint on a public host and keys p256dh (65 bytes) and auth (16 bytes), base64url.")
	errPushDisabled        = newAPIError(http.StatusNotFound, "push_disabled", "Push notifications are turned off on this server.")
)

// asAPIError returns the client-visible form of err: itself when it is an
// apiError, else errInternal (and ok=false so the caller logs the cause).
func asAPIError(err error) (e *apiError, ok bool) {
	if errors.As(err, &e) {
		return e, true
	}
	return errInternal, false
}

// rateLimited builds a 429 that tells the client how long to wait.
func rateLimited(retryAfterSeconds int) *apiError {
	e := *errRateLimited
	if retryAfterSeconds < 1 {
		retryAfterSeconds = 1
	}
	e.RetryAfter = retryAfterSeconds
	return &e
}
