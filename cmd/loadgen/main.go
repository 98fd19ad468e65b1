// Command loadgen drives a running webim server over its HTTP API, like real
// clients, and measures it: durable throughput, send→deliver latency, memory
// per idle online user and backlog delivery after a login. It verifies while
// it measures: every accepted message must reach its recipient's poll (and
// the sender's own queue) exactly once, in the order it was sent, or the
// command exits 1.
//
// Run the server under test with -rate-limit-exempt 127.0.0.0/8; see
// BENCHMARKS.md for the commands used there.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// config holds the flags of one run.
type config struct {
	url         string
	scenario    string
	pairs       int
	users       int
	rate        float64
	duration    time.Duration
	messages    int
	drain       time.Duration
	prefix      string
	password    string
	conc        int
	pollTimeout int
	cleanEvery  time.Duration
	pid         int
	jsonOut     bool
	backlog     int
	senders     int
	tokenCache  string
	spread      int
	openRate    int
	loginFirst  bool
	cpuProfile  string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8000", "base URL of the webim server under test (loopback)")
	fs.StringVar(&cfg.scenario, "scenario", "throughput", "throughput, paced, idle or backlog")
	fs.IntVar(&cfg.pairs, "pairs", 100, "throughput/paced: pairs of friends, both of whom send")
	fs.IntVar(&cfg.users, "users", 1000, "idle: users holding a poll open")
	fs.Float64Var(&cfg.rate, "rate", 1000, "paced: total messages per second over all senders")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "throughput/paced: how long to send; idle: how long to hold the polls")
	fs.IntVar(&cfg.messages, "messages", 1_000_000, "throughput/paced: stop after this many sends in all")
	fs.DurationVar(&cfg.drain, "drain", 15*time.Second, "how long to wait for outstanding deliveries after the last send")
	fs.StringVar(&cfg.prefix, "prefix", "lg", "username prefix; users are reused across runs with the same prefix")
	fs.StringVar(&cfg.password, "password", "loadgen-password", "password of every generated user")
	fs.IntVar(&cfg.conc, "setup-conc", 16, "concurrent requests while signing up, logging in and befriending")
	fs.IntVar(&cfg.pollTimeout, "poll-timeout", 25, "timeout parameter of each long poll, in seconds")
	fs.DurationVar(&cfg.cleanEvery, "clean-every", time.Second, "throughput/paced: each user cleans what it received at most this often (0: after every poll answer)")
	fs.IntVar(&cfg.pid, "pid", 0, "server process id: report its RSS and CPU time from /proc (0: do not)")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.IntVar(&cfg.backlog, "backlog", 10_000, "backlog: messages queued for the offline user")
	fs.IntVar(&cfg.senders, "senders", 4, "backlog: friends who send them, concurrently")
	fs.StringVar(&cfg.tokenCache, "token-cache", defaultTokenCache(), "file keeping session tokens between runs, to skip logins (\"\": none)")
	fs.IntVar(&cfg.spread, "spread", 0, "source addresses 127.0.0.2.. to spread connections over (0: automatic)")
	fs.IntVar(&cfg.openRate, "open-rate", 2000, "idle: polls opened per second")
	fs.BoolVar(&cfg.loginFirst, "login-first", false, "users exist from earlier runs: log in first and sign up only after a 401 (one password hash less each)")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write this process's CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	cfg.url = strings.TrimRight(cfg.url, "/")
	switch cfg.scenario {
	case "throughput", "paced", "idle", "backlog":
	default:
		return nil, fmt.Errorf("unknown scenario %q", cfg.scenario)
	}
	if cfg.pairs < 1 || cfg.users < 1 || cfg.backlog < 1 || cfg.senders < 1 || cfg.conc < 1 || cfg.messages < 1 {
		return nil, errors.New("counts must be positive")
	}
	if cfg.scenario == "paced" && cfg.rate <= 0 {
		return nil, errors.New("-rate must be positive")
	}
	if cfg.duration <= 0 || cfg.duration > time.Hour || cfg.drain < 0 || cfg.drain > 10*time.Minute {
		return nil, errors.New("-duration must be in (0, 1h] and -drain in [0, 10m]")
	}
	if cfg.pollTimeout < 0 || cfg.pollTimeout > 60 {
		return nil, errors.New("-poll-timeout must be 0..60")
	}
	return cfg, nil
}

func defaultTokenCache() string {
	return os.TempDir() + "/webim-loadgen-tokens.json"
}

// result is the outcome of one run; the scenario fills its own section.
type result struct {
	Scenario string         `json:"scenario"`
	URL      string         `json:"url"`
	Run      string         `json:"run"`
	Setup    setupStats     `json:"setup"`
	Flow     *flowResult    `json:"flow,omitempty"`
	Idle     *idleResult    `json:"idle,omitempty"`
	Backlog  *backlogResult `json:"backlog,omitempty"`
	Errors   map[string]int `json:"errors"`
	OK       bool           `json:"ok"`
	Failure  string         `json:"failure,omitempty"`
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if os.Getenv("GOGC") == "" {
		// A tool with a small, steady heap: collect less often than the
		// default; GOGC still decides when set.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var prof *os.File
	if cfg.cpuProfile != "" {
		prof, err = os.Create(cfg.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(prof)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: cpu profile:", err)
			os.Exit(2)
		}
	}
	res := run(ctx, cfg, &logger{w: os.Stderr})
	if prof != nil {
		pprof.StopCPUProfile()
		if err := prof.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: cpu profile:", err)
		}
	}
	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		printTable(os.Stdout, res)
	}
	if !res.OK {
		fmt.Fprintln(os.Stderr, "loadgen: FAILED:", res.Failure)
		os.Exit(1)
	}
}

// run runs the scenario of cfg. A failure (setup error, loss, duplicate,
// disorder) is reported in the result with OK false.
func run(ctx context.Context, cfg *config, lg *logger) *result {
	res := &result{Scenario: cfg.scenario, URL: cfg.url, Run: newRunID(), Errors: map[string]int{}}
	errs := &errCounter{m: res.Errors}
	var err error
	switch cfg.scenario {
	case "throughput", "paced":
		res.Flow, err = runFlow(ctx, cfg, res, errs, lg)
	case "idle":
		res.Idle, err = runIdle(ctx, cfg, res, errs, lg)
	case "backlog":
		res.Backlog, err = runBacklog(ctx, cfg, res, errs, lg)
	}
	errs.mu.Lock()
	defer errs.mu.Unlock()
	if err != nil {
		res.Failure = err.Error()
		return res
	}
	res.OK = true
	return res
}

// newRunID returns 8 random hex digits that mark this run's messages.
func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errCounter counts failed requests by kind.
type errCounter struct {
	mu sync.Mutex
	m  map[string]int
}

// add counts err under what ("send", "poll", ...), its status and code.
func (e *errCounter) add(what string, err error) {
	key := what + ": "
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == 0 {
		key += ae.Code
	} else if ae != nil {
		key += fmt.Sprintf("%d %s", ae.Status, ae.Code)
	} else if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		key += "timeout"
	} else {
		key += "transport error"
	}
	e.mu.Lock()
	e.m[key]++
	e.mu.Unlock()
}

func (e *errCounter) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, v := range e.m {
		n += v
	}
	return n
}

// logger writes progress to stderr.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// progress prints line() every second until the returned stop is called.
func (l *logger) progress(ctx context.Context, line func() string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.printf("%s", line())
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { cancel(); <-done; l.printf("%s", line()) }
}

// printTable writes the human-readable summary.
func printTable(w io.Writer, r *result) {
	row := func(k string, format string, args ...any) {
		fmt.Fprintf(w, "%-40s %s\n", k, fmt.Sprintf(format, args...))
	}
	row("scenario", "%s (run %s) against %s", r.Scenario, r.Run, r.URL)
	row("setup", "%d users in %.1fs (%d cached tokens, %d sign-ups, %d logins)",
		r.Setup.Users, r.Setup.Seconds, r.Setup.Cached, r.Setup.Signups, r.Setup.Logins)
	if f := r.Flow; f != nil {
		if f.Rate > 0 {
			row("offered rate", "%.0f msgs/s", f.Rate)
		}
		row("senders", "%d (%d pairs)", f.Senders, f.Senders/2)
		row("send window", "%.2fs (drain %.2fs)", f.SendSeconds, f.DrainSeconds)
		row("sent / 201 / 200 / rejected / unknown", "%d / %d / %d / %d / %d", f.Sent, f.Created, f.Repeats, f.Rejected, f.Unknown)
		row("accepted", "%.0f msgs/s", f.AcceptedPerSec)
		row("delivered", "%.0f msgs/s (%d messages)", f.DeliveredPerSec, f.Delivered)
		row("send→deliver latency", "%s", f.Latency)
		row("send round trip (201)", "%s", f.SendRTT)
		if f.LateSends > 0 {
			row("late sends (behind schedule)", "%d", f.LateSends)
		}
		if f.ServerCPUSeconds > 0 {
			row("server CPU", "%.2fs, %.1f µs per delivered message", f.ServerCPUSeconds, f.ServerCPUMicrosPerMsg)
		}
		if f.LoadgenMicrosPerMsg > 0 {
			row("loadgen CPU", "%.2fs, %.1f µs per delivered message", f.LoadgenCPUSeconds, f.LoadgenMicrosPerMsg)
		} else {
			row("loadgen CPU", "%.2fs", f.LoadgenCPUSeconds)
		}
		if f.Delivered > 0 {
			row("poll answers per delivered message", "%.2f (%d answers)", f.PollAnswersPerMsg, f.PollAnswers)
			row("HTTP requests per delivered message", "%.2f (%d sends, polls and cleans)", f.RequestsPerMsg, f.Requests)
		}
		if f.RSSBefore > 0 {
			row("server RSS before / after", "%s / %s", mib(f.RSSBefore), mib(f.RSSAfter))
		}
		row("recipient queues", "%s", verdictLine(f.Recipient))
		row("senders' own copies", "%s", verdictLine(f.SenderCopy))
	}
	if i := r.Idle; i != nil {
		row("users requested / polls held", "%d / %d (min %d while holding %.0fs)", i.Users, i.Held, i.HeldMin, i.HoldSeconds)
		if i.ServerOpenPolls >= 0 {
			row("server open polls / online", "%d / %d", i.ServerOpenPolls, i.ServerOnline)
		}
		row("server RSS start / setup / held / end", "%s / %s / %s / %s", mib(i.RSSStart), mib(i.RSSSetup), mib(i.RSSHeld), mib(i.RSSEnd))
		row("memory per held poll", "%.1f KiB (from after setup), %.1f KiB (from start)", i.BytesPerUser/1024, i.BytesPerUserFromStart/1024)
		if i.GoroutinesHeld >= 0 {
			row("server goroutines setup / held", "%d / %d (%.2f per poll)", i.GoroutinesSetup, i.GoroutinesHeld, i.GoroutinesPerUser)
		}
		row("loadgen fd limit / spread", "%d / %d source addresses", i.FDLimit, i.Spread)
	}
	if b := r.Backlog; b != nil {
		row("backlog", "%d messages from %d senders", b.Messages, b.Senders)
		row("storing", "%.2fs, %.0f msgs/s (%d accepted)", b.StoreSeconds, b.StoreRate, b.Accepted)
		row("login", "%.1f ms", b.LoginMillis)
		row("login → last message", "%.1f ms (%d pages)", b.TotalMillis, b.Pages)
		row("cleaned", "%d removed", b.Removed)
		row("recipient queue", "%s", verdictLine(b.Recipient))
	}
	if len(r.Errors) > 0 {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("errors "+k, "%d", r.Errors[k])
		}
	}
	if r.OK {
		row("result", "OK")
	} else {
		row("result", "FAILED: %s", r.Failure)
	}
}

func verdictLine(v verdict) string {
	s := fmt.Sprintf("%d accepted, %d delivered, %d lost, %d duplicated, %d out of order", v.Accepted, v.Delivered, v.Lost, v.Duplicates, v.OutOfOrder)
	if v.RejectedDelivered > 0 {
		s += fmt.Sprintf(", %d delivered though refused", v.RejectedDelivered)
	}
	if v.UnknownDelivered > 0 {
		s += fmt.Sprintf(", %d of unknown outcome delivered", v.UnknownDelivered)
	}
	if v.Stray > 0 {
		s += fmt.Sprintf(", %d stray", v.Stray)
	}
	return s
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
