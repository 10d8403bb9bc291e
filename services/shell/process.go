package shell

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// child is a running command with the server's ends of its standard
// streams. With a terminal, terminal is the PTY master and carries stdin
// and stdout; otherwise stdin, stdout and stderr are pipes.
type child struct {
	cmd      *exec.Cmd
	terminal *os.File
	stdin    *os.File
	stdout   *os.File
	stderr   *os.File
}

// startChild starts argv in its own process group: with a terminal, as
// the leader of a new session whose controlling terminal is a new PTY of
// the given size.
func startChild(argv, env []string, dir string, tty bool, size WindowSize) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	if tty {
		return startWithTerminal(cmd, size)
	}
	return startWithPipes(cmd)
}

func startWithTerminal(cmd *exec.Cmd, size WindowSize) (*child, error) {
	master, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open a pseudo-terminal: %w", err)
	}
	defer tty.Close()
	terminal, err := pollable(master)
	if err != nil {
		return nil, err
	}
	if size.Rows > 0 && size.Cols > 0 {
		if err := setWindowSize(terminal, size); err != nil {
			terminal.Close()
			return nil, err
		}
	}

	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// Setsid makes the child a session and process group leader, and
	// Setctty makes its fd 0, the PTY, the session's controlling terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		terminal.Close()
		return nil, err
	}
	return &child{cmd: cmd, terminal: terminal}, nil
}

// pollable returns a copy of the PTY master f that Go's poller serves, so
// that reads honour deadlines and Close interrupts them. pty.Open leaves
// the master in blocking mode because it calls Fd. It closes f.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("duplicate the pseudo-terminal master: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make the pseudo-terminal master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// setWindowSize sets the terminal's window size. The kernel sends SIGWINCH
// to the terminal's foreground process group when the size changes.
func setWindowSize(terminal *os.File, size WindowSize) error {
	raw, err := terminal.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	err = raw.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Rows, Col: size.Cols})
	})
	if err == nil {
		err = ioctlErr
	}
	if err != nil {
		return fmt.Errorf("set the window size to %dx%d: %w", size.Cols, size.Rows, err)
	}
	return nil
}

func startWithPipes(cmd *exec.Cmd) (*child, error) {
	var parentEnds, childEnds []*os.File
	closeAll := func(files []*os.File) {
		for _, f := range files {
			f.Close()
		}
	}
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(parentEnds)
			closeAll(childEnds)
			return nil, fmt.Errorf("create a pipe: %w", err)
		}
		if i == 0 {
			parentEnds, childEnds = append(parentEnds, w), append(childEnds, r)
		} else {
			parentEnds, childEnds = append(parentEnds, r), append(childEnds, w)
		}
	}
	defer closeAll(childEnds)

	cmd.Stdin, cmd.Stdout, cmd.Stderr = childEnds[0], childEnds[1], childEnds[2]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		closeAll(parentEnds)
		return nil, err
	}
	return &child{cmd: cmd, stdin: parentEnds[0], stdout: parentEnds[1], stderr: parentEnds[2]}, nil
}

// signalGroup sends sig to the child's process group, which is still
// there after the child exits while one of its members runs.
func (c *child) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-c.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// closeInput ends the child's input: end of file on the stdin pipe, or
// the terminal's end-of-file character, which ends a read in canonical
// mode.
func (c *child) closeInput() error {
	if c.terminal != nil {
		_, err := c.terminal.Write([]byte{4}) // ^D, VEOF in the default termios
		return err
	}
	return c.stdin.Close()
}

func (c *child) input() *os.File {
	if c.terminal != nil {
		return c.terminal
	}
	return c.stdin
}

// output is a stream that the child writes and the message kind that
// carries it to the client.
type output struct {
	file *os.File
	kind uint32
}

// outputs returns the terminal, or the stdout and stderr pipes.
func (c *child) outputs() []output {
	if c.terminal != nil {
		return []output{{c.terminal, KindStdout}}
	}
	return []output{{c.stdout, KindStdout}, {c.stderr, KindStderr}}
}

// closeFiles closes the server's ends of the streams.
func (c *child) closeFiles() {
	for _, f := range []*os.File{c.terminal, c.stdin, c.stdout, c.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// exitOf converts the child's wait status.
func exitOf(state *os.ProcessState) Exit {
	status, ok := state.Sys().(syscall.WaitStatus)
	if ok && status.Signaled() {
		return Exit{Signal: uint8(status.Signal())}
	}
	return Exit{Code: uint8(state.ExitCode())}
}
