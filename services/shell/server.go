package shell

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Defaults of ServerOptions.
const (
	DefaultKillGrace   = 2 * time.Second
	DefaultOpenTimeout = 30 * time.Second
	DefaultMaxSessions = 16
)

// drainIdle is how long the server waits for more output after the command
// exited. A background process that keeps the terminal or a pipe open
// would otherwise hold the session open after its command ended.
const drainIdle = 200 * time.Millisecond

// replyTimeout bounds the sending of an Error to a peer that may not read.
const replyTimeout = 5 * time.Second

// maxChunk is the largest output read, so one Stdout message, when the
// connection allows more.
const maxChunk = 64 << 10

// stdinQueue is the number of Stdin messages that wait for the command to
// read them before the server stops receiving. Until then, Resize and
// Signal still arrive while the command does not read its input.
const stdinQueue = 16

// ErrUnauthorized is wrapped by Serve's error when Authorize rejected the
// caller.
var ErrUnauthorized = errors.New("shell session unauthorized")

// ServerOptions configure Serve and ServeListener.
type ServerOptions struct {
	// Shell is the argv of the login shell, run when Open has no argv. The
	// default is $SHELL, or /bin/sh when that is empty.
	Shell []string
	// Env is the environment of every command, before the client's TERM
	// and LANG. nil means the server's own environment. The command name
	// is looked up in the server's PATH, not in Env.
	Env []string
	// Dir is the working directory of every command; "" is the server's.
	Dir string
	// Logger receives the start and end of each session. nil means
	// slog.Default().
	Logger *slog.Logger
	// Authorize decides whether Caller may open a session. It runs before
	// the server reads Open; an error rejects the session with an Error
	// message that starts with "unauthorized". nil rejects every caller.
	Authorize func(caller principal.Principal) error
	// Caller is the principal that the connection speaks for, as routing
	// established it. ServeListener sets it for each connection from its
	// Listener. The zero value is a local connection that speaks for no
	// principal, which the logs show as "local".
	Caller principal.Principal
	// KillGrace is the time between SIGHUP and SIGKILL to the command's
	// process group after the client went away. 0 means DefaultKillGrace.
	KillGrace time.Duration
	// OpenTimeout bounds the wait for the client's Open. 0 means
	// DefaultOpenTimeout.
	OpenTimeout time.Duration
	// MaxSessions is the number of sessions that ServeListener runs at
	// once; it rejects more with an Error of code CodeBusy. 0 means
	// DefaultMaxSessions.
	MaxSessions int
}

func (o ServerOptions) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

func (o ServerOptions) shell() []string {
	if len(o.Shell) > 0 {
		return o.Shell
	}
	if sh := os.Getenv("SHELL"); sh != "" {
		return []string{sh}
	}
	return []string{"/bin/sh"}
}

// callerName returns the name of caller in logs: "local" for the zero
// principal.
func callerName(caller principal.Principal) string {
	if caller.IsZero() {
		return "local"
	}
	return caller.String()
}

// Serve runs one session on conn: it checks the caller with
// opts.Authorize, reads Open, starts the command, and relays its streams,
// window size and signals until the command has exited and its output is
// sent, and then sends Exit. When the client goes away, conn fails or ctx
// ends first, the command's process group gets SIGHUP and, after
// opts.KillGrace, SIGKILL, and Serve returns once the command is reaped.
// Serve does not close conn.
func Serve(ctx context.Context, conn *bus.Conn, opts ServerOptions) error {
	s := &session{conn: conn, opts: opts, logger: opts.logger().With("principal", callerName(opts.Caller), "peer", conn.Peer().PID)}

	if err := s.authorize(); err != nil {
		s.logger.Warn("shell session rejected", "error", err)
		s.reject(ctx, CodeUnauthorized, "unauthorized: "+err.Error())
		return fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}

	open, err := s.readOpen(ctx)
	if err != nil {
		s.logger.Warn("shell session failed before it started", "error", err)
		if errors.Is(err, ErrMalformed) {
			s.reject(ctx, CodeInvalid, err.Error())
		}
		return err
	}

	argv := open.Argv
	if len(argv) == 0 {
		argv = opts.shell()
	}
	s.command = filepath.Base(argv[0])
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env[:len(env):len(env)], open.Env...)

	c, err := startChild(argv, env, opts.Dir, open.TTY, open.Size)
	if err != nil {
		s.logger.Warn("shell command failed to start", "command", s.command, "error", err)
		s.reject(ctx, startErrorCode(argv[0], err), fmt.Sprintf("start %s: %v", argv[0], err))
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	s.child = c
	s.logger.Info("shell session started", "command", s.command, "pid", c.cmd.Process.Pid, "tty", open.TTY)
	return s.run(ctx)
}

// startErrorCode classifies an error of starting command as a shell
// would: not found, found but not executable, or another failure. An
// ENOENT from starting a path that exists comes from something else, such
// as a missing working directory.
func startErrorCode(command string, err error) ErrorCode {
	if errors.Is(err, exec.ErrNotFound) {
		return CodeNotFound
	}
	if strings.Contains(command, "/") {
		if _, statErr := os.Stat(command); errors.Is(statErr, fs.ErrNotExist) {
			return CodeNotFound
		}
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
		return CodeNotExecutable
	}
	return CodeStart
}

// session is the state of one Serve call.
type session struct {
	conn    *bus.Conn
	opts    ServerOptions
	logger  *slog.Logger
	command string // base name of argv[0], for logs
	child   *child
}

func (s *session) authorize() error {
	if s.opts.Authorize == nil {
		return errors.New("this shell service has no authorization policy")
	}
	return s.opts.Authorize(s.opts.Caller)
}

// reject sends an Error to the client, and gives up when the client does
// not read within replyTimeout.
func (s *session) reject(ctx context.Context, code ErrorCode, text string) {
	ctx, cancel := context.WithTimeout(ctx, replyTimeout)
	defer cancel()
	if err := s.conn.Send(ctx, KindError, encodeError(code, text)); err != nil {
		s.logger.Debug("sending the error to the client failed", "error", err)
	}
}

// readOpen waits for the first message, which must be an Open.
func (s *session) readOpen(ctx context.Context) (Open, error) {
	timeout := s.opts.OpenTimeout
	if timeout == 0 {
		timeout = DefaultOpenTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := s.conn.Recv(ctx)
	if err != nil {
		return Open{}, fmt.Errorf("wait for the client's open: %w", err)
	}
	defer msg.Release()
	if msg.Kind != KindOpen {
		return Open{}, fmt.Errorf("%w: first message has kind %#x, expected open (%#x)", ErrMalformed, msg.Kind, KindOpen)
	}
	return decodeOpen(msg.Data)
}

// run relays the running child's streams until it ends, and reaps it.
func (s *session) run(ctx context.Context) error {
	c := s.child
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	exited := make(chan struct{})
	go func() {
		c.cmd.Wait()
		close(exited)
	}()

	if err := s.conn.Send(ctx, KindStarted, encodeStarted(c.cmd.Process.Pid)); err != nil {
		cancel(fmt.Errorf("send started: %w", err))
	}

	var pumps sync.WaitGroup
	for _, out := range c.outputs() {
		pumps.Go(func() {
			if err := s.pump(ctx, out.file, out.kind, exited); err != nil {
				cancel(err)
			}
		})
	}
	pumpsDone := make(chan struct{})
	go func() {
		pumps.Wait()
		close(pumpsDone)
	}()

	var inputs sync.WaitGroup
	stdin := make(chan []byte, stdinQueue)
	inputs.Go(func() { s.writeInput(stdin) })
	inputs.Go(func() {
		defer close(stdin)
		if err := s.receive(ctx, stdin); err != nil {
			cancel(err)
		}
	})

	err := s.wait(ctx, exited, pumpsDone)
	if err == nil {
		err = s.sendExit(ctx)
	}
	if err != nil {
		s.stop(exited, err)
	}
	cancel(nil)
	c.closeFiles()
	<-pumpsDone
	inputs.Wait()
	return err
}

// wait returns nil when the child has exited and its output is sent, and
// the cause of ctx's end when that comes first.
func (s *session) wait(ctx context.Context, exited, pumpsDone <-chan struct{}) error {
	select {
	case <-exited:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	for _, out := range s.child.outputs() {
		out.file.SetReadDeadline(time.Now().Add(drainIdle))
	}
	select {
	case <-pumpsDone:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s *session) sendExit(ctx context.Context) error {
	exit := exitOf(s.child.cmd.ProcessState)
	if err := s.conn.Send(ctx, KindExit, encodeExit(exit)); err != nil {
		return fmt.Errorf("send exit: %w", err)
	}
	s.logger.Info("shell session ended", "command", s.command, "code", exit.Code, "signal", exit.Signal)
	return nil
}

// stop ends the child's process group after the session failed: SIGHUP,
// as a terminal hang-up sends, then SIGKILL after the grace period, and
// waits until the child is reaped.
func (s *session) stop(exited <-chan struct{}, cause error) {
	grace := s.opts.KillGrace
	if grace == 0 {
		grace = DefaultKillGrace
	}
	if err := s.child.signalGroup(syscall.SIGHUP); err != nil {
		s.logger.Warn("sending SIGHUP to the shell command failed", "command", s.command, "error", err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		if err := s.child.signalGroup(syscall.SIGKILL); err != nil {
			s.logger.Warn("sending SIGKILL to the shell command failed", "command", s.command, "error", err)
		}
		<-exited
	}
	s.logger.Warn("shell session ended before its command; command stopped", "command", s.command, "status", s.child.cmd.ProcessState.String(), "error", cause)
}

// pump sends what the child writes to f as messages of kind, in chunks
// that fit the connection. While the ring is full, Send waits and the
// child's writes block once the terminal or pipe buffer is full, so output
// never piles up in the server. After the child exited, pump stops when
// no output came for drainIdle.
func (s *session) pump(ctx context.Context, f *os.File, kind uint32, exited <-chan struct{}) error {
	buf := make([]byte, min(s.conn.MaxPayload(), maxChunk))
	buf[0] = Version
	for {
		select {
		case <-exited:
			f.SetReadDeadline(time.Now().Add(drainIdle))
		default:
		}
		n, err := f.Read(buf[1:])
		if n > 0 {
			if err := s.conn.Send(ctx, kind, buf[:1+n]); err != nil {
				return fmt.Errorf("send output: %w", err)
			}
		}
		// A terminal master reads EIO once no process has the terminal
		// open, and a pipe reads EOF once no process has its write end.
		if err != nil {
			return nil
		}
	}
}

// receive handles the client's messages until ctx ends or the connection
// fails. Stdin data goes to stdin in order, and nil there stands for
// StdinClose.
func (s *session) receive(ctx context.Context, stdin chan<- []byte) error {
	inputClosed := false
	for {
		msg, err := s.conn.Recv(ctx)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		data, err := s.handle(msg, &inputClosed)
		msg.Release()
		if err != nil {
			s.logger.Warn("invalid message from the shell client; ending the session", "command", s.command, "error", err)
			s.reject(ctx, CodeInvalid, err.Error())
			return err
		}
		if data == nil && msg.Kind != KindStdinClose {
			continue
		}
		select {
		case stdin <- data:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// handle applies one client message. For Stdin it returns a copy of the
// data to write, and for StdinClose nil with inputClosed set.
func (s *session) handle(msg bus.Message, inputClosed *bool) ([]byte, error) {
	switch msg.Kind {
	case KindStdin:
		data, err := decodeData(msg.Data)
		if err != nil {
			return nil, fmt.Errorf("stdin %w", err)
		}
		if *inputClosed {
			return nil, fmt.Errorf("%w: stdin after stdin close", ErrMalformed)
		}
		if len(data) == 0 {
			return nil, nil
		}
		return append([]byte(nil), data...), nil
	case KindStdinClose:
		if err := decodeEmpty(msg.Data); err != nil {
			return nil, fmt.Errorf("stdin close: %w", err)
		}
		if *inputClosed {
			return nil, fmt.Errorf("%w: second stdin close", ErrMalformed)
		}
		*inputClosed = true
		return nil, nil
	case KindResize:
		size, err := decodeResize(msg.Data)
		if err != nil {
			return nil, err
		}
		if s.child.terminal != nil && size.Rows > 0 && size.Cols > 0 {
			if err := setWindowSize(s.child.terminal, size); err != nil {
				s.logger.Warn("resizing the shell terminal failed", "command", s.command, "error", err)
			}
		}
		return nil, nil
	case KindSignal:
		sig, err := decodeSignal(msg.Data)
		if err != nil {
			return nil, err
		}
		if err := s.child.signalGroup(sig); err != nil {
			s.logger.Warn("forwarding a signal to the shell command failed", "command", s.command, "signal", int(sig), "error", err)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("%w: unexpected message kind %#x during a session", ErrMalformed, msg.Kind)
}

// writeInput writes the client's stdin to the child until stdin closes.
// After a failed write, such as when the child closed its input, it
// discards the rest, as a write to a closed pipe would.
func (s *session) writeInput(stdin <-chan []byte) {
	failed := false
	for data := range stdin {
		if failed {
			continue
		}
		var err error
		if data == nil {
			err = s.child.closeInput()
		} else {
			_, err = s.child.input().Write(data)
		}
		if err != nil && !errors.Is(err, os.ErrClosed) {
			s.logger.Debug("writing the shell command's input failed", "command", s.command, "error", err)
		}
		failed = err != nil
	}
}

// ServeListener accepts connections on l and runs Serve for each, with
// the caller that Accept returned, at most opts.MaxSessions at once, until
// ctx ends. Then it closes l, ends the sessions as a disconnect would, and
// waits for them. A connection over the limit gets an Error of code
// CodeBusy. A connection that Accept rejected is logged and skipped.
func ServeListener(ctx context.Context, l Listener, opts ServerOptions) error {
	logger := opts.logger()
	limit := opts.MaxSessions
	if limit == 0 {
		limit = DefaultMaxSessions
	}
	ctx, cancel := context.WithCancel(ctx)
	var sessions sync.WaitGroup
	defer func() {
		cancel()
		sessions.Wait()
	}()
	go func() {
		<-ctx.Done()
		l.Close()
	}()

	slots := make(chan struct{}, limit)
	for {
		conn, caller, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, bus.ErrSetup) || errors.Is(err, endpoint.ErrHello) {
				logger.Warn("shell connection rejected", "error", err)
				continue
			}
			return fmt.Errorf("shell service: %w", err)
		}

		select {
		case slots <- struct{}{}:
		default:
			logger.Warn("shell session rejected: too many sessions", "principal", callerName(caller), "peer", conn.Peer().PID, "limit", limit)
			sessions.Go(func() {
				defer conn.Close()
				s := &session{conn: conn, logger: logger}
				s.reject(ctx, CodeBusy, fmt.Sprintf("this shell service runs its maximum of %d sessions: try again later", limit))
			})
			continue
		}
		sessionOpts := opts
		sessionOpts.Caller = caller
		sessions.Go(func() {
			defer func() { <-slots }()
			defer conn.Close()
			Serve(ctx, conn, sessionOpts)
		})
	}
}
