//go:build linux

package main

import (
	"os"
	"os/exec"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	shellMu  sync.Mutex
	shellPid int
)

func setShellPid(pid int) {
	shellMu.Lock()
	shellPid = pid
	shellMu.Unlock()
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

// killShell ends the console shell's session, so that it holds no files
// or working directory in the tree while the tree is unmounted.
func killShell() {
	shellMu.Lock()
	pid := shellPid
	shellMu.Unlock()
	if pid > 0 {
		// The shell leads its session and process group.
		unix.Kill(-pid, unix.SIGHUP)
		unix.Kill(-pid, unix.SIGKILL)
	}
}
