package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/bus"
)

// ErrStartTimeout is wrapped by Run's error when the server sent neither
// Started nor Error within Request.StartTimeout.
var ErrStartTimeout = errors.New("shell service did not start the command in time")

// Request is the command that Run requests from the server, with its
// terminal settings and event sources.
type Request struct {
	// Argv is the command and its arguments, run without a shell. Empty
	// runs the server's login shell.
	Argv []string
	// Env holds "NAME=value" entries for TERM and LANG; the server rejects
	// other names.
	Env []string
	// TTY requests a terminal of Size. Without it, stdout and stderr stay
	// apart.
	TTY  bool
	Size WindowSize
	// Resizes sends the terminal's new sizes to the server.
	Resizes <-chan WindowSize
	// Signals forwards signals to the command's process group. Signals
	// other than INT, TERM, HUP, QUIT, KILL and WINCH are ignored.
	Signals <-chan os.Signal
	// StartTimeout bounds the wait for the server's Started or Error. 0
	// means no limit other than ctx.
	StartTimeout time.Duration
}

// ExitStatus is the end state of the remote command. Signal is 0 when it
// exited with Code, and otherwise the signal that killed it.
type ExitStatus struct {
	Code   int
	Signal syscall.Signal
}

// ShellCode returns the status as sh reports it: the exit code, or 128
// plus the signal number for a command killed by a signal.
func (s ExitStatus) ShellCode() int {
	if s.Signal != 0 {
		return 128 + int(s.Signal)
	}
	return s.Code
}

// RemoteError is an Error message from the server.
type RemoteError struct {
	Code ErrorCode
	Text string // with control characters replaced
}

func (e *RemoteError) Error() string { return "shell service: " + e.Text }

// Is makes errors.Is(err, ErrUnauthorized) true for a rejected caller.
func (e *RemoteError) Is(target error) bool {
	return target == ErrUnauthorized && e.Code == CodeUnauthorized
}

// Run runs one session on conn: it sends Open, copies stdin to the
// command once it started, writes its output to stdout and stderr,
// forwards req.Resizes and req.Signals, and returns the command's status.
// An Error from the server is returned as a *RemoteError. Run does not
// close conn. The goroutine that reads stdin may stay blocked in Read
// after Run returns, until stdin has data or ends. Its later sends fail
// once conn is closed.
func Run(ctx context.Context, conn *bus.Conn, req Request, stdin io.Reader, stdout, stderr io.Writer) (ExitStatus, error) {
	open, err := encodeRequest(req, conn.MaxPayload())
	if err != nil {
		return ExitStatus{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A server that rejects the caller sends Error without reading Open and
	// may close the connection before Open is sent. The Error is still in
	// the ring, so awaitStart reads it.
	if err := conn.Send(ctx, KindOpen, open); err != nil && !errors.Is(err, bus.ErrPeerGone) {
		return ExitStatus{}, fmt.Errorf("send open: %w", err)
	}
	if err := awaitStart(ctx, conn, req.StartTimeout); err != nil {
		return ExitStatus{}, err
	}

	go sendInput(ctx, conn, stdin)
	go sendEvents(ctx, conn, req)
	for {
		msg, err := conn.Recv(ctx)
		if errors.Is(err, bus.ErrPeerGone) {
			return ExitStatus{}, fmt.Errorf("shell service closed the connection before the command exited: %w", err)
		}
		if err != nil {
			return ExitStatus{}, fmt.Errorf("receive from the shell service: %w", err)
		}
		status, done, err := handleOutput(msg, stdout, stderr)
		msg.Release()
		if err != nil || done {
			return status, err
		}
	}
}

// encodeRequest checks req and returns its Open payload.
func encodeRequest(req Request, maxPayload int) ([]byte, error) {
	if len(req.Argv) > MaxArgs {
		return nil, fmt.Errorf("shell command has %d arguments, limit %d", len(req.Argv), MaxArgs)
	}
	if len(req.Argv) > 0 && req.Argv[0] == "" {
		return nil, errors.New("shell command name is empty")
	}
	if len(req.Env) > MaxEnv {
		return nil, fmt.Errorf("shell request has %d environment entries, limit %d", len(req.Env), MaxEnv)
	}
	for _, e := range req.Env {
		if err := checkEnv(e); err != nil {
			return nil, err
		}
	}
	open := encodeOpen(Open{Argv: req.Argv, Env: req.Env, TTY: req.TTY, Size: req.Size})
	if len(open) > maxPayload {
		return nil, fmt.Errorf("shell command and arguments take %d bytes, and the connection carries at most %d: shorten them", len(open), maxPayload)
	}
	if _, err := decodeOpen(open); err != nil {
		return nil, fmt.Errorf("invalid shell request: %w", err)
	}
	return open, nil
}

// awaitStart waits for Started, and returns the server's Error as a
// *RemoteError.
func awaitStart(ctx context.Context, conn *bus.Conn, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w (%v)", ErrStartTimeout, timeout))
		defer cancel()
	}
	msg, err := conn.Recv(ctx)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrStartTimeout) {
			return cause
		}
		return fmt.Errorf("wait for the shell service to start the command: %w", err)
	}
	defer msg.Release()
	switch msg.Kind {
	case KindStarted:
		_, err := decodeStarted(msg.Data)
		return err
	case KindError:
		return remoteError(msg.Data)
	}
	return fmt.Errorf("%w: shell service sent kind %#x, expected started", ErrMalformed, msg.Kind)
}

func remoteError(payload []byte) error {
	code, text, err := decodeError(payload)
	if err != nil {
		return err
	}
	return &RemoteError{Code: code, Text: text}
}

// handleOutput writes one server message to stdout or stderr. It returns
// done with the status at Exit.
func handleOutput(msg bus.Message, stdout, stderr io.Writer) (ExitStatus, bool, error) {
	switch msg.Kind {
	case KindStdout, KindStderr:
		data, err := decodeData(msg.Data)
		if err != nil {
			return ExitStatus{}, true, err
		}
		w := stdout
		if msg.Kind == KindStderr {
			w = stderr
		}
		if _, err := w.Write(data); err != nil {
			return ExitStatus{}, true, fmt.Errorf("write the shell command's output: %w", err)
		}
		return ExitStatus{}, false, nil
	case KindExit:
		exit, err := decodeExit(msg.Data)
		if err != nil {
			return ExitStatus{}, true, err
		}
		return ExitStatus{Code: int(exit.Code), Signal: syscall.Signal(exit.Signal)}, true, nil
	case KindError:
		return ExitStatus{}, true, remoteError(msg.Data)
	}
	return ExitStatus{}, true, fmt.Errorf("%w: shell service sent kind %#x during a session", ErrMalformed, msg.Kind)
}

// sendInput copies stdin to the server and sends StdinClose at its end.
func sendInput(ctx context.Context, conn *bus.Conn, stdin io.Reader) {
	if stdin == nil {
		conn.Send(ctx, KindStdinClose, []byte{Version})
		return
	}
	buf := make([]byte, min(conn.MaxPayload(), maxChunk))
	buf[0] = Version
	for {
		n, err := stdin.Read(buf[1:])
		if n > 0 {
			if conn.Send(ctx, KindStdin, buf[:1+n]) != nil {
				return
			}
		}
		if err != nil {
			conn.Send(ctx, KindStdinClose, []byte{Version})
			return
		}
	}
}

// sendEvents forwards window sizes and signals until ctx ends.
func sendEvents(ctx context.Context, conn *bus.Conn, req Request) {
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case size := <-req.Resizes:
			err = conn.Send(ctx, KindResize, encodeResize(size))
		case sig := <-req.Signals:
			number, ok := sig.(syscall.Signal)
			if !ok || !signalAllowed(number) {
				continue
			}
			err = conn.Send(ctx, KindSignal, encodeSignal(number))
		}
		if err != nil {
			return
		}
	}
}
