//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/blocktree/blocktree/init/supervise"
	"github.com/blocktree/blocktree/services/bus/endpoint"
)

const (
	bt            = "/bbin/bt"
	runDir        = "/run/bt"
	storageSocket = runDir + "/storage.sock" // the storage daemon's bus endpoint
	treeMount     = "/bt"
	statusFile    = runDir + "/status"

	// servicesReadyTimeout bounds the wait for the tree at boot, and each
	// service's wait for its own readiness. The end-to-end test measures
	// about 2.3 s from PID 1's start to ready under TCG. The large margin is
	// a guess for replaying a long journal after a power cut on a slow disk.
	servicesReadyTimeout = 2 * time.Minute
	statusInterval       = 500 * time.Millisecond
)

var (
	servicesMu sync.Mutex
	// services is the running supervisor, nil until startServices runs it.
	// It is set even when the tree did not mount in time, so that the
	// shutdown stops the services that keep trying.
	services *supervise.Supervisor
)

// adoptServices records sup as the running supervisor and returns true,
// unless a shutdown has begun. Checking and recording under servicesMu
// means that a shutdown either finds sup or keeps it from running.
func adoptServices(sup *supervise.Supervisor) bool {
	servicesMu.Lock()
	defer servicesMu.Unlock()
	if shuttingDown() {
		return false
	}
	services = sup
	return true
}

func runningServices() *supervise.Supervisor {
	servicesMu.Lock()
	defer servicesMu.Unlock()
	return services
}

// startServices starts the storage daemon and the FUSE server and waits
// until the tree is mounted. When that takes longer than
// servicesReadyTimeout, the services keep trying in the background.
func startServices(dev *device) error {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", runDir, err)
	}
	if err := os.MkdirAll(treeMount, 0o755); err != nil {
		return fmt.Errorf("create the mount point %s: %w", treeMount, err)
	}
	env := []string{"PATH=/bbin:/bin"}
	storage := supervise.Service{
		Name:         "storage",
		Path:         bt,
		Args:         []string{"storaged", "--state", dataMount, "--socket", storageSocket, "--tpm", tpmDevice},
		Env:          env,
		Dir:          "/",
		NotifyReady:  true,
		ReadyTimeout: servicesReadyTimeout,
		// A clean stop writes a checkpoint, which takes longer on a slow
		// disk.
		StopTimeout: time.Minute,
		// The daemon takes the keys PID 1 unsealed instead of unsealing
		// them again.
		Files: []*os.File{dev.credential},
	}
	storage.Args = append(storage.Args, "--credential-fd", strconv.Itoa(storage.FileDescriptor(0)))
	netd := supervise.Service{
		Name:         "netd",
		Path:         bt,
		Args:         []string{"netd", "--run", endpoint.DefaultRunDir, "--tree", treeMount},
		Env:          env,
		Dir:          "/",
		After:        []string{"fuse"},
		NotifyReady:  true,
		ReadyTimeout: servicesReadyTimeout,
		Files:        []*os.File{dev.credential},
	}
	netd.Args = append(netd.Args, "--credential-fd", strconv.Itoa(netd.FileDescriptor(0)))
	// Remote sessions get the console's shell, in the tree, with the same
	// environment; netd checks each caller's writecap for svc/shell.
	shellService := supervise.Service{
		Name:         "shell",
		Path:         bt,
		Args:         []string{"shelld", "--run", endpoint.DefaultRunDir, "--shell", shell},
		Env:          []string{"PATH=/bbin:/bin", "HOME=" + treeMount, "TERM=linux"},
		Dir:          treeMount,
		After:        []string{"fuse"},
		NotifyReady:  true,
		ReadyTimeout: servicesReadyTimeout,
	}
	if err := publishPrincipals(dev); err != nil {
		return err
	}
	sup, err := supervise.New(supervise.Options{
		Console: os.Stdout,
		Logger:  quietLogger,
		Start:   startWatched,
	},
		storage,
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
		netd,
		shellService,
	)
	if err != nil {
		return fmt.Errorf("configure the services: %w", err)
	}
	if !adoptServices(sup) {
		return errors.New("services not started: the device is shutting down")
	}
	goSafely("supervisor", func() {
		if err := sup.Run(context.Background()); err != nil {
			logger.Error("supervisor stopped with an error", "error", err)
		}
	})
	goSafely("status", func() { writeStatus(sup) })

	ctx, cancel := context.WithTimeout(context.Background(), servicesReadyTimeout)
	defer cancel()
	err = sup.WaitReady(ctx, "fuse")
	var failed *supervise.FailedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &failed):
		return fmt.Errorf("the tree did not mount on %s: %w: the service output above shows why", treeMount, err)
	default:
		return fmt.Errorf("the tree did not mount on %s within %s: %w: the services keep trying, so cd %s once %s shows fuse state=ready", treeMount, servicesReadyTimeout, err, treeMount, statusFile)
	}
}

// publishPrincipals writes the node's and its tree root's principals into
// the bus's run directory, where bt netd, bt shell and bt keys issue --run
// find them.
func publishPrincipals(dev *device) error {
	if err := endpoint.WriteIdentity(endpoint.DefaultRunDir, dev.root, dev.node); err != nil {
		return fmt.Errorf("publish the node's principals: %w", err)
	}
	return nil
}

// writeStatus keeps statusFile current until the shutdown: one line a
// service with its name, state, pid and restart count, for people and tests
// on the console. The file is replaced by a rename, so a reader never sees
// a partial write.
func writeStatus(sup *supervise.Supervisor) {
	var last string
	failing := false
	for !shuttingDown() {
		var b strings.Builder
		for _, s := range sup.Status() {
			fmt.Fprintf(&b, "%s state=%s pid=%d restarts=%d\n", s.Name, s.State, s.PID, s.Restarts)
		}
		if text := b.String(); text != last {
			err := replaceFile(statusFile, []byte(text))
			switch {
			case err == nil:
				if failing {
					logger.Info("writing the service status works again", "path", statusFile)
				}
				last, failing = text, false
			case !failing:
				// Logged once, because the next attempt comes in half a
				// second.
				logger.Error("writing the service status failed; retrying", "path", statusFile, "error", err)
				failing = true
			}
		}
		time.Sleep(statusInterval)
	}
}

func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
