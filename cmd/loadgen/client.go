package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// maxUpto is a clean bound beyond any real seq: API.md says it removes
// everything held. 2^53-1 stays exact in every JSON implementation.
const maxUpto = 1<<53 - 1

// apiError is a non-2xx answer of the server: its status, the snake_case code
// of its error body and the Retry-After it asked for.
type apiError struct {
	Status     int
	Code       string
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Code) }

// statusOf returns the HTTP status of err, or 0 for a transport error.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// codeOf returns the error code of err, or "" for a transport error.
func codeOf(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// newTransport returns a keep-alive HTTP/1.1 transport sized for conns
// concurrent requests to one host. When spread > 1 and the host is an IPv4
// loopback address, connections are made from spread different source
// addresses (127.0.0.2, 127.0.0.3, ...) so tens of thousands of them do not
// run out of ephemeral ports on one address pair.
func newTransport(conns, spread int) *http.Transport {
	var next atomic.Uint32
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			ip := net.ParseIP(host)
			if spread <= 1 || ip == nil || ip.To4() == nil || !ip.IsLoopback() {
				return d.DialContext(ctx, network, addr)
			}
			n := next.Add(1) % uint32(spread)
			ld := *d
			ld.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+n))}
			return ld.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// client speaks webim's HTTP API (API.md, version 1) with bearer tokens.
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string, tr http.RoundTripper) *client {
	return &client{base: base, hc: &http.Client{Transport: tr}}
}

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
// A non-2xx answer is returned as *apiError.
func (c *client) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp.StatusCode, resp.Header.Get("Retry-After"), data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
		}
	}
	return nil
}

// message is the message object of API.md.
type message struct {
	ID   int64  `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
	Body string `json:"body"`
}

// event is one queue event; Message is set for type "message".
type event struct {
	Seq     int64    `json:"seq"`
	Type    string   `json:"type"`
	Message *message `json:"message"`
}

type pollAnswer struct {
	Cursor int64   `json:"cursor"`
	Events []event `json:"events"`

	msgs []*message // decodePoll reuses them
}

func (c *client) signup(ctx context.Context, username, password string) error {
	return c.do(ctx, "POST", "/api/signup", "", map[string]string{"username": username, "password": password}, nil)
}

func (c *client) login(ctx context.Context, username, password string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := c.do(ctx, "POST", "/api/login", "", map[string]string{"username": username, "password": password}, &out)
	if err == nil && out.Token == "" {
		err = errors.New("login answered without a token")
	}
	return out.Token, err
}

func (c *client) logout(ctx context.Context, token string) error {
	return c.do(ctx, "POST", "/api/logout", token, nil, nil)
}

func (c *client) me(ctx context.Context, token string) error {
	return c.do(ctx, "GET", "/api/me", token, nil, nil)
}

func (c *client) friendRequest(ctx context.Context, token, to string) error {
	return c.do(ctx, "POST", "/api/friends/"+url.PathEscape(to)+"/request", token, nil, nil)
}

func (c *client) friendAccept(ctx context.Context, token, from string) error {
	return c.do(ctx, "POST", "/api/friends/"+url.PathEscape(from)+"/accept", token, nil, nil)
}

// clean acknowledges every message event with seq <= upto; it returns how
// many the server removed.
func (c *client) clean(ctx context.Context, token string, upto int64) (int64, error) {
	var out struct {
		Removed int64 `json:"removed"`
	}
	err := c.do(ctx, "POST", "/api/clean", token, map[string]int64{"upto": upto}, &out)
	return out.Removed, err
}

// metrics fetches /metrics and returns the value of each unlabelled sample.
func (c *client) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &apiError{Status: resp.StatusCode}
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(data)), nil
}

// decodeAPIError reads a failed answer's status, error code and Retry-After.
func decodeAPIError(status int, retryAfter string, data []byte) *apiError {
	ae := &apiError{Status: status}
	var eb struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil {
		ae.Code = eb.Error.Code
	}
	if s, err := strconv.Atoi(retryAfter); err == nil {
		ae.RetryAfter = time.Duration(s) * time.Second
	}
	return ae
}
