//go:build linux

package main

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// PID 1 reaps every child with wait4(-1), including the ones it started, so
// exec.Cmd.Wait must not be used. startWatched registers a child before the
// reaper can see it exit.
var (
	watchMu  sync.Mutex
	watchers = map[int]chan unix.WaitStatus{}
)

// startWatched starts cmd and returns a channel that receives its exit
// status. Holding watchMu across Start keeps deliverStatus from dropping
// the status of a child that exits at once.
func startWatched(cmd *exec.Cmd) (<-chan unix.WaitStatus, error) {
	watchMu.Lock()
	defer watchMu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	watchers[cmd.Process.Pid] = ch
	return ch, nil
}

// reapForever waits for any child and hands its status to its watcher, if
// one is registered. It never returns: a panic in one round is logged and
// the next round starts.
func reapForever() {
	for {
		reapOnce()
	}
}

func reapOnce() {
	defer func() {
		if r := recover(); r != nil {
			logPanic("reaper", r)
			time.Sleep(time.Second)
		}
	}()
	var status unix.WaitStatus
	pid, err := unix.Wait4(-1, &status, 0, nil)
	switch {
	case errors.Is(err, unix.EINTR):
		return
	case errors.Is(err, unix.ECHILD):
		// No children right now, for example early in the boot or between
		// two shells.
		time.Sleep(100 * time.Millisecond)
		return
	case err != nil:
		logger.Error("wait4 failed; retrying", "error", err, "delay", time.Second)
		time.Sleep(time.Second)
		return
	}
	deliverStatus(pid, status)
}

func deliverStatus(pid int, status unix.WaitStatus) {
	watchMu.Lock()
	defer watchMu.Unlock()
	if ch, ok := watchers[pid]; ok {
		delete(watchers, pid)
		ch <- status
	}
}

func describeStatus(status unix.WaitStatus) string {
	if status.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(status.Signal()), unix.SignalName(status.Signal()))
	}
	return fmt.Sprintf("exit status %d", status.ExitStatus())
}
