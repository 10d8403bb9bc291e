package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/blocktree/blocktree/init/supervise"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/shell"
)

// exitProcess ends bt with the remote command's status.
var exitProcess = os.Exit

// Values of --tty.
const (
	ttyAuto   = "auto"
	ttyAlways = "always"
	ttyNever  = "never"
)

const shellUsage = "bt shell [--state DIR] [--run DIR] [--endpoint SOCKET] [--tty auto|always|never] [--timeout DURATION] ADDRESS|NODE [-- CMD ARGS...]"

// shellFlags are the parsed options and arguments of bt shell.
type shellFlags struct {
	address  string
	state    string
	run      string
	endpoint string
	tty      string
	timeout  time.Duration
	argv     []string
}

func runShell(env *environment, args []string) error {
	code, err := shellSession(env, args)
	if err != nil {
		return err
	}
	if code != 0 {
		exitProcess(code)
	}
	return nil
}

// parseShellFlags splits args at "--" into the options with the address
// and the command, because the command's own arguments may look like
// options.
func parseShellFlags(env *environment, args []string) (shellFlags, error) {
	var parsed shellFlags
	before := args
	if i := slices.Index(args, "--"); i >= 0 {
		before, parsed.argv = args[:i], args[i+1:]
		if len(parsed.argv) == 0 {
			return parsed, usagef("bt shell: no command after --: give CMD ARGS, or leave out -- for an interactive shell")
		}
	}

	fs := newFlags(env, "bt shell", shellUsage)
	fs.StringVar(&parsed.state, "state", "", "state directory of the local host-mode node, whose principals and netd the session uses (default: read the principals from the run directory)")
	fs.StringVar(&parsed.run, "run", "", "the local node's run directory (default: STATE/run with --state, else "+endpoint.DefaultRunDir+")")
	fs.StringVar(&parsed.endpoint, "endpoint", "", "connect to the shell service's socket on this machine directly, bypassing address resolution")
	fs.StringVar(&parsed.tty, "tty", ttyAuto, "allocate a terminal: auto (when stdin and stdout are terminals), always or never")
	fs.DurationVar(&parsed.timeout, "timeout", 10*time.Second, "limit for connecting and for the service to start the command, such as 10s")
	// The address may come before or after the options.
	var positional []string
	for {
		if err := parseFlagsWithArgs(fs, before, -1); err != nil {
			return parsed, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		before = fs.Args()[1:]
	}

	switch {
	case len(positional) > 1:
		return parsed, usagef("bt shell: unexpected argument %q: put the command after --", positional[1])
	case len(positional) == 1:
		parsed.address = positional[0]
	case parsed.endpoint == "":
		return parsed, usagef("bt shell: missing ADDRESS: give the node's shell address or principal, or --endpoint SOCKET")
	}
	if parsed.tty != ttyAuto && parsed.tty != ttyAlways && parsed.tty != ttyNever {
		return parsed, usagef("bt shell: invalid --tty %q: use auto, always or never", parsed.tty)
	}
	if parsed.timeout <= 0 {
		return parsed, usagef("bt shell: invalid --timeout %v: give a positive duration such as 10s", parsed.timeout)
	}
	return parsed, nil
}

// shellSession runs bt shell and returns the remote command's status as sh
// reports it.
func shellSession(env *environment, args []string) (int, error) {
	flags, err := parseShellFlags(env, args)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	target, conn, err := connectShell(ctx, flags)
	if err != nil {
		return 0, err
	}
	defer conn.Close()

	stdinFile, stdinIsTerminal := terminalOf(env.stdin)
	stdoutFile, stdoutIsTerminal := terminalOf(env.stdout)
	req := shell.Request{Argv: flags.argv, StartTimeout: flags.timeout}
	req.TTY = flags.tty == ttyAlways || (flags.tty == ttyAuto && stdinIsTerminal && stdoutIsTerminal)
	if req.TTY {
		req.Env = terminalEnv()
		req.Size = windowSize(stdoutFile, stdinFile)
	}

	// SIGINT and SIGTERM go to the remote command. In raw mode the
	// terminal sends ctrl-C as a byte, so only kill(1) raises them here.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	req.Signals = signals
	// A hang-up means the user's terminal is gone: end the session, and the
	// service hangs up the command in turn.
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	defer signal.Stop(hangups)
	hungUp := make(chan struct{})
	go func() {
		select {
		case <-hangups:
			close(hungUp)
			cancel()
		case <-ctx.Done():
		}
	}()

	if req.TTY && stdinIsTerminal {
		state, err := term.MakeRaw(int(stdinFile.Fd()))
		if err != nil {
			return 0, fmt.Errorf("bt shell: put the terminal in raw mode: %w", err)
		}
		defer term.Restore(int(stdinFile.Fd()), state)
		resizes := make(chan shell.WindowSize, 1)
		req.Resizes = resizes
		go forwardResizes(ctx, resizes, stdoutFile, stdinFile)
	}

	status, err := shell.Run(ctx, conn, req, env.stdin, env.stdout, env.stderr)
	select {
	case <-hungUp:
		return 0, errors.New("bt shell: hung up (SIGHUP), so the session ended and the shell service stops the command")
	default:
	}
	if err != nil {
		return 0, describeShellError(target, flags.timeout, err)
	}
	return status.ShellCode(), nil
}

// connectShell connects to --endpoint, or else to the shell service that
// the address names, within --timeout. It returns the socket or the
// address for messages.
func connectShell(ctx context.Context, flags shellFlags) (string, *bus.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, flags.timeout)
	defer cancel()
	if flags.endpoint != "" {
		conn, err := endpoint.DialSocket(ctx, flags.endpoint)
		if err != nil {
			return "", nil, describeShellError(flags.endpoint, flags.timeout, err)
		}
		return flags.endpoint, conn, nil
	}

	local, err := findLocalNode(flags.state, flags.run)
	if err != nil {
		return "", nil, fmt.Errorf("bt shell: %w", err)
	}
	address, err := local.address(flags.address, shell.ServiceName)
	if err != nil {
		return "", nil, usagef("bt shell: %v", err)
	}
	conn, err := endpoint.Dial(ctx, local.runDir, local.node, address.String())
	var remote *endpoint.RemoteError
	if address.Node != local.node && errors.Is(err, endpoint.ErrNoEndpoint) && !errors.As(err, &remote) {
		// The local netd is missing, not the remote shell service.
		return "", nil, fmt.Errorf("bt shell: %s is unreachable: %w: start this node's netd (bt node) first, or pass --state or --run for a node that runs", address, err)
	}
	if err != nil {
		return "", nil, describeDialError(address.String(), local.node, flags.timeout, err)
	}
	return address.String(), conn, nil
}

// describeDialError rewrites an error of endpoint.Dial so that the message
// states why the shell service at address was not reached from node.
func describeDialError(address string, node principal.Principal, timeout time.Duration, err error) error {
	// netd's reason names the address already, so it replaces the
	// wrapping that repeats it.
	var remote *endpoint.RemoteError
	if errors.As(err, &remote) {
		err = remote
	}
	switch {
	case errors.Is(err, endpoint.ErrUnauthorized):
		// netd's reason names the missing chain or what the chain covers.
		return fmt.Errorf("bt shell: %s refused principal %s (unauthorized): %w", address, node, err)
	case errors.Is(err, endpoint.ErrUnreachable):
		// netd's reason names the peers file line or the failed dial.
		return fmt.Errorf("bt shell: %s is unreachable: %w", address, err)
	case errors.Is(err, endpoint.ErrNoEndpoint):
		return fmt.Errorf("bt shell: no shell service at %s: %w: check that the node runs bt node or bt shelld", address, err)
	case errors.Is(err, endpoint.ErrTimedOut):
		return fmt.Errorf("bt shell: %s timed out after %v: %w: check that the node runs, or raise --timeout", address, timeout, err)
	}
	return describeShellError(address, timeout, err)
}

// describeShellError rewrites err so that the message states whether the
// service was unreachable, rejected the caller or timed out.
func describeShellError(target string, timeout time.Duration, err error) error {
	var remote *shell.RemoteError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, shell.ErrStartTimeout), errors.Is(err, endpoint.ErrTimedOut):
		return fmt.Errorf("bt shell: the shell service at %s timed out after %v: check that it runs, or raise --timeout", target, timeout)
	case errors.Is(err, shell.ErrUnauthorized):
		return fmt.Errorf("bt shell: the shell service at %s rejected this principal: %w", target, err)
	case errors.As(err, &remote) && remote.Code == shell.CodeNotFound:
		// As a shell reports a command that it cannot find or run.
		return exitError{code: 127, err: fmt.Errorf("bt shell: %s: %w", target, err)}
	case errors.As(err, &remote) && remote.Code == shell.CodeNotExecutable:
		return exitError{code: 126, err: fmt.Errorf("bt shell: %s: %w", target, err)}
	case errors.As(err, &remote):
		return fmt.Errorf("bt shell: %s: %w", target, err)
	case errors.Is(err, endpoint.ErrNoEndpoint):
		return fmt.Errorf("bt shell: no shell service at %s: %w: check the socket path and that the service runs", target, err)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, bus.ErrSetup):
		return fmt.Errorf("bt shell: the shell service at %s is unreachable: %w: check the address and that the service runs", target, err)
	case errors.Is(err, bus.ErrPeerGone):
		return fmt.Errorf("bt shell: the connection to the shell service at %s was lost: %w", target, err)
	}
	return fmt.Errorf("bt shell: %s: %w", target, err)
}

// terminalOf returns the file behind stream and whether it is a terminal.
func terminalOf(stream any) (*os.File, bool) {
	f, ok := stream.(*os.File)
	if !ok {
		return nil, false
	}
	return f, term.IsTerminal(int(f.Fd()))
}

// terminalEnv returns the TERM and LANG entries of this process's
// environment that describe the user's terminal.
func terminalEnv() []string {
	var env []string
	for _, name := range []string{"TERM", "LANG"} {
		if value, ok := os.LookupEnv(name); ok && !strings.ContainsRune(value, 0) {
			env = append(env, name+"="+value)
		}
	}
	return env
}

// windowSize returns the size of the first of files that is a terminal,
// or 24 rows of 80 columns.
func windowSize(files ...*os.File) shell.WindowSize {
	for _, f := range files {
		if f == nil {
			continue
		}
		if cols, rows, err := term.GetSize(int(f.Fd())); err == nil && rows > 0 && cols > 0 {
			return shell.WindowSize{Rows: uint16(min(rows, 0xffff)), Cols: uint16(min(cols, 0xffff))}
		}
	}
	return shell.WindowSize{Rows: 24, Cols: 80}
}

// forwardResizes sends the terminal's size on each SIGWINCH until ctx
// ends.
func forwardResizes(ctx context.Context, resizes chan<- shell.WindowSize, files ...*os.File) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-winch:
		}
		select {
		case resizes <- windowSize(files...):
		case <-ctx.Done():
			return
		}
	}
}

func runShelld(env *environment, args []string) error {
	fs := newFlags(env, "bt shelld", "bt shelld [--run DIR] [--shell PROGRAM] [--max-sessions N]")
	runDir := fs.String("run", endpoint.DefaultRunDir, "the node's run directory, which holds its node and root files; the service registers svc/shell there")
	program := fs.String("shell", "", "login shell for sessions that name no command (default $SHELL, or /bin/sh)")
	maxSessions := fs.Int("max-sessions", shell.DefaultMaxSessions, "number of sessions served at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *maxSessions < 1 {
		return usagef("bt shelld: invalid --max-sessions %d: give at least 1", *maxSessions)
	}
	logger := serviceLogger(env)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	root, node, err := endpoint.ReadIdentity(*runDir)
	if err != nil {
		return fmt.Errorf("bt shelld: %w", err)
	}
	address := endpoint.Service(root, node, shell.ServiceName)
	listener, err := endpoint.Register(*runDir, address)
	if err != nil {
		return fmt.Errorf("bt shelld: %w", err)
	}
	opts := endpointShellOptions(logger)
	opts.MaxSessions = *maxSessions
	if *program != "" {
		opts.Shell = []string{*program}
	}
	logger.Info("shell service ready", "node", node.String(), "path", address.String())
	if err := supervise.NotifyReady(); err != nil {
		logger.Warn("reporting readiness to the supervisor failed", "node", node.String(), "error", err)
	}
	if err := shell.ServeListener(ctx, shell.EndpointListener(listener), opts); err != nil {
		return fmt.Errorf("bt shelld: %w", err)
	}
	logger.Info("shell service stopped", "node", node.String(), "path", address.String())
	return nil
}

// endpointShellOptions returns the options of a shell service on an
// endpoint, which runs commands as the user of this process. It
// authorizes every caller that shell.EndpointListener returns: a remote
// caller's writecap chain covers the shell address, as Accept verified,
// and a local caller runs as root or as this user.
func endpointShellOptions(logger *slog.Logger) shell.ServerOptions {
	return shell.ServerOptions{
		Logger:    logger,
		Authorize: func(principal.Principal) error { return nil },
	}
}

// serveNodeShell returns the function that serves bt node's shell on
// its endpoint.
func serveNodeShell(logger *slog.Logger) func(ctx context.Context, l *endpoint.Listener) error {
	return func(ctx context.Context, l *endpoint.Listener) error {
		return shell.ServeListener(ctx, shell.EndpointListener(l), endpointShellOptions(logger))
	}
}
