//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/tpm"
)

const (
	// servicesStopTimeout is above the sum of the services' stop timeouts
	// (10 s for fuse, one minute for storage), because they stop one after
	// the other.
	servicesStopTimeout = 90 * time.Second

	// otherProcessesGrace is how long the processes that are not services
	// get between SIGTERM and SIGKILL at shutdown.
	otherProcessesGrace = 3 * time.Second
)

var (
	stopping     atomic.Bool
	shutdownOnce sync.Once
)

func shuttingDown() bool { return stopping.Load() }

// handleSignals turns SIGTERM and SIGPWR into power off and SIGINT into
// reboot, and makes ctrl-alt-del send SIGINT to PID 1 instead of rebooting
// at once.
func handleSignals() error {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	go func() {
		for sig := range signals {
			handleSignal(sig)
		}
	}()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		return fmt.Errorf("make ctrl-alt-del send SIGINT with reboot(CAD_OFF): %w: ctrl-alt-del now reboots at once, without a clean shutdown", err)
	}
	return nil
}

func handleSignal(sig os.Signal) {
	defer recoverPanic("signal")
	name := sig.String()
	if number, ok := sig.(unix.Signal); ok {
		name = unix.SignalName(number)
	}
	if sig == unix.SIGINT {
		requestShutdown(unix.LINUX_REBOOT_CMD_RESTART, name)
	} else {
		requestShutdown(unix.LINUX_REBOOT_CMD_POWER_OFF, name)
	}
}

// requestShutdown starts the shutdown that ends in reboot(2) with cmd, on
// its own goroutine. Only the first request counts. Later ones are logged
// and ignored. reason names the request's source.
func requestShutdown(cmd int, reason string) {
	started := false
	shutdownOnce.Do(func() {
		started = true
		stopping.Store(true)
	})
	if !started {
		logger.Info("shutdown request ignored: a shutdown is already in progress", "reason", reason)
		return
	}

	logger.Info("shutdown requested", "action", rebootAction(cmd), "reason", reason)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				logPanic("shutdown", r)
			}
			finish(cmd)
		}()
		shutdown()
	}()
}

// shutdown kills the console shell's session and stops the services in
// reverse order (the storage daemon syncs its journal and writes a
// checkpoint on SIGTERM). Then it ends every other process, unmounts the
// data partition and sends TPM2_Shutdown.
func shutdown() {
	killShell()
	if sup := runningServices(); sup != nil {
		logger.Info("stopping services")
		ctx, cancel := context.WithTimeout(context.Background(), servicesStopTimeout)
		if err := sup.Stop(ctx); err != nil {
			logger.Error("stopping the services timed out; they end with the other processes", "timeout", servicesStopTimeout, "error", err)
		}
		cancel()
	}
	endOtherProcesses()

	err := unix.Unmount(treeMount, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		logger.Warn("detaching the tree mount failed", "path", treeMount, "error", err)
	}
	if dev := mountedDataPartition(); dev != "" {
		if err := unmountData(dev); err != nil {
			logger.Error("unmounting the data partition failed", "path", dev, "error", err)
		}
	}
	unix.Sync()

	// The storage daemon sent TPM2_Shutdown when it stopped. One more from
	// here covers a daemon that had to be killed.
	t, err := tpm.Open(tpmDevice)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		logger.Warn("opening the TPM to send TPM2_Shutdown failed", "path", tpmDevice, "error", err)
		return
	}
	if err := t.Close(); err != nil {
		logger.Warn("sending TPM2_Shutdown failed", "path", tpmDevice, "error", err)
	}
}

// endOtherProcesses sends SIGTERM to every process but PID 1, and SIGKILL
// to those still alive after otherProcessesGrace.
func endOtherProcesses() {
	unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(otherProcessesGrace)
	for time.Now().Before(deadline) {
		if !otherProcessesAlive() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	unix.Kill(-1, unix.SIGKILL)
	time.Sleep(100 * time.Millisecond)
}

// otherProcessesAlive reports whether any process other than PID 1 runs,
// not counting kernel threads and zombies.
func otherProcessesAlive() bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		name := e.Name()
		if name == "1" || name[0] < '0' || name[0] > '9' {
			continue
		}
		// Kernel threads and zombies have an empty command line.
		if cmdline, err := os.ReadFile("/proc/" + name + "/cmdline"); err == nil && len(cmdline) > 0 {
			return true
		}
	}
	return false
}

// finish powers off or reboots. It retries every second if reboot(2)
// fails, and never returns.
func finish(cmd int) {
	// image/vm_test.go matches "powering off", so keep that wording stable.
	if cmd == unix.LINUX_REBOOT_CMD_RESTART {
		logger.Info("rebooting")
	} else {
		logger.Info("powering off")
	}
	for {
		if err := unix.Reboot(cmd); err != nil {
			logger.Error("reboot(2) failed; retrying", "action", rebootAction(cmd), "error", err, "delay", time.Second)
		}
		time.Sleep(time.Second)
	}
}

func rebootAction(cmd int) string {
	if cmd == unix.LINUX_REBOOT_CMD_RESTART {
		return "reboot"
	}
	return "power off"
}

// control runs when this binary is not PID 1: as poweroff or reboot it
// sends PID 1 SIGTERM or SIGINT and returns the exit code.
//
// After the signal it waits to be ended. The shutdown kills the console
// shell's session first, this process included, so the shell prints no
// prompt between the shutdown's messages. It returns only when the
// shutdown has not ended it within controlWait.
func control(name string) int {
	sig := unix.SIGTERM
	switch name {
	case "poweroff":
	case "reboot":
		sig = unix.SIGINT
	default:
		fmt.Fprintf(os.Stderr, "%s: this is Blocktree's PID 1 and runs only as process 1: run it as poweroff or reboot to shut the device down\n", name)
		return 2
	}
	if err := unix.Kill(1, sig); err != nil {
		fmt.Fprintf(os.Stderr, "%s: send %s to PID 1: %v\n", name, unix.SignalName(sig), err)
		return 1
	}
	time.Sleep(controlWait)
	fmt.Fprintf(os.Stderr, "%s: PID 1 has not ended this process within %v of %s: check the console log for a stuck service\n", name, controlWait, unix.SignalName(sig))
	return 1
}

// controlWait bounds the wait of poweroff and reboot for the shutdown. The
// shutdown kills the console shell's session before it stops the services,
// so a working shutdown ends them within moments. The bound is above
// servicesStopTimeout anyway, in case they run outside that session.
const controlWait = 2 * time.Minute
