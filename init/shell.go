//go:build linux

package main

import (
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

var (
	shellMu  sync.Mutex
	shellPid int // process ID of the console shell, 0 while none runs
)

func setShellPid(pid int) {
	shellMu.Lock()
	shellPid = pid
	shellMu.Unlock()
}

// superviseShell keeps gosh on the console in dir, starting it again each
// time it exits, until the device shuts down.
func superviseShell(dir string) {
	for !shuttingDown() {
		runShell(dir)
		if shuttingDown() {
			return
		}
		time.Sleep(shellRestartDelay)
	}
}

// runShell runs the console shell once, until it exits, and logs how it
// ended.
func runShell(dir string) {
	defer recoverPanic("shell")
	cmd := newShellCommand(dir)
	exited, err := startWatched(cmd)
	if err != nil {
		logger.Error("starting the console shell failed; retrying", "path", shell, "error", err, "delay", shellRestartDelay)
		return
	}
	setShellPid(cmd.Process.Pid)
	defer setShellPid(0)
	// A shutdown that began before the pid was recorded found no shell to
	// kill, so this call kills it.
	if shuttingDown() {
		killShell()
	}

	status := <-exited
	if !shuttingDown() {
		logger.Info("console shell exited; starting it again", "path", shell, "exit", describeStatus(status), "delay", shellRestartDelay)
	}
}

// newShellCommand returns gosh on the console, in its own session with the
// console as controlling terminal, which gives it job control and Ctrl-C.
func newShellCommand(dir string) *exec.Cmd {
	cmd := exec.Command(shell)
	cmd.Dir = dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = []string{"PATH=/bbin:/bin", "HOME=" + dir, "TERM=linux", "PWD=" + dir}
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return cmd
}

// killShell sends SIGKILL to every process in the console shell's session,
// so that none holds a file or working directory in the tree while it is
// unmounted. Background jobs run in process groups of their own within the
// session, which is why a kill of the shell's process group alone is not
// enough. A process that started a new session escapes and is ended later
// with all other processes.
func killShell() {
	shellMu.Lock()
	session := shellPid
	shellMu.Unlock()
	if session <= 0 {
		return
	}

	entries, err := os.ReadDir("/proc")
	if err != nil {
		logger.Warn("listing processes failed; killing only the shell's process group", "error", err)
		unix.Kill(-session, unix.SIGKILL)
		return
	}
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil || pid <= 1 {
			continue
		}
		if sid, err := unix.Getsid(pid); err == nil && sid == session {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}
