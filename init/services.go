//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/blocktree/blocktree/init/supervise"
)

const (
	bt            = "/bbin/bt"
	runDir        = "/run/bt"
	storageSocket = runDir + "/storage.sock"
	treeMount     = "/bt"
	statusFile    = runDir + "/status"

	// servicesReadyTimeout bounds the wait for the tree at boot. Under TCG
	// on two cores the storage daemon opens a fresh tree in about a second.
	servicesReadyTimeout = 2 * time.Minute
	statusInterval       = 500 * time.Millisecond
)

// services is the running supervisor, nil until startServices succeeds.
var services *supervise.Supervisor

// startServices starts the storage daemon and the FUSE server and waits
// until the tree is mounted.
func startServices(dev *device) error {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(treeMount, 0o755); err != nil {
		return err
	}
	env := []string{"PATH=/bbin:/bin"}
	sup, err := supervise.New(supervise.Options{
		Console: os.Stdout,
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Start:   startWatched,
	},
		supervise.Service{
			Name:         "storage",
			Path:         bt,
			Args:         []string{"storaged", "--state", dataMount, "--socket", storageSocket, "--tpm", tpmDevice},
			Env:          env,
			Dir:          "/",
			NotifyReady:  true,
			ReadyTimeout: servicesReadyTimeout,
			// A clean stop writes a checkpoint; give it time on slow disks.
			StopTimeout: time.Minute,
		},
		supervise.Service{
			Name:         "fuse",
			Path:         bt,
			Args:         []string{"mount", "--socket", storageSocket, "--mount", treeMount, "--principal", dev.node.String()},
			Env:          env,
			Dir:          "/",
			After:        []string{"storage"},
			NotifyReady:  true,
			ReadyTimeout: servicesReadyTimeout,
		},
	)
	if err != nil {
		return err
	}
	go sup.Run(context.Background())
	go writeStatus(sup)

	ctx, cancel := context.WithTimeout(context.Background(), servicesReadyTimeout)
	defer cancel()
	if err := sup.WaitReady(ctx, "fuse"); err != nil {
		return fmt.Errorf("the tree did not mount: %w", err)
	}
	services = sup
	return nil
}

// writeStatus keeps statusFile current: one line a service with its name,
// state, pid and restart count, for people and tests on the console.
func writeStatus(sup *supervise.Supervisor) {
	defer func() {
		if r := recover(); r != nil {
			logf("status: panic: %v", r)
		}
	}()
	var last string
	for !shuttingDown() {
		var b strings.Builder
		for _, s := range sup.Status() {
			fmt.Fprintf(&b, "%s state=%s pid=%d restarts=%d\n", s.Name, s.State, s.PID, s.Restarts)
		}
		if text := b.String(); text != last {
			tmp := statusFile + ".tmp"
			if err := os.WriteFile(tmp, []byte(text), 0o644); err == nil {
				os.Rename(tmp, filepath.Clean(statusFile))
				last = text
			}
		}
		time.Sleep(statusInterval)
	}
}
