// Command bt is the Blocktree user's command: it manages keys and
// capabilities today, and runs nodes and opens shells as those parts land.
//
// Every subcommand takes --help. Errors are one line on standard error that
// names the bad value and what to do. Usage errors exit with 2, failures
// with 1, and bt fsck with 3 when it cannot check the node at all.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// command is one subcommand: its name, a one-line summary and its entry point.
type command struct {
	name    string
	summary string
	run     func(env *environment, args []string) error
}

// environment carries the process's streams so tests can run bt in-process.
type environment struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// usageError marks errors caused by how the command was called (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError is an error that ends bt with its own exit status.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

var topCommands = []command{
	{"keys", "create and show credentials, issue and verify writecaps", runKeys},
	{"node", "run a node in the foreground: storage daemon and FUSE mount", runNode},
	{"fsck", "check every block and the journal of a stopped node", runFsck},
	{"ping", "send messages to another node's echo service through netd", runPing},
	{"recover", "unlock a stopped node's keys with its recovery key when the TPM refuses", runRecover},
	{"storaged", "run a node's storage daemon alone, as a supervised service", runStoraged},
	{"mount", "mount a storage daemon's tree through FUSE, as a supervised service", runMount},
	{"netd", "run a device's network daemon: links, interfaces and key issuing, as a supervised service", runNetd},
	{"shell", "run a shell or a command on a node: bt shell ADDRESS [-- CMD ARGS...]", runShell},
	{"shelld", "serve shell sessions at the node's svc/shell endpoint, as a supervised service", runShelld},
}

func main() {
	os.Exit(run(&environment{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

// run executes bt with args and returns the exit status.
func run(env *environment, args []string) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	err := dispatch(env, "bt", topCommands, args)
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(env.stderr, err)
		return 2
	case errors.As(err, &exit):
		fmt.Fprintln(env.stderr, err)
		return exit.code
	default:
		fmt.Fprintln(env.stderr, err)
		return 1
	}
}

// dispatch runs the subcommand named by args[0] from commands.
func dispatch(env *environment, prefix string, commands []command, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(env.stdout, "Usage: %s COMMAND [ARGS]\n\nCommands:\n", prefix)
		for _, c := range commands {
			fmt.Fprintf(env.stdout, "  %-10s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(env.stdout, "\nRun '%s COMMAND --help' for a command's options.\n", prefix)
		if len(args) == 0 {
			return usagef("%s: missing command", prefix)
		}
		return flag.ErrHelp
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(env, args[1:])
		}
	}
	return usagef("%s: unknown command %q: run '%s --help' for the list", prefix, args[0], prefix)
}

// newFlags returns a flag set whose --help prints the usage line and options
// on standard output. The flag package itself prints nothing: parseFlags
// reports a bad option as one line.
func newFlags(env *environment, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "Usage: %s\n\nOptions:\n", usage)
		printOptions(env.stdout, fs)
	}
	return fs
}

// printOptions lists the options of fs with the "--" spelling that the usage
// lines and messages use.
func printOptions(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		valueName, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if valueName != "" {
			fmt.Fprintf(w, " %s", valueName)
		}
		fmt.Fprintf(w, "\n    \t%s", help)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// optionError turns an error of fs.Parse into one line that spells options
// as the usage lines do (--name, where the flag package writes -name) and
// ends with what to do. It reads the messages of Go's flag package.
func optionError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	help := helpHint(fs)
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return usagef("%s: unknown option %s: %s", fs.Name(), optionName(name), help)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return usagef("%s: option %s needs a value: %s", fs.Name(), optionName(name), help)
	}
	// invalid value "V" for flag -NAME: CAUSE
	if value, name, ok := badValue(msg, "invalid value ", " for flag -"); ok {
		if f := fs.Lookup(name); f != nil && isDuration(f) {
			return usagef("%s: invalid duration %q for %s: %s", fs.Name(), value, optionName(name), durationHint(value))
		}
		return usagef("%s: invalid value %q for %s: %s", fs.Name(), value, optionName(name), help)
	}
	// invalid boolean value "V" for -NAME: CAUSE
	if value, name, ok := badValue(msg, "invalid boolean value ", " for -"); ok {
		return usagef("%s: invalid value %q for %s: give true or false, or leave the value out for true", fs.Name(), value, optionName(name))
	}
	return usagef("%s: %s: %s", fs.Name(), msg, help)
}

// missingOptions returns the usage error of a command run without options
// that it requires, described by what.
func missingOptions(fs *flag.FlagSet, what string) error {
	return usagef("%s: %s: %s", fs.Name(), what, helpHint(fs))
}

// requireOptions returns a usage error that names the options of names
// that were not given a value, or nil when all were.
func requireOptions(fs *flag.FlagSet, names ...string) error {
	var missing []string
	for _, name := range names {
		if f := fs.Lookup(name); f == nil || f.Value.String() == "" {
			missing = append(missing, "--"+name)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return missingOptions(fs, missing[0]+" is required")
	}
	list := strings.Join(missing[:len(missing)-1], ", ") + " and " + missing[len(missing)-1]
	return missingOptions(fs, list+" are required")
}

// helpHint returns what to run for the options of the command of fs.
func helpHint(fs *flag.FlagSet) string {
	return fmt.Sprintf("run '%s --help' for the options", fs.Name())
}

// badValue returns the value and the option's name from a message of the
// flag package that consists of prefix, the quoted value, before, the name
// and the cause.
func badValue(msg, prefix, before string) (value, name string, ok bool) {
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return "", "", false
	}
	quoted, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", "", false
	}
	rest, ok = strings.CutPrefix(rest[len(quoted):], before)
	if !ok {
		return "", "", false
	}
	value, err = strconv.Unquote(quoted)
	if err != nil {
		return "", "", false
	}
	name, _, _ = strings.Cut(rest, ":")
	return value, name, true
}

// optionName spells the option name as the usage lines do, quoted when it
// holds anything but letters, digits, '-' and '_', such as a space or a
// carriage return from a script.
func optionName(name string) string {
	name = "--" + strings.TrimPrefix(name, "-")
	for _, r := range name {
		if !(r == '-' || r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return strconv.Quote(name)
		}
	}
	return name
}

// durationHint returns what to do about an invalid duration: give a unit,
// and for a value that is no plain number, stay within the largest one.
func durationHint(value string) string {
	if _, err := strconv.ParseFloat(value, 64); err == nil {
		return "give a number with a unit, such as 30s, 5m or 1h"
	}
	return "give a number with a unit, such as 30s, 5m or 1h, of at most 2562047h"
}

// isDuration reports whether f takes a time.Duration.
func isDuration(f *flag.Flag) bool {
	getter, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, ok = getter.Get().(time.Duration)
	return ok
}

// parseFlags parses args and rejects positional arguments. It prints the
// usage only for --help, not after a parse error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	return parseFlagsWithArgs(fs, args, 0)
}

// parseFlagsWithArgs is parseFlags for a command that takes up to
// positional arguments after its options, which fs.Args returns. A
// negative positional allows any number.
func parseFlagsWithArgs(fs *flag.FlagSet, args []string, positional int) error {
	printUsage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = printUsage
	if errors.Is(err, flag.ErrHelp) {
		printUsage()
		return err
	}
	if err != nil {
		return optionError(fs, err)
	}
	if positional >= 0 && fs.NArg() > positional {
		return usagef("%s: unexpected argument %q: options start with --", fs.Name(), fs.Arg(positional))
	}
	return nil
}
