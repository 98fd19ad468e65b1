package main

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// durationBuckets are the upper bounds (seconds) of the request histogram;
// the long tail covers long-polls, which are meant to last up to 60 s.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// metrics are the counters /metrics exposes in Prometheus' text format.
type metrics struct {
	messagesSent      atomic.Int64
	groupMessagesSent atomic.Int64
	messagesDelivered atomic.Int64
	openPolls         atomic.Int64
	// conns is the connection cap of the server's listeners; nil when the
	// handler is served without them (tests).
	conns *connLimiter
	// node and addr say which node of several this is (webim_node_info);
	// both are set before the server serves.
	node, addr string
	// engine writes the engine's own metrics, if it has any.
	engine metricsWriter

	mu     sync.Mutex
	routes map[string]*histogram
}

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

func newMetrics() *metrics { return &metrics{routes: map[string]*histogram{}} }

// register makes route's histogram appear (at zero) before its first request.
func (m *metrics) register(route string) {
	m.mu.Lock()
	if m.routes[route] == nil {
		m.routes[route] = &histogram{counts: make([]uint64, len(durationBuckets)+1)}
	}
	m.mu.Unlock()
}

// observe records one request's duration under its route pattern.
func (m *metrics) observe(route string, d time.Duration) {
	sec := d.Seconds()
	i := sort.SearchFloat64s(durationBuckets, sec)
	m.mu.Lock()
	h := m.routes[route]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(durationBuckets)+1)}
		m.routes[route] = h
	}
	h.counts[i]++
	h.count++
	h.sum += sec
	m.mu.Unlock()
}

// metricsWriter is a store with metrics of its own.
type metricsWriter interface{ writeMetrics(w io.Writer) }

// gauges are the values read at scrape time.
type gauges struct {
	onlineUsers    int
	queuedMessages int64
	waitingUsers   int
	parkedPolls    int
	groups         int64
}

func (m *metrics) write(w io.Writer, g gauges) {
	fmt.Fprintf(w, "# HELP webim_online_users Users online now.\n# TYPE webim_online_users gauge\nwebim_online_users %d\n", g.onlineUsers)
	fmt.Fprintf(w, "# HELP webim_open_polls Long-polls open now.\n# TYPE webim_open_polls gauge\nwebim_open_polls %d\n", m.openPolls.Load())
	fmt.Fprintf(w, "# HELP webim_messages_sent_total Messages stored (201).\n# TYPE webim_messages_sent_total counter\nwebim_messages_sent_total %d\n", m.messagesSent.Load())
	fmt.Fprintf(w, "# HELP webim_group_messages_sent_total Group messages stored (201), each counted once however many members it reached.\n# TYPE webim_group_messages_sent_total counter\nwebim_group_messages_sent_total %d\n", m.groupMessagesSent.Load())
	fmt.Fprintf(w, "# HELP webim_groups Groups that exist.\n# TYPE webim_groups gauge\nwebim_groups %d\n", g.groups)
	fmt.Fprintf(w, "# HELP webim_messages_delivered_total Message events returned by polls.\n# TYPE webim_messages_delivered_total counter\nwebim_messages_delivered_total %d\n", m.messagesDelivered.Load())
	fmt.Fprintf(w, "# HELP webim_queued_messages Uncleaned messages in all queues.\n# TYPE webim_queued_messages gauge\nwebim_queued_messages %d\n", g.queuedMessages)
	fmt.Fprintf(w, "# HELP webim_waiting_users Users with a poll waiting on the notifier.\n# TYPE webim_waiting_users gauge\nwebim_waiting_users %d\n", g.waitingUsers)
	fmt.Fprintf(w, "# HELP webim_goroutines Goroutines in the server process.\n# TYPE webim_goroutines gauge\nwebim_goroutines %d\n", runtime.NumGoroutine())
	fmt.Fprintf(w, "# HELP webim_parked_polls Long-polls waiting without a goroutine (a subset of open polls).\n# TYPE webim_parked_polls gauge\nwebim_parked_polls %d\n", g.parkedPolls)

	fmt.Fprintf(w, "# HELP webim_node_info This node: its id (in its logs too) and listening address.\n# TYPE webim_node_info gauge\nwebim_node_info{node=%s,addr=%s} 1\n",
		strconv.Quote(m.node), strconv.Quote(m.addr))
	if m.engine != nil {
		m.engine.writeMetrics(w)
	}

	if c := m.conns; c != nil {
		fmt.Fprintf(w, "# HELP webim_open_connections Client connections open now, parked polls' included.\n# TYPE webim_open_connections gauge\nwebim_open_connections %d\n", c.open.Load())
		fmt.Fprintf(w, "# HELP webim_max_connections The connection cap (-max-conns).\n# TYPE webim_max_connections gauge\nwebim_max_connections %d\n", c.max)
		fmt.Fprintf(w, "# HELP webim_refused_connections_total Connections closed at once for being over -max-conns or -max-conns-per-addr.\n# TYPE webim_refused_connections_total counter\nwebim_refused_connections_total %d\n", c.refused.Load())
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	routes := make([]string, 0, len(m.routes))
	for r := range m.routes {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	fmt.Fprint(w, "# HELP webim_http_request_duration_seconds Time to answer HTTP requests, by route.\n# TYPE webim_http_request_duration_seconds histogram\n")
	for _, r := range routes {
		h := m.routes[r]
		label := strconv.Quote(r)
		var cum uint64
		for i, le := range durationBuckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "webim_http_request_duration_seconds_bucket{route=%s,le=\"%g\"} %d\n", label, le, cum)
		}
		fmt.Fprintf(w, "webim_http_request_duration_seconds_bucket{route=%s,le=\"+Inf\"} %d\n", label, h.count)
		fmt.Fprintf(w, "webim_http_request_duration_seconds_sum{route=%s} %g\n", label, h.sum)
		fmt.Fprintf(w, "webim_http_request_duration_seconds_count{route=%s} %d\n", label, h.count)
	}
}
