package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/init/supervise"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/fuse"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/storage/proto"
	"github.com/blocktree/blocktree/services/storage/storaged"
)

// The service commands run one part of a node as its own process, the way
// the appliance's PID 1 supervises them. Each tells its supervisor when it
// is ready (supervise.NotifyReady) and stops cleanly on SIGTERM or SIGINT.

func runStoraged(env *environment, args []string) error {
	fs := newFlags(env, "bt storaged", "bt storaged --state DIR --socket PATH [--tpm auto|PATH]")
	stateDir := fs.String("state", "", "state directory of an existing node (required)")
	socket := fs.String("socket", "", "Unix socket to serve the file-system protocol on (required)")
	tpmChoice := fs.String("tpm", state.TPMAuto, "the TPM that sealed the node's keys: auto (the one recorded for the node) or a TPM device or swtpm socket path")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *stateDir == "" || *socket == "" {
		return usagef("bt storaged: --state and --socket are required")
	}
	logger := serviceLogger(env)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	node, err := state.Open(ctx, state.Options{Dir: *stateDir, TPM: *tpmChoice, Logger: logger, MustExist: true})
	if err != nil {
		return fmt.Errorf("bt storaged: %w", err)
	}
	defer node.Close()
	daemon, err := storaged.Open(storaged.Options{Node: node, Logger: logger})
	if err != nil {
		return fmt.Errorf("bt storaged: %w", err)
	}
	err = serveStorage(ctx, daemon, *socket, logger, node.Credential.Principal())
	if closeErr := daemon.Close(); closeErr != nil {
		err = errors.Join(err, closeErr)
	}
	if closeErr := node.Close(); closeErr != nil {
		err = errors.Join(err, closeErr)
	}
	if err != nil {
		return fmt.Errorf("bt storaged: %w", err)
	}
	logger.Info("storage daemon stopped", "node", node.Credential.Principal())
	return nil
}

// serveStorage serves daemon on a Unix socket at path until ctx ends.
func serveStorage(ctx context.Context, daemon *storaged.Daemon, path string, logger *slog.Logger, node principal.Principal) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	done, stop, err := listenStorage(daemon, path)
	if err != nil {
		return err
	}
	logger.Info("storage daemon ready", "node", node, "path", path)
	if err := supervise.NotifyReady(); err != nil {
		logger.Warn("telling the supervisor that the service is ready failed", "error", err)
	}
	select {
	case <-ctx.Done():
		logger.Info("stopping on signal", "node", node)
		return stop()
	case <-done:
		if err := stop(); err != nil {
			return err
		}
		return errors.New("the storage daemon stopped serving")
	}
}

// listenStorage serves daemon on a new Unix socket at path. done is
// closed when serving ends; stop ends serving, removes the socket and
// returns the error serving ended with.
func listenStorage(daemon *storaged.Daemon, path string) (done <-chan struct{}, stop func() error, err error) {
	os.Remove(path) // a socket left by a daemon that was killed
	listener, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var serveErr error
	go func() {
		serveErr = daemon.Serve(ctx, listener)
		close(finished)
	}()
	var once sync.Once
	stop = func() error {
		once.Do(func() {
			cancel()
			listener.Close()
			<-finished
			os.Remove(path)
		})
		return ignoreClosed(serveErr)
	}
	return finished, stop, nil
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func runMount(env *environment, args []string) error {
	fs := newFlags(env, "bt mount", "bt mount --socket PATH --mount DIR --principal PRINCIPAL")
	socket := fs.String("socket", "", "Unix socket of the storage daemon (required)")
	mountpoint := fs.String("mount", "", "directory to mount the tree on (required)")
	who := fs.String("principal", "", "principal that every request through the mount acts for: the node's principal (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *socket == "" || *mountpoint == "" || *who == "" {
		return usagef("bt mount: --socket, --mount and --principal are required")
	}
	p, err := principal.Parse(*who)
	if err != nil {
		return usagef("bt mount: --principal %q: %v: give the node's principal as bt keys show prints it", *who, err)
	}
	logger := serviceLogger(env)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// A mount whose server died (the previous run of this service) answers
	// ENOTCONN; detach it so that the new mount takes its place.
	if _, err := os.Stat(*mountpoint); errors.Is(err, syscall.ENOTCONN) {
		logger.Warn("detaching the mount of a server that stopped", "path", *mountpoint)
		if err := unix.Unmount(*mountpoint, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("bt mount: detach the dead mount on %s: %w", *mountpoint, err)
		}
	}

	client, err := proto.Dial(*socket, proto.ClientOptions{Logger: logger})
	if err != nil {
		return fmt.Errorf("bt mount: %w", err)
	}
	defer client.Close()
	server, err := fusefs.Mount(*mountpoint, fusefs.Options{FS: client, Principal: p, Logger: logger})
	if err != nil {
		return fmt.Errorf("bt mount: %w", err)
	}
	unmounted := make(chan struct{})
	go func() {
		server.Wait()
		close(unmounted)
	}()
	logger.Info("tree mounted", "principal", p, "path", *mountpoint)
	if err := supervise.NotifyReady(); err != nil {
		logger.Warn("telling the supervisor that the service is ready failed", "error", err)
	}

	select {
	case <-ctx.Done():
		logger.Info("stopping on signal", "path", *mountpoint)
		return unmountOrDetach(server, logger)
	case <-client.Done():
		// The handles of this mount lived in the daemon's connection, so
		// the mount cannot go on; the supervisor starts a new one once the
		// daemon is back.
		unmountOrDetach(server, logger)
		return fmt.Errorf("bt mount: the storage daemon connection went down (%v): the mount on %s stops", client.Err(), *mountpoint)
	case <-unmounted:
		logger.Warn("the tree was unmounted from outside; stopping", "path", *mountpoint)
		return nil
	}
}

// unmountOrDetach unmounts server, and detaches the mount lazily when
// programs still use it, so that a stopping service never hangs on them.
func unmountOrDetach(server *fusefs.Server, logger *slog.Logger) error {
	if err := server.Unmount(); err == nil {
		return nil
	} else {
		logger.Warn("the mount is busy; detaching it", "path", server.Mountpoint(), "error", err)
	}
	if err := unix.Unmount(server.Mountpoint(), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("detach %s: %w", server.Mountpoint(), err)
	}
	return nil
}

// serviceLogger logs to standard error, which the supervisor collects.
func serviceLogger(env *environment) *slog.Logger {
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(logger)
	return logger
}
