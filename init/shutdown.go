//go:build linux

package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/tpm"
)

const (
	servicesStopTimeout = 90 * time.Second
	// straysGrace is how long other processes get between SIGTERM and
	// SIGKILL at shutdown.
	straysGrace = 3 * time.Second
)

var (
	stopping     atomic.Bool
	shutdownOnce sync.Once
)

func shuttingDown() bool { return stopping.Load() }

// handleSignals makes ctrl-alt-del send SIGINT to PID 1 instead of
// rebooting at once, and turns SIGTERM into power off and SIGINT into
// reboot.
func handleSignals() error {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	go func() {
		for sig := range signals {
			switch sig {
			case unix.SIGINT:
				logf("reboot requested (%v)", sig)
				requestShutdown(unix.LINUX_REBOOT_CMD_RESTART)
			default:
				logf("power off requested (%v)", sig)
				requestShutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
			}
		}
	}()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
}

// requestShutdown starts the shutdown once; later requests are ignored.
func requestShutdown(cmd int) {
	shutdownOnce.Do(func() {
		stopping.Store(true)
		go func() {
			defer func() {
				if r := recover(); r != nil {
					logf("shutdown: panic: %v", r)
				}
				finish(cmd)
			}()
			shutdown()
		}()
	})
}

// shutdown stops the console shell and the services in reverse order (the
// storage daemon syncs its journal and writes a checkpoint on SIGTERM),
// ends every other process, unmounts the data partition and sends
// TPM2_Shutdown.
func shutdown() {
	killShell()
	if services != nil {
		logf("stopping services")
		ctx, cancel := context.WithTimeout(context.Background(), servicesStopTimeout)
		if err := services.Stop(ctx); err != nil {
			logf("stopping services: %v", err)
		}
		cancel()
	}
	endStrays()
	unix.Unmount(treeMount, unix.MNT_DETACH)
	if dev := unlockedPartition(); dev != "" {
		if err := unmountData(dev); err != nil {
			logf("data partition: %v", err)
		}
	}
	unix.Sync()
	// The storage daemon sent TPM2_Shutdown when it stopped; one more from
	// here covers a daemon that had to be killed.
	if t, err := tpm.Open(tpmDevice); err == nil {
		if err := t.Close(); err != nil {
			logf("TPM shutdown: %v", err)
		}
	}
}

// endStrays sends SIGTERM to every remaining process, then SIGKILL.
func endStrays() {
	unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(straysGrace)
	for time.Now().Before(deadline) {
		if !haveChildren() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	unix.Kill(-1, unix.SIGKILL)
	time.Sleep(100 * time.Millisecond)
}

// haveChildren reports whether any process other than PID 1 and kernel
// threads is alive.
func haveChildren() bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		name := e.Name()
		if name == "1" || name[0] < '0' || name[0] > '9' {
			continue
		}
		// Kernel threads have an empty command line.
		if cmdline, err := os.ReadFile("/proc/" + name + "/cmdline"); err == nil && len(cmdline) > 0 {
			return true
		}
	}
	return false
}

func finish(cmd int) {
	if cmd == unix.LINUX_REBOOT_CMD_RESTART {
		logf("rebooting")
	} else {
		logf("powering off")
	}
	for {
		if err := unix.Reboot(cmd); err != nil {
			logf("reboot(2): %v", err)
		}
		time.Sleep(time.Second)
	}
}

// control runs when this binary starts under another name than /init: as
// poweroff or reboot it asks PID 1 to shut down.
func control(name string) int {
	sig := unix.SIGTERM
	switch name {
	case "poweroff":
	case "reboot":
		sig = unix.SIGINT
	default:
		logf("%s must run as PID 1; run it as poweroff or reboot to shut the device down", name)
		return 2
	}
	if err := unix.Kill(1, sig); err != nil {
		logf("%s: signal PID 1: %v", name, err)
		return 1
	}
	return 0
}
