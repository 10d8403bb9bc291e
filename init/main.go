//go:build linux

// Command init is Blocktree's PID 1. It mounts the kernel file systems,
// loads the kernel modules listed in the initramfs, sets the hostname,
// brings up the loopback interface, prints a ready line on the console and
// then keeps a gosh shell running on the console. It never returns, and it
// reaps every orphaned process.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

const (
	hostname = "blocktree"
	shell    = "/bbin/gosh"

	// shellRestartDelay keeps a shell that exits at once from spinning.
	shellRestartDelay = time.Second
)

func main() {
	start := time.Now()
	logf("starting as pid %d", os.Getpid())

	guard("mount", mountAll)
	guard("modules", loadModules)
	guard("hostname", func() error { return unix.Sethostname([]byte(hostname)) })
	guard("loopback", setupLoopback)

	// image/boot_test.go matches this line, so keep its wording stable.
	fmt.Fprintf(os.Stdout, "blocktree: ready (pid1 start to ready: %d ms)\n", time.Since(start).Milliseconds())

	go superviseShell()
	reapForever()
}

// guard runs one boot step and logs its error or panic, so a failed step
// leaves PID 1 running with a usable shell.
func guard(step string, fn func() error) {
	defer func() {
		if r := recover(); r != nil {
			logf("%s: panic: %v\n%s", step, r, debug.Stack())
		}
	}()
	if err := fn(); err != nil {
		logf("%s: %v", step, err)
	}
}

// superviseShell starts gosh on the console and starts it again whenever
// it exits.
func superviseShell() {
	for {
		guard("shell", runShell)
		logf("shell exited; restarting in %s", shellRestartDelay)
		time.Sleep(shellRestartDelay)
	}
}

func runShell() error {
	cmd := exec.Command(shell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = []string{"PATH=/bbin:/bin", "HOME=/", "TERM=linux"}
	// A new session with the console as controlling terminal gives the
	// shell job control and Ctrl-C.
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	exited, err := startWatched(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", shell, err)
	}
	status := <-exited
	return fmt.Errorf("%s exited: %s", shell, describeStatus(status))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "blocktree-init: "+format+"\n", args...)
}
