package main

// Web Push: the server's key and the caller's subscriptions.

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

func (a *App) handlePushKey(w http.ResponseWriter, r *http.Request) error {
	if a.push == nil {
		return errPushDisabled
	}
	writeJSON(w, http.StatusOK, map[string]string{"public_key": a.push.key.Public})
	return nil
}

func (a *App) handleAddPushSubscription(w http.ResponseWriter, r *http.Request, s *Session) error {
	if a.push == nil {
		return errPushDisabled
	}
	// Fields arrive raw so that a wrong type is this field's own error
	// (invalid_subscription), while malformed JSON stays bad_request.
	var req struct {
		Endpoint json.RawMessage `json:"endpoint"`
		Keys     json.RawMessage `json:"keys"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	var endpoint string
	var keys struct {
		P256dh *string `json:"p256dh"`
		Auth   *string `json:"auth"`
	}
	if req.Endpoint == nil || json.Unmarshal(req.Endpoint, &endpoint) != nil {
		return errInvalidSubscription.withMessage("endpoint is required: the push service's https URL.")
	}
	if req.Keys == nil || json.Unmarshal(req.Keys, &keys) != nil || keys.P256dh == nil || keys.Auth == nil {
		return errInvalidSubscription.withMessage("keys is required: {\"p256dh\", \"auth\"}, base64url.")
	}
	p256dh, ok := decodeKey(*keys.P256dh)
	if !ok || len(p256dh) != 65 {
		return errInvalidSubscription.withMessage("keys.p256dh is 65 bytes (an uncompressed P-256 point), base64url.")
	}
	if _, err := ecdh.P256().NewPublicKey(p256dh); err != nil {
		return errInvalidSubscription.withMessage("keys.p256dh is not a point of P-256.")
	}
	auth, ok := decodeKey(*keys.Auth)
	if !ok || len(auth) != 16 {
		return errInvalidSubscription.withMessage("keys.auth is 16 bytes, base64url.")
	}
	if _, err := a.push.guard.check(r.Context(), endpoint); err != nil {
		return errInvalidSubscription.withMessage("The endpoint is refused: %s.", strings.TrimPrefix(err.Error(), errEndpointRefused.Error()+": "))
	}
	enc := base64.RawURLEncoding
	created, err := a.store.AddPushSubscription(r.Context(), s.User.ID, pushSubscription{
		Endpoint: endpoint, P256dh: enc.EncodeToString(p256dh), Auth: enc.EncodeToString(auth), Host: a.requestHost(r),
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]string{"endpoint": endpoint})
	return nil
}

func (a *App) handleRemovePushSubscription(w http.ResponseWriter, r *http.Request, s *Session) error {
	var req struct {
		Endpoint *string `json:"endpoint"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Endpoint == nil {
		return errBadRequest.withMessage("endpoint is required.")
	}
	if err := a.store.RemovePushSubscription(r.Context(), s.User.ID, *req.Endpoint); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeKey reads a subscription key: base64url as browsers write it,
// padded or not (standard base64 too, as some libraries send it).
func decodeKey(s string) ([]byte, bool) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, true
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	return b, err == nil
}

// requestHost is the host the client reached us by, without its port: the
// default VAPID subject is an address there.
func (a *App) requestHost(r *http.Request) string {
	host := r.Host
	if a.fromTrustedProxy(r) {
		if h := r.Header.Get("X-Forwarded-Host"); h != "" {
			host = strings.TrimSpace(strings.Split(h, ",")[0])
		}
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.Trim(host, "[]")
}

// pushSubject is the VAPID contact for a subscription: -push-subject, else
// mailto:admin@ the server's name: its ACME domain, or failing that the
// host the subscribing browser reached it by.
func (a *App) pushSubject(sub pushSubscription) string {
	if a.cfg.PushSubject != "" {
		return a.cfg.PushSubject
	}
	host := sub.Host
	if len(a.cfg.ACMEDomains) > 0 {
		host = a.cfg.ACMEDomains[0]
	}
	if host == "" {
		host = "localhost"
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		host = "[" + host + "]"
	}
	return "mailto:admin@" + host
}

// pushAfterSend queues the push check for a message just stored, without
// waiting; sentAt is from before the store was asked, so that a poll the
// message woke and ended counts as open.
// pushRecipients are who a stored message may push to: its recipient, or
// the group's members but the sender and those whose queue was full.
func (a *App) pushRecipients(ctx context.Context, sender User, msg Message, gid int64, undelivered []string) []string {
	if gid == 0 {
		return []string{msg.To}
	}
	if a.push == nil {
		return nil
	}
	g, err := a.store.GroupOf(ctx, sender.ID, gid)
	if err != nil {
		return nil // left or gone meanwhile: no push is the safe side
	}
	skip := map[string]bool{sender.Username: true}
	for _, u := range undelivered {
		skip[u] = true
	}
	var to []string
	for _, m := range g.Members {
		if !skip[m.Username] {
			to = append(to, m.Username)
		}
	}
	return to
}

func (a *App) pushAfterSend(msg Message, recipients []string, sentAt time.Time) {
	if a.push == nil {
		return
	}
	for _, to := range recipients {
		a.push.messageStored(msg, to, sentAt)
	}
}

// handleServiceWorker serves static/sw.js at the root: a worker's scope is
// at most the folder it is served from, and the page is "/".
func (a *App) handleServiceWorker(w http.ResponseWriter, r *http.Request) error {
	return a.serveAsset(w, r, "sw.js")
}
