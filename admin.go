package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

// Administration without SQL: "webim user ..." and "webim stats" work on the
// database file, safe while the server runs (WAL, busy_timeout, and every
// write through the store's writer). What a running server must act on at
// once, it learns from admin_events within adminCheckEvery.

// adminCheckEvery is how soon a running server ends the sessions of a user
// whose password was changed or who was disabled or deleted. A look is one
// indexed read of admin_events, which is almost always empty.
const adminCheckEvery = 250 * time.Millisecond

func init() {
	commands["user"] = &command{
		summary: "add, list, passwd, disable, enable or delete accounts",
		run:     runUser,
	}
	commands["stats"] = &command{
		summary: "users, online now, queued messages, database and files size",
		run:     runStats,
	}
}

// userCommand is one "webim user" subcommand.
type userCommand struct {
	args    string // after the subcommand name, for the usage line
	summary string
	// create: the database may be created (the first user of a fresh install).
	create bool
	flags  func(fs *flag.FlagSet) func(ctx context.Context, s Store, name string, env cmdEnv) error
}

// userCommands are the "webim user" subcommands by name; each flags func
// adds its flags and returns what it does.
var userCommands = map[string]userCommand{
	"add": {
		args: "NAME", summary: "create an account; the password is read from standard input or asked for", create: true,
		flags: func(fs *flag.FlagSet) func(context.Context, Store, string, cmdEnv) error {
			display := fs.String("display", "", "display name (default: the username)")
			return func(ctx context.Context, s Store, name string, env cmdEnv) error {
				if *display == "" {
					*display = name
				}
				if err := validateDisplayName(*display); err != nil {
					return fmt.Errorf("-display %q: 1 to 64 printable characters", *display)
				}
				// Say so before asking for a password; the UNIQUE constraint
				// still decides a race.
				if _, err := s.AccountByName(ctx, name); err == nil {
					return fmt.Errorf("user %s exists already", name)
				}
				hash, err := readNewPassword(ctx, env)
				if err != nil {
					return err
				}
				if _, err := s.CreateUser(ctx, name, *display, hash); err != nil {
					if errors.Is(err, errUsernameTaken) {
						return fmt.Errorf("user %s exists already", name)
					}
					return err
				}
				fmt.Fprintf(env.stdout, "added user %s\n", name)
				return nil
			}
		},
	},
	"passwd": {
		args: "NAME", summary: "set a new password (read like add's) and end the user's sessions",
		flags: func(*flag.FlagSet) func(context.Context, Store, string, cmdEnv) error {
			return func(ctx context.Context, s Store, name string, env cmdEnv) error {
				if _, err := s.AccountByName(ctx, name); err != nil {
					return err
				}
				hash, err := readNewPassword(ctx, env)
				if err != nil {
					return err
				}
				if err := s.SetPassword(ctx, name, hash); err != nil {
					return err
				}
				fmt.Fprintf(env.stdout, "changed the password of %s; its sessions have ended\n", name)
				return nil
			}
		},
	},
	"disable": {
		args: "NAME", summary: "refuse the user's logins and end its sessions at once",
		flags: func(*flag.FlagSet) func(context.Context, Store, string, cmdEnv) error {
			return func(ctx context.Context, s Store, name string, env cmdEnv) error {
				changed, err := s.SetDisabled(ctx, name, true)
				if err != nil {
					return err
				}
				if !changed {
					fmt.Fprintf(env.stdout, "%s was disabled already\n", name)
					return nil
				}
				fmt.Fprintf(env.stdout, "disabled %s; its sessions have ended\n", name)
				return nil
			}
		},
	},
	"enable": {
		args: "NAME", summary: "let a disabled user log in again",
		flags: func(*flag.FlagSet) func(context.Context, Store, string, cmdEnv) error {
			return func(ctx context.Context, s Store, name string, env cmdEnv) error {
				changed, err := s.SetDisabled(ctx, name, false)
				if err != nil {
					return err
				}
				if !changed {
					fmt.Fprintf(env.stdout, "%s was not disabled\n", name)
					return nil
				}
				fmt.Fprintf(env.stdout, "enabled %s\n", name)
				return nil
			}
		},
	},
	"delete": {
		args: "NAME", summary: "delete the account, its sessions, friendships, requests, blocks, queue and files (no undo)",
		flags: func(*flag.FlagSet) func(context.Context, Store, string, cmdEnv) error {
			return func(ctx context.Context, s Store, name string, env cmdEnv) error {
				d, err := s.DeleteUser(ctx, name)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.stdout, "deleted user %s (%d queued messages, %d files)\n", name, d.Queued, d.Files)
				return nil
			}
		},
	},
	"list": {
		summary: "list the accounts",
	},
}

// userOrder is the order of the usage text.
var userOrder = []string{"add", "list", "passwd", "disable", "enable", "delete"}

// printUserUsage lists the "webim user" subcommands.
func printUserUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: webim user COMMAND [-db PATH] [flags] [NAME]")
	fmt.Fprintln(w, "Works on the database file (-db, or WEBIM_DB, default ./webim.db); safe while the server runs.")
	fmt.Fprintln(w, "\nCommands:")
	for _, n := range userOrder {
		fmt.Fprintf(w, "  %-16s %s\n", strings.TrimSpace(n+" "+userCommands[n].args), userCommands[n].summary)
	}
	fmt.Fprintln(w, "\n\"webim user COMMAND -h\" tells a command's flags.")
}

// runUser is "webim user COMMAND ...".
func runUser(ctx context.Context, args []string, env cmdEnv) error {
	if len(args) == 0 {
		printUserUsage(env.stderr)
		return errors.New("user: want a command: " + strings.Join(userOrder, ", "))
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printUserUsage(env.stderr)
		return errHelpShown
	}
	sub, ok := userCommands[args[0]]
	if !ok {
		printUserUsage(env.stderr)
		return fmt.Errorf("user: unknown command %q", args[0])
	}
	name := args[0]
	fs := flag.NewFlagSet("webim user "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	dbPath := dbFlag(fs, env)
	var act func(context.Context, Store, string, cmdEnv) error
	if sub.flags != nil {
		act = sub.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: webim user %s [flags] %s\n%s.\n\nFlags:\n", name, sub.args, capitalize(sub.summary))
		fs.PrintDefaults()
	}
	// Flags may come before or after NAME ("user add alice -display A").
	var pos []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelpShown
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	want := 0
	if sub.args != "" {
		want = 1
	}
	if len(pos) != want {
		fs.Usage()
		if want == 0 {
			return fmt.Errorf("user %s: unexpected argument %q", name, pos[0])
		}
		return fmt.Errorf("user %s: want one user NAME", name)
	}
	s, err := openForAdmin(*dbPath, sub.create, env)
	if err != nil {
		return err
	}
	defer s.Close()
	if name == "list" {
		return listUsers(ctx, s, env)
	}
	username, err := normalizeUsername(pos[0])
	if err != nil {
		return fmt.Errorf("user %s %q: a username is 3 to 32 characters of a-z, 0-9, _ . -", name, pos[0])
	}
	err = act(ctx, s, username, env)
	if errors.Is(err, errNoSuchUser) {
		return fmt.Errorf("user %s: there is no user %s in %s", name, username, *dbPath)
	}
	return err
}

// capitalize upper-cases the first (ASCII) letter of s.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// dbFlag adds -db, falling back to WEBIM_DB as the server does.
func dbFlag(fs *flag.FlagSet, env cmdEnv) *string {
	def := defaultDB
	if v := env.getenv("WEBIM_DB"); v != "" {
		def = v
	}
	return fs.String("db", def, "SQLite database file or postgres:// URL (WEBIM_DB)")
}

// openForAdmin opens the database beside a possibly running server.
func openForAdmin(db string, create bool, env cmdEnv) (Store, error) {
	if err := checkDB(db); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return openShared(db, create, env.stderr, log)
}

// readNewPassword reads a password, asking twice without echo on a
// terminal and otherwise taking the first line of standard input, checks it
// as sign-up does and returns its hash.
func readNewPassword(ctx context.Context, env cmdEnv) (string, error) {
	var password string
	if f, ok := env.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		ask := func(prompt string) (string, error) {
			fmt.Fprint(env.stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(env.stderr)
			return string(b), err
		}
		p1, err := ask("New password: ")
		if err != nil {
			return "", err
		}
		p2, err := ask("Repeat it: ")
		if err != nil {
			return "", err
		}
		if p1 != p2 {
			return "", errors.New("the two passwords differ")
		}
		password = p1
	} else {
		line, err := bufio.NewReader(io.LimitReader(env.stdin, 64<<10)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
		if password == "" {
			return "", errors.New("no password: give it on the first line of standard input")
		}
	}
	if err := validatePassword(password); err != nil {
		return "", errors.New("a password is 8 to 1024 characters")
	}
	// One hash, so no pool of hashing slots is needed.
	return (&hasher{slots: make(chan struct{}, 1)}).hash(ctx, password)
}

// listUsers prints one line per account, and the count on stderr.
func listUsers(ctx context.Context, s Store, env cmdEnv) error {
	users, err := s.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tDISPLAY NAME\tCREATED\tSTATE\tQUEUED")
	for _, u := range users {
		state := "active"
		if u.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", u.Username, u.DisplayName, u.Created.Format("2006-01-02 15:04"), state, u.Queued)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "%d users\n", len(users))
	return nil
}

// runStats is "webim stats".
func runStats(ctx context.Context, args []string, env cmdEnv) error {
	fs := flag.NewFlagSet("webim stats", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	dbPath := dbFlag(fs, env)
	url := fs.String("url", env.getenv("WEBIM_URL"), "the running server's base URL, such as http://127.0.0.1:8000, to ask how many are online (WEBIM_URL)")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "Usage: webim stats [-db PATH] [-url URL]")
		fmt.Fprintln(env.stderr, "Prints users, online now (from the server's /metrics, with -url), queued messages, database and files size.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("stats: unexpected argument %q", fs.Arg(0))
	}
	online := "unknown (give -url of the running server)"
	if *url != "" {
		n, err := onlineFromMetrics(ctx, *url)
		if err != nil {
			return fmt.Errorf("stats: asking %s: %w", *url, err)
		}
		online = strconv.FormatInt(n, 10)
	}
	s, err := openForAdmin(*dbPath, false, env)
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "users\t%d (%d disabled)\n", st.Users, st.Disabled)
	fmt.Fprintf(tw, "online now\t%s\n", online)
	fmt.Fprintf(tw, "queued messages\t%d\n", st.Queued)
	fmt.Fprintf(tw, "database\t%s (%s)\n", humanBytes(st.DBBytes), *dbPath)
	fmt.Fprintf(tw, "files\t%d, %s\n", st.Files, humanBytes(st.FilesBytes))
	return tw.Flush()
}

// onlineFromMetrics reads webim_online_users from the server's /metrics.
func onlineFromMetrics(ctx context.Context, base string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %s", resp.Status)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "webim_online_users "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("/metrics has no webim_online_users")
}

// humanBytes writes n in binary units: 512 B, 1.5 KiB, 3.2 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// --- the running server's side ----------------------------------------------

// applyAdminEvents acts on what admin commands did since the last look:
// ends, as a logout would, the live sessions of users whose password changed or who were
// disabled or deleted (their session rows are gone already, so the tokens
// stay dead), and corrects the queued-messages gauge for deleted queues.
func (a *App) applyAdminEvents(ctx context.Context) {
	events, err := a.store.AdminEventsAfter(ctx, a.adminSeen)
	if err != nil {
		a.log.Warn("reading admin events failed", "err", err)
		return
	}
	for _, e := range events {
		// As a logout: the open poll answers now, friends see them go.
		if s := a.sessions.Live(e.User); s != nil {
			a.sessions.EndUser(e.User, errUnauthorized)
			a.presence.LoggedOut(s.User)
		}
		a.adminSeen = e.ID
		a.log.Info("admin command applied", "user_id", e.User)
	}
}

// handleConfig tells the page what this server allows (an extension of
// API.md): whether sign-up is open.
func (a *App) handleConfig(w http.ResponseWriter, r *http.Request) error {
	signup := "open"
	if a.cfg.SignupClosed {
		signup = "closed"
	}
	writeJSON(w, http.StatusOK, map[string]string{"signup": signup})
	return nil
}
