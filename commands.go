package main

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// command is a subcommand of the binary (webim NAME ...): administration
// that works on the database file, safe while the server runs.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, env cmdEnv) error
}

// cmdEnv is what a subcommand may use of the process.
type cmdEnv struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// commands are registered by the files that implement them, each in init.
var commands = map[string]*command{}

func runCommand(ctx context.Context, name string, args []string, env cmdEnv) error {
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.stderr, "webim: unknown command %q\n\n", name)
		printCommands(env.stderr)
		return fmt.Errorf("unknown command %q", name)
	}
	return c.run(ctx, args, env)
}

func printCommands(w io.Writer) {
	fmt.Fprintln(w, "Usage: webim [flags]            serve the chat (webim -h lists the flags)")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "       webim %-20s %s\n", n+" ...", commands[n].summary)
	}
}

func init() {
	commands["help"] = &command{
		summary: "list the commands",
		run: func(_ context.Context, _ []string, env cmdEnv) error {
			printCommands(env.stdout)
			return nil
		},
	}
}
