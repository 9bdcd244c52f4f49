// Package cli implements the wanwu command line: the roles (hub now; edge
// later) and the tools (demo, sim, ctl, verify, bench, version).
//
// Each subcommand has its own flag set. A flag that belongs to another
// subcommand is refused with a message naming where it applies, the way
// Prometheus refuses server-only flags in agent mode.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// env carries the process streams through the commands.
type env struct {
	stdout, stderr io.Writer
	// ctx ends long-running commands (demo, hub, edge) besides a signal;
	// nil is context.Background.
	ctx context.Context
}

// context is the env's context.
func (e *env) context() context.Context {
	if e.ctx == nil {
		return context.Background()
	}
	return e.ctx
}

type command struct {
	name    string
	summary string
	run     func(e *env, args []string) error
	planned bool // laid out in the command structure, arriving with a later issue
}

func commands() []command {
	return []command{
		{name: "demo", summary: "the main job in one command: a hub and a living plant and city of simulated devices", run: runDemo},
		{name: "hub", summary: "run the cloud hub (API, identity, audit log, embedded bus)", run: runHub},
		{name: "edge", summary: "run an edge node beside machines: local devices, offline autonomy, store-and-forward to the hub", run: runEdge},
		{name: "sim", summary: "a fleet of simulated devices on real protocols, through link profiles, against a hub", run: runSim},
		{name: "ctl", summary: "administer a hub over its HTTP API", run: runCtl},
		{name: "verify", summary: "verify credentials and the audit log offline", run: runVerify},
		{name: "bench", summary: "load generator, side by side with peers", run: runBench},
		{name: "version", summary: "print the version, commit and Go version of this binary", run: runVersion},
	}
}

// usageError is a mistake in how the command was called; exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return mainContext(context.Background(), args, stdout, stderr)
}

// mainContext is Main with a context that ends long-running commands as
// a signal would (for tests).
func mainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, ctx: ctx}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		if c.planned {
			fmt.Fprintf(stderr, "wanwu %s: not part of this build yet (%s); see the README for what is built\n", c.name, c.summary)
			return 2
		}
		err := c.run(e, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(*usageError)):
			fmt.Fprintf(stderr, "wanwu %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "wanwu %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "wanwu: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "wanwu — terminal–edge–cloud IoT platform")
	fmt.Fprintln(w, "\nUsage: wanwu <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		if !c.planned {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nPlanned (not in this build yet):")
	for _, c := range commands() {
		if c.planned {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'wanwu <command> -h' for a command's flags.")
}

// flagHomes lists which commands define each flag, so that a flag given to
// the wrong command gets a message naming the right one.
var flagHomes = map[string][]string{}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("wanwu "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// register records the home of every flag of fs (called once per command at init).
func register(cmd string, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		for _, h := range flagHomes[f.Name] {
			if h == cmd {
				return
			}
		}
		flagHomes[f.Name] = append(flagHomes[f.Name], cmd)
	})
}

// describeHomes names the commands a flag belongs to, collapsing a whole
// family ("wanwu ctl ...") into its top-level command.
func describeHomes(homes []string) string {
	tops := map[string]bool{}
	for _, h := range homes {
		tops[strings.Fields(h)[0]] = true
	}
	list := homes
	if len(homes) > 3 {
		list = nil
		for t := range tops {
			list = append(list, t)
		}
	}
	sort.Strings(list)
	return "'wanwu " + strings.Join(list, "', 'wanwu ") + "'"
}

// parse parses args and turns flag errors into clear usage errors.
func parse(e *env, fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil {
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fmt.Fprintf(e.stdout, "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return flag.ErrHelp
	}
	const undefined = "flag provided but not defined: -"
	if msg := err.Error(); strings.HasPrefix(msg, undefined) {
		name := strings.TrimPrefix(msg, undefined)
		if homes := flagHomes[name]; len(homes) > 0 {
			return usagef("flag --%s does not apply to '%s'; it belongs to %s", name, fs.Name(), describeHomes(homes))
		}
		return usagef("unknown flag --%s (see '%s -h')", name, fs.Name())
	}
	return usagef("%v", err)
}
