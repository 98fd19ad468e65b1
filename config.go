package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults of API.md's Operations section.
const (
	defaultAddr        = ":8000"
	defaultDB          = "./webim.db"
	defaultMaxFileSize = 10 << 20
	defaultMaxQueue    = 100_000
)

// Config is everything the server is told at start.
type Config struct {
	Addr        string
	DBPath      string
	MaxFileSize int64
	MaxQueue    int
	// MaxGroupMembers bounds a group, its owner included.
	MaxGroupMembers int
	RateLimitExempt []netip.Prefix
	// TrustedProxies are the peers whose X-Forwarded-* headers are believed.
	TrustedProxies []netip.Prefix
	LogLevel       string
	// LogFormat is "text" or "json".
	LogFormat string

	// TLS: a certificate from files, or one obtained by ACME (tls.go).
	TLSCert, TLSKey string
	// ACMEDomains are the names ACME certificates are obtained for.
	ACMEDomains []string
	ACMEEmail   string
	// ACMEDirectory is the ACME server's directory URL; empty is Let's Encrypt.
	ACMEDirectory string
	// ACMERoot is a PEM file of extra roots to trust when talking to the ACME
	// server (a private or test CA); empty trusts the system's.
	ACMERoot string
	// HTTPAddr is the plain-HTTP listener that redirects to HTTPS and answers
	// ACME HTTP-01 challenges; empty for none.
	HTTPAddr string
	// SignupClosed refuses POST /api/signup; accounts come from "webim user add".
	SignupClosed bool
	// PprofAddr, when set, serves net/http/pprof there (loopback only),
	// for profiling under load; off by default.
	PprofAddr string
	// MaxConns caps open connections, over all listeners; beyond it new
	// ones are closed at once (connlimit.go). MaxConnsPerAddr caps them
	// per client address (IPv6: per /64), trusted proxies and rate-limit
	// exemptions aside.
	MaxConns, MaxConnsPerAddr int
	ShowVersion               bool
	// OfflineGrace replaces the 90 s a user stays online with no poll open
	// (zero: 90 s). The clients and API.md assume 90 s: this is for tests,
	// and for an operator who must see presence settle faster.
	OfflineGrace time.Duration

	// Web Push (push.go). PushOff turns it off; PushSubject is the VAPID
	// contact, empty for "mailto:admin@" + the host (pushSubject);
	// PushAllowHosts are exact host names or addresses that endpoints may
	// use although they are not public (tests, a private push service);
	// PushNoPreview leaves message bodies out of pushes.
	PushOff        bool
	PushSubject    string
	PushAllowHosts []string
	PushNoPreview  bool
}

// hiddenFlags work but are left out of the usage text: they are for tests
// and operations, not for configuring a deployment.
var hiddenFlags = map[string]bool{"offline-grace": true}

// parseConfig reads flags, each falling back to its WEBIM_* variable, then to
// its default.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("webim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		printCommands(stderr)
		fmt.Fprintln(stderr, "\nFlags of the server:")
		listed := flag.NewFlagSet("webim", flag.ContinueOnError)
		listed.SetOutput(stderr)
		fs.VisitAll(func(f *flag.Flag) {
			if !hiddenFlags[f.Name] {
				listed.Var(f.Value, f.Name, f.Usage)
				listed.Lookup(f.Name).DefValue = f.DefValue
			}
		})
		listed.PrintDefaults()
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var c Config
	var maxFile, maxQueue, maxGroup, exempt, proxies, acmeDomains, signup, maxConns, maxConnsPerAddr string
	var push, pushAllow, pushPreview string
	fs.StringVar(&c.Addr, "addr", env("WEBIM_ADDR", defaultAddr), "listen address (WEBIM_ADDR)")
	fs.StringVar(&c.DBPath, "db", env("WEBIM_DB", defaultDB), "SQLite database file, or a postgres:// URL for PostgreSQL (WEBIM_DB; keep a password in PGPASSWORD or ~/.pgpass rather than here)")
	fs.StringVar(&maxFile, "max-file-size", env("WEBIM_MAX_FILE_SIZE", "10MiB"), "largest upload, bytes or with a suffix such as 10MiB (WEBIM_MAX_FILE_SIZE)")
	fs.StringVar(&maxQueue, "max-queue", env("WEBIM_MAX_QUEUE", strconv.Itoa(defaultMaxQueue)), "most uncleaned messages a queue holds (WEBIM_MAX_QUEUE)")
	fs.StringVar(&maxGroup, "max-group-members", env("WEBIM_MAX_GROUP_MEMBERS", strconv.Itoa(defaultMaxGroupMembers)), "most members a group has, its owner included (WEBIM_MAX_GROUP_MEMBERS)")
	fs.StringVar(&exempt, "rate-limit-exempt", env("WEBIM_RATE_LIMIT_EXEMPT", ""), "comma-separated CIDRs exempt from rate limits (WEBIM_RATE_LIMIT_EXEMPT)")
	fs.StringVar(&proxies, "trust-proxy", env("WEBIM_TRUST_PROXY", ""), "comma-separated CIDRs of reverse proxies whose X-Forwarded-* headers are trusted (WEBIM_TRUST_PROXY)")
	fs.StringVar(&c.LogLevel, "log-level", env("WEBIM_LOG_LEVEL", "info"), "debug, info, warn or error (WEBIM_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("WEBIM_LOG_FORMAT", "text"), "text or json (WEBIM_LOG_FORMAT)")
	fs.StringVar(&signup, "signup", env("WEBIM_SIGNUP", "open"), "open, or closed: only \"webim user add\" creates accounts (WEBIM_SIGNUP)")
	fs.StringVar(&c.TLSCert, "tls-cert", env("WEBIM_TLS_CERT", ""), "PEM certificate (chain) file: serve HTTPS with it (WEBIM_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("WEBIM_TLS_KEY", ""), "PEM private key file for -tls-cert (WEBIM_TLS_KEY)")
	fs.StringVar(&acmeDomains, "acme-domain", env("WEBIM_ACME_DOMAIN", ""), "comma-separated domain names: serve HTTPS with certificates from ACME (Let's Encrypt); -addr then defaults to :443 (WEBIM_ACME_DOMAIN)")
	fs.StringVar(&c.ACMEEmail, "acme-email", env("WEBIM_ACME_EMAIL", ""), "contact address given to the ACME CA (WEBIM_ACME_EMAIL)")
	fs.StringVar(&c.ACMEDirectory, "acme-ca", env("WEBIM_ACME_CA", ""), "ACME directory URL; default Let's Encrypt's production one (WEBIM_ACME_CA)")
	fs.StringVar(&c.ACMERoot, "acme-ca-root", env("WEBIM_ACME_CA_ROOT", ""), "PEM file of roots to trust for the ACME server's own HTTPS, for a private CA (WEBIM_ACME_CA_ROOT)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("WEBIM_HTTP_ADDR", ""), "plain-HTTP listener redirecting to HTTPS and answering ACME challenges; default :80 with -acme-domain (WEBIM_HTTP_ADDR)")
	fs.StringVar(&c.PprofAddr, "pprof", env("WEBIM_PPROF", ""), "serve Go profiling on this loopback address, e.g. 127.0.0.1:6060 (WEBIM_PPROF; off by default)")
	fs.StringVar(&push, "push", env("WEBIM_PUSH", "on"), "on or off: Web Push notifications to users whose page is closed (WEBIM_PUSH)")
	fs.StringVar(&c.PushSubject, "push-subject", env("WEBIM_PUSH_SUBJECT", ""), "mailto: or https: contact in the VAPID token; default mailto:admin@ and the host (WEBIM_PUSH_SUBJECT)")
	fs.StringVar(&pushAllow, "push-allow-hosts", env("WEBIM_PUSH_ALLOW_HOSTS", ""), "comma-separated host names or addresses (no ports) that push endpoints may use although not public, over http too (WEBIM_PUSH_ALLOW_HOSTS)")
	fs.StringVar(&pushPreview, "push-preview", env("WEBIM_PUSH_PREVIEW", "true"), "put the first 100 characters of a message in its push (WEBIM_PUSH_PREVIEW)")
	fs.StringVar(&maxConns, "max-conns", env("WEBIM_MAX_CONNS", ""), "most open connections; more are closed at once (WEBIM_MAX_CONNS; default: the open-file limit less a tenth)")
	fs.StringVar(&maxConnsPerAddr, "max-conns-per-addr", env("WEBIM_MAX_CONNS_PER_ADDR", ""), "most open connections from one client address, IPv6 /64 (WEBIM_MAX_CONNS_PER_ADDR; default a quarter of -max-conns)")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	fs.DurationVar(&c.OfflineGrace, "offline-grace", 0, "how long a user with no poll open stays online; default 90s (for tests and operations: not listed)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.OfflineGrace < 0 {
		return c, fmt.Errorf("-offline-grace %v: want a positive duration such as 90s", c.OfflineGrace)
	}
	if err := checkDB(c.DBPath); err != nil {
		return c, err
	}
	var err error
	if c.MaxFileSize, err = parseSize(maxFile); err != nil || c.MaxFileSize <= 0 {
		return c, fmt.Errorf("-max-file-size %q: want a positive byte count such as 1048576 or 10MiB", maxFile)
	}
	if n, err := strconv.Atoi(strings.ReplaceAll(maxQueue, "_", "")); err != nil || n <= 0 {
		return c, fmt.Errorf("-max-queue %q: want a positive whole number", maxQueue)
	} else {
		c.MaxQueue = n
	}
	if n, err := strconv.Atoi(strings.ReplaceAll(maxGroup, "_", "")); err != nil || n <= 0 {
		return c, fmt.Errorf("-max-group-members %q: want a positive whole number", maxGroup)
	} else {
		c.MaxGroupMembers = n
	}
	if c.RateLimitExempt, err = parsePrefixes(exempt); err != nil {
		return c, fmt.Errorf("-rate-limit-exempt: %w", err)
	}
	if c.TrustedProxies, err = parsePrefixes(proxies); err != nil {
		return c, fmt.Errorf("-trust-proxy: %w", err)
	}
	c.MaxConns = defaultMaxConns(fdLimit())
	if maxConns != "" {
		if c.MaxConns, err = strconv.Atoi(strings.ReplaceAll(maxConns, "_", "")); err != nil || c.MaxConns <= 0 {
			return c, fmt.Errorf("-max-conns %q: want a positive whole number", maxConns)
		}
	}
	c.MaxConnsPerAddr = max(c.MaxConns/4, 1)
	if maxConnsPerAddr != "" {
		if c.MaxConnsPerAddr, err = strconv.Atoi(strings.ReplaceAll(maxConnsPerAddr, "_", "")); err != nil || c.MaxConnsPerAddr <= 0 {
			return c, fmt.Errorf("-max-conns-per-addr %q: want a positive whole number", maxConnsPerAddr)
		}
	}
	switch signup {
	case "open":
	case "closed":
		c.SignupClosed = true
	default:
		return c, fmt.Errorf("-signup %q: want open or closed", signup)
	}
	switch push {
	case "on":
	case "off":
		c.PushOff = true
	default:
		return c, fmt.Errorf("-push %q: want on or off", push)
	}
	if b, err := strconv.ParseBool(pushPreview); err != nil {
		return c, fmt.Errorf("-push-preview %q: want true or false", pushPreview)
	} else {
		c.PushNoPreview = !b
	}
	if c.PushSubject != "" && !strings.HasPrefix(c.PushSubject, "mailto:") && !strings.HasPrefix(c.PushSubject, "https:") {
		return c, fmt.Errorf("-push-subject %q: want a mailto: or https: URL", c.PushSubject)
	}
	if c.PushAllowHosts, err = parseHostList(pushAllow); err != nil {
		return c, fmt.Errorf("-push-allow-hosts: %w", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, fmt.Errorf("-log-format %q: want text or json", c.LogFormat)
	}
	if err := c.parseTLS(acmeDomains, func(name string) bool {
		return set[name] || getenv("WEBIM_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))) != ""
	}); err != nil {
		return c, err
	}
	if c.PprofAddr != "" {
		host, _, err := net.SplitHostPort(c.PprofAddr)
		if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.IsLoopback() {
			return c, fmt.Errorf("-pprof %q: want a loopback address such as 127.0.0.1:6060", c.PprofAddr)
		}
	}
	return c, nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// parseSize reads a byte count: plain ("1048576") or with a unit suffix
// ("10MiB", "512KB", "1G"; K/M/G alone are binary).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > (1<<62)/mult {
		return 0, errors.New("size out of range")
	}
	return n * mult, nil
}

// parsePrefixes reads a comma-separated list of CIDRs; a bare address counts
// as a single-address prefix.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR or address", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// parseHostList reads a comma-separated list of host names or addresses,
// without ports; names are lower-cased and addresses written canonically,
// as the endpoint check compares them (canonicalHost).
func parseHostList(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(strings.Trim(f, "[]")); err == nil {
			out = append(out, a.String())
			continue
		}
		if strings.ContainsAny(f, ":/@ ") {
			return nil, fmt.Errorf("%q is not a host name or address (give no port or scheme)", f)
		}
		out = append(out, strings.ToLower(strings.TrimSuffix(f, ".")))
	}
	return out, nil
}
