//go:build linux

// Command init is Blocktree's PID 1. It mounts the kernel file systems,
// loads the kernel modules listed in the initramfs, seeds entropy, sets
// the hostname and brings up the loopback interface. Then it unlocks the
// device: it finds the data partition, measures the boot, and unseals the
// node's keys with the TPM (creating them on first boot, or asking for the
// recovery key when the TPM refuses). It starts the storage daemon and the
// FUSE server as supervised services, prints the ready line, and keeps a
// gosh shell on the console in the mounted tree.
//
// PID 1 never returns and never panics: every step runs behind a recover
// boundary, and it reaps every orphaned process. SIGTERM powers the device
// off and SIGINT (also what the kernel sends on ctrl-alt-del) reboots it,
// after stopping the services, flushing the journal and unmounting.
//
// Run under another name (the image links poweroff and reboot to it), the
// same binary asks PID 1 to power off or reboot.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

const (
	shell = "/bbin/gosh"

	// shellRestartDelay keeps a shell that exits at once from spinning.
	shellRestartDelay = time.Second
)

func main() {
	if os.Getpid() != 1 {
		os.Exit(control(filepath.Base(os.Args[0])))
	}
	defer func() {
		// The last resort: PID 1 must not exit, or the kernel panics.
		if r := recover(); r != nil {
			logf("panic: %v\n%s", r, debug.Stack())
		}
		reapForever()
	}()
	boot()
}

func boot() {
	start := time.Now()
	logf("starting as pid %d", os.Getpid())

	guard("mount", mountAll)
	guard("modules", loadModules)
	guard("entropy", seedEntropy)
	guard("hostname", setHostname)
	guard("loopback", setupLoopback)
	guard("signals", handleSignals)

	dir := "/"
	var dev *device
	guard("unlock", func() (err error) {
		dev, err = unlock()
		return err
	})
	if dev != nil {
		guard("services", func() error { return startServices(dev) })
	}
	if dev != nil && services != nil {
		dir = treeMount
		// image/boot_test.go matches this line, so keep its wording stable.
		fmt.Fprintf(os.Stdout, "blocktree: ready (pid1 start to ready: %d ms)\n", time.Since(start).Milliseconds())
	} else {
		fmt.Fprintf(os.Stdout, "blocktree: not ready: the tree is not mounted (see the messages above); this shell runs in /\n")
	}
	go superviseShell(dir)
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

// superviseShell starts gosh on the console in dir and starts it again
// whenever it exits, until the device shuts down.
func superviseShell(dir string) {
	for !shuttingDown() {
		guard("shell", func() error { return runShell(dir) })
		if shuttingDown() {
			return
		}
		logf("shell exited; restarting in %s", shellRestartDelay)
		time.Sleep(shellRestartDelay)
	}
}

func runShell(dir string) error {
	cmd := newShellCommand(dir)
	exited, err := startWatched(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", shell, err)
	}
	setShellPid(cmd.Process.Pid)
	defer setShellPid(0)
	status := <-exited
	return fmt.Errorf("%s exited: %s", shell, describeStatus(status))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "blocktree-init: "+format+"\n", args...)
}

// setHostname sets the hostname from bt.hostname= on the kernel command
// line, or to "blocktree".
func setHostname() error {
	name := "blocktree"
	if v, ok := cmdlineParam("bt.hostname"); ok && v != "" {
		name = v
	}
	return unix.Sethostname([]byte(name))
}
