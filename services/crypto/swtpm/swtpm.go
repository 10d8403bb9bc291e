package swtpm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned by Start when no swtpm binary is in PATH.
var ErrNotInstalled = errors.New("swtpm is not installed: install swtpm: apt-get install swtpm swtpm-tools")

const (
	// binaryName is the program that Start looks up in PATH.
	binaryName = "swtpm"

	// maxSocketPathLen is the longest Unix socket path Linux accepts:
	// sun_path has 108 bytes, one of which is the terminating NUL.
	maxSocketPathLen = 107

	socketName     = "swtpm.sock"
	ctrlSocketName = "swtpm.ctrl"

	// defaultStartTimeout bounds the wait for the sockets when the context
	// passed to Start has no deadline. swtpm usually listens within 100 ms.
	defaultStartTimeout = 10 * time.Second

	// exitTimeout is how long Stop waits for the process after each step
	// (CMD_SHUTDOWN, then SIGTERM) before it escalates.
	exitTimeout = 5 * time.Second
)

// Options configures Start.
type Options struct {
	// StateDir is the directory where swtpm keeps the TPM's non-volatile
	// state. It is created with mode 0700 if missing and is never removed.
	StateDir string

	// SocketDir is the directory for the command and control sockets.
	// Empty means StateDir. When a socket path would be longer than 107
	// bytes, Start uses a new temporary directory instead.
	SocketDir string

	// Logger receives start, stop and swtpm output messages.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Process is a running swtpm child process. Its methods are safe for
// concurrent use.
type Process struct {
	logger     *slog.Logger
	cmd        *exec.Cmd
	output     *outputLog
	stateDir   string
	socketPath string
	ctrlPath   string
	// tempDir is the directory Start created for the sockets because the
	// requested one gave too long a path, or empty.
	tempDir string

	// exited is closed after the process has exited and waitErr is set.
	exited  chan struct{}
	waitErr error

	// mu serializes Stop and Kill.
	mu sync.Mutex
}

// Start runs `swtpm socket --tpm2` on opts.StateDir and returns once swtpm
// serves its sockets. ctx bounds only that wait: the process keeps running
// after ctx ends, until Stop or Kill.
func Start(ctx context.Context, opts Options) (*Process, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}

	binary, err := exec.LookPath(binaryName)
	if err != nil {
		return nil, fmt.Errorf("start swtpm: look up %q in PATH: %w", binaryName, ErrNotInstalled)
	}

	stateDir, err := prepareStateDir(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}

	socketDir, tempDir, err := chooseSocketDir(opts.SocketDir, stateDir)
	if err != nil {
		return nil, fmt.Errorf("start swtpm with state %s: %w", stateDir, err)
	}
	if tempDir != "" {
		logger.Debug("swtpm socket path too long, using a temporary socket directory",
			"requested_dir", opts.SocketDir, "socket_dir", tempDir)
	}

	p := &Process{
		logger:     logger,
		stateDir:   stateDir,
		socketPath: filepath.Join(socketDir, socketName),
		ctrlPath:   filepath.Join(socketDir, ctrlSocketName),
		tempDir:    tempDir,
		exited:     make(chan struct{}),
	}
	if err := p.startProcess(binary); err != nil {
		// The socket paths may belong to another live swtpm, so only the
		// temporary directory that Start created is removed.
		p.removeTempDir()
		return nil, fmt.Errorf("start swtpm with state %s: %w", stateDir, err)
	}

	if err := p.waitReady(ctx); err != nil {
		if killErr := p.Kill(); killErr != nil {
			logger.Warn("kill swtpm after failed start", "pid", p.cmd.Process.Pid, "error", killErr)
		}
		return nil, fmt.Errorf("start swtpm with state %s: %w", stateDir, err)
	}

	logger.Info("swtpm started", "pid", p.cmd.Process.Pid, "state_dir", stateDir, "socket", p.socketPath)
	return p, nil
}

// SocketPath returns the path of the Unix socket that serves TPM commands.
func (p *Process) SocketPath() string { return p.socketPath }

// Stop shuts swtpm down cleanly and waits for it to exit. It sends
// CMD_SHUTDOWN on the control socket, then SIGTERM, and SIGKILL only if the
// process is still running after both. Stop after the process has exited
// returns nil.
func (p *Process) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.hasExited() {
		p.removeFiles()
		return nil
	}
	pid := p.cmd.Process.Pid

	if err := ctrlCommand(p.ctrlPath, ctrlShutdown, nil); err != nil {
		p.logger.Warn("swtpm control shutdown failed, sending SIGTERM", "pid", pid, "error", err)
	} else if p.waitExit(exitTimeout) {
		return p.finishStop(pid, nil)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.logger.Warn("send SIGTERM to swtpm", "pid", pid, "error", err)
	}
	if p.waitExit(exitTimeout) {
		return p.finishStop(pid, nil)
	}

	p.logger.Warn("swtpm ignored CMD_SHUTDOWN and SIGTERM, sending SIGKILL", "pid", pid, "timeout", 2*exitTimeout)
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop swtpm pid %d: send SIGKILL: %w", pid, err)
	}
	<-p.exited
	return p.finishStop(pid, fmt.Errorf("stop swtpm pid %d: no exit within %s of CMD_SHUTDOWN and SIGTERM, killed", pid, 2*exitTimeout))
}

// finishStop removes the socket files of an exited process and reports an
// exit status other than 0 unless stopErr is already set.
func (p *Process) finishStop(pid int, stopErr error) error {
	p.removeFiles()
	if stopErr != nil {
		return stopErr
	}
	if p.waitErr != nil {
		return fmt.Errorf("stop swtpm pid %d: %w%s", pid, p.waitErr, p.output.tailSuffix())
	}
	p.logger.Info("swtpm stopped", "pid", pid, "state_dir", p.stateDir)
	return nil
}

// PowerCycle resets the TPM inside the running process, like a platform
// reset: it sends CMD_INIT on the control socket, which discards the TPM's
// volatile state (PCRs, loaded objects, sessions) and restarts it from the
// state directory. Unlike Start, it sends no TPM2_Startup, so the TPM
// returns TPM_RC_INITIALIZE until a client sends one, as a hardware TPM
// does before the firmware has started it.
func (p *Process) PowerCycle() error {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.hasExited() {
		return fmt.Errorf("power-cycle swtpm: process exited: %v%s", p.waitErr, p.output.tailSuffix())
	}
	// The only flag, PTM_INIT_FLAG_DELETE_VOLATILE, concerns a volatile
	// state file written by CMD_STORE_VOLATILE, which this package never
	// sends.
	flags := make([]byte, 4)
	if err := ctrlCommand(p.ctrlPath, ctrlInit, flags); err != nil {
		return fmt.Errorf("power-cycle swtpm pid %d: %w", p.cmd.Process.Pid, err)
	}
	p.logger.Info("swtpm power-cycled", "pid", p.cmd.Process.Pid, "state_dir", p.stateDir)
	return nil
}

// Kill ends swtpm with SIGKILL, like a power cut: the TPM gets no chance to
// save volatile state. The state directory is kept, so a later Start on it
// boots the same TPM. Kill after the process has exited returns nil.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.hasExited() {
		p.removeFiles()
		return nil
	}
	pid := p.cmd.Process.Pid

	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill swtpm pid %d: %w", pid, err)
	}
	<-p.exited
	p.removeFiles()
	p.logger.Info("swtpm killed", "pid", pid, "state_dir", p.stateDir)
	return nil
}

// startProcess starts the child and a goroutine that reaps it.
func (p *Process) startProcess(binary string) error {
	// The control socket goes first, so a live swtpm is found without a
	// probe connection to its command socket (see removeStaleSocket).
	for _, path := range []string{p.ctrlPath, p.socketPath} {
		if err := removeStaleSocket(path); err != nil {
			return err
		}
	}

	cmd := exec.Command(binary,
		"socket", "--tpm2",
		"--tpmstate", "dir="+p.stateDir,
		"--server", "type=unixio,path="+p.socketPath,
		"--ctrl", "type=unixio,path="+p.ctrlPath,
		"--flags", "not-need-init,startup-clear",
	)
	p.output = newOutputLog(p.logger)
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	// Pdeathsig kills an orphaned swtpm when the test binary or node dies.
	// It fires when the starting OS thread exits, so startCmd starts swtpm
	// on a thread that never exits. Setpgid puts swtpm in a process group of
	// its own: Ctrl-C in a terminal signals the whole foreground group, and
	// swtpm must outlive the node's clean stop, which still needs the TPM
	// for the last checkpoint and TPM2_Shutdown.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := startCmd(cmd); err != nil {
		return fmt.Errorf("run %s: %w", cmd.String(), err)
	}
	p.cmd = cmd

	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return nil
}

// waitReady polls until swtpm responds on the control socket and the command
// socket exists, or the process exits, or ctx ends. swtpm creates both
// sockets before its main loop handles control commands. The command socket
// is not probed with a connection: swtpm accepts one client at a time with a
// short listen backlog, so an unaccepted probe can make the first client's
// connect fail with EAGAIN.
func (p *Process) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}

	delay := 5 * time.Millisecond
	for {
		if _, err := ctrlCapabilities(p.ctrlPath); err == nil && isSocket(p.socketPath) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("swtpm exited before its sockets accepted connections: %v%s", p.waitErr, p.output.tailSuffix())
		case <-ctx.Done():
			return fmt.Errorf("wait for socket %s: %w", p.socketPath, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func (p *Process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// waitExit reports whether the process exited within timeout.
func (p *Process) waitExit(timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// removeFiles deletes the socket files that a killed swtpm leaves behind and
// the temporary socket directory, if Start made one. swtpm removes its socket
// files itself on a clean exit, so missing files are not an error.
func (p *Process) removeFiles() {
	for _, path := range []string{p.socketPath, p.ctrlPath} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.logger.Warn("remove swtpm socket", "path", path, "error", err)
		}
	}
	p.removeTempDir()
}

func (p *Process) removeTempDir() {
	if p.tempDir == "" {
		return
	}
	if err := os.RemoveAll(p.tempDir); err != nil {
		p.logger.Warn("remove swtpm socket directory", "path", p.tempDir, "error", err)
	}
}

// prepareStateDir returns the absolute state directory, created if missing.
func prepareStateDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("state directory is empty: set Options.StateDir")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve state directory %s: %w", dir, err)
	}
	if err := rejectComma(abs); err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("create state directory %s: %w", abs, err)
	}
	return abs, nil
}

// chooseSocketDir returns the directory for the sockets and, when it had to
// create a short temporary one, that directory again as tempDir.
func chooseSocketDir(requested, stateDir string) (dir, tempDir string, err error) {
	dir = requested
	if dir == "" {
		dir = stateDir
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", "", fmt.Errorf("resolve socket directory %s: %w", requested, err)
	}

	longest := max(len(filepath.Join(dir, socketName)), len(filepath.Join(dir, ctrlSocketName)))
	if longest <= maxSocketPathLen && rejectComma(dir) == nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", "", fmt.Errorf("create socket directory %s: %w", dir, err)
		}
		return dir, "", nil
	}

	tempDir, err = os.MkdirTemp("", "swtpm-")
	if err != nil {
		return "", "", fmt.Errorf("create temporary socket directory: %w", err)
	}
	if len(filepath.Join(tempDir, ctrlSocketName)) > maxSocketPathLen || rejectComma(tempDir) != nil {
		os.Remove(tempDir)
		return "", "", fmt.Errorf("temporary directory %s gives socket paths over %d bytes or with a comma: set TMPDIR to a short path", tempDir, maxSocketPathLen)
	}
	return tempDir, tempDir, nil
}

// rejectComma rejects paths that swtpm's option parser would split, because
// it separates key=value pairs with commas.
func rejectComma(path string) error {
	if strings.Contains(path, ",") {
		return fmt.Errorf("path %q contains a comma, which swtpm options cannot carry: choose another directory", path)
	}
	return nil
}

// removeStaleSocket deletes a socket file that no process serves. A socket
// that accepts connections belongs to a live process, which Start must not
// disturb: a second swtpm on the same path would unlink it on failure. The
// probe connection can delay that process's next client (see waitReady).
func removeStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check socket %s: %w", path, err)
	}
	if info.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("socket path %s exists and is not a socket: remove it or choose another directory", path)
	}
	if socketAccepts(path) {
		return fmt.Errorf("socket %s is served by a running process: stop that swtpm or choose another directory", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

func isSocket(path string) bool {
	info, err := os.Lstat(path)
	return err == nil && info.Mode()&os.ModeSocket != 0
}

func socketAccepts(path string) bool {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// startCmd starts cmd on an OS thread that one goroutine holds locked for
// the life of the process. The kernel sends a child its Pdeathsig when the
// thread that started it exits, not the process, and the Go runtime ends a
// thread whenever a goroutine exits while locked to it. Started from an
// ordinary thread, swtpm could thus be killed by any goroutine anywhere in
// the process that ends locked to the same thread.
func startCmd(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	starter() <- startRequest{cmd: cmd, done: done}
	return <-done
}

type startRequest struct {
	cmd  *exec.Cmd
	done chan<- error
}

// starter returns the channel of the goroutine that starts every swtpm.
var starter = sync.OnceValue(func() chan<- startRequest {
	requests := make(chan startRequest)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the process
		for req := range requests {
			req.done <- req.cmd.Start()
		}
	}()
	return requests
})
