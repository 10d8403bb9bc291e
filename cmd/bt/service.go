package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/init/supervise"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/fuse"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/storage/proto"
	"github.com/blocktree/blocktree/services/storage/storaged"
)

// The service commands run one part of a node as its own process, the way
// the appliance's PID 1 supervises them. Each reports readiness with
// supervise.NotifyReady and stops cleanly on SIGTERM or SIGINT.

func runStoraged(env *environment, args []string) error {
	fs := newFlags(env, "bt storaged", "bt storaged --state DIR --socket PATH [--tpm auto|PATH] [--credential-fd N]")
	stateDir := fs.String("state", "", "state directory of an existing node (required)")
	socket := fs.String("socket", "", "bus endpoint, a Unix socket path, to serve the file-system protocol on (required)")
	tpmChoice := fs.String("tpm", state.TPMAuto, "the TPM that sealed the node's keys: auto (the one recorded for the node) or a TPM device or swtpm socket path")
	credentialFD := fs.Int("credential-fd", -1, "inherited descriptor of the node's credential, already unsealed by the parent (PID 1 on the appliance); without it the daemon unseals the keys with the TPM")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireOptions(fs, "state", "socket"); err != nil {
		return err
	}
	cred, err := inheritedCredential(*credentialFD)
	if err != nil {
		return fmt.Errorf("bt storaged: %w", err)
	}
	logger := serviceLogger(env)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	node, err := state.Open(ctx, state.Options{Dir: *stateDir, TPM: *tpmChoice, Logger: logger, MustExist: true, Credential: cred})
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
	// The daemon has logged "storage daemon stopped" itself.
	return nil
}

// inheritedCredential reads the credential that the parent handed over at
// descriptor fd (keystore.ShareCredential), or returns nil when fd is -1.
func inheritedCredential(fd int) (*principal.Credential, error) {
	if fd == -1 {
		return nil, nil
	}
	if fd < 3 {
		return nil, usagef("--credential-fd %d: descriptors 0 to 2 are the standard streams: pass the descriptor the parent placed the credential at", fd)
	}
	return keystore.ReceiveCredential(os.NewFile(uintptr(fd), "credential"))
}

// serveStorage serves daemon on a bus endpoint at path until ctx ends or
// serving fails.
func serveStorage(ctx context.Context, daemon *storaged.Daemon, path string, logger *slog.Logger, node principal.Principal) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create the socket directory: %w", err)
	}
	done, stop, err := listenStorage(daemon, path)
	if err != nil {
		return err
	}
	logger.Info("storage daemon ready", "node", node, "path", path)
	if err := supervise.NotifyReady(); err != nil {
		logger.Warn("reporting readiness to the supervisor failed", "node", node, "error", err)
	}
	select {
	case <-ctx.Done():
		logger.Info("stopping on signal", "node", node)
		return stop()
	case <-done:
		if err := stop(); err != nil {
			return err
		}
		return fmt.Errorf("serving on %s stopped without an error or a signal", path)
	}
}

// listenStorage serves daemon on a new bus endpoint at path. done is closed
// when serving ends. stop ends serving, removes the socket and returns the
// error that serving ended with.
func listenStorage(daemon *storaged.Daemon, path string) (done <-chan struct{}, stop func() error, err error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, nil, err
	}
	listener, err := bus.Listen(path)
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

// removeStaleSocket removes the socket that a killed daemon left at path.
// Any other kind of file stays, and the error names it.
func removeStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check the socket path %s: %w", path, err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket path %s exists and is not a socket: remove it or choose another --socket", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the old socket %s: %w", path, err)
	}
	return nil
}

// ignoreClosed returns nil for the errors that serving ends with after
// stop, and err otherwise.
func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func runMount(env *environment, args []string) error {
	fs := newFlags(env, "bt mount", "bt mount --socket PATH --mount DIR --principal PRINCIPAL")
	socket := fs.String("socket", "", "bus endpoint, a Unix socket path, of the storage daemon (required)")
	mountpoint := fs.String("mount", "", "directory to mount the tree on (required)")
	principalText := fs.String("principal", "", "principal that every request through the mount acts for: the node's principal (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireOptions(fs, "socket", "mount", "principal"); err != nil {
		return err
	}
	actor, err := principal.Parse(*principalText)
	if err != nil {
		return usagef("bt mount: invalid --principal %q: %v: give the node's principal as bt keys show prints it", *principalText, err)
	}
	logger := serviceLogger(env)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// A mount whose server died, such as the previous run of this service,
	// fails every access with ENOTCONN. Detaching it lets the new mount take
	// its place.
	if _, err := os.Stat(*mountpoint); errors.Is(err, syscall.ENOTCONN) {
		logger.Warn("detaching the mount of a FUSE server that stopped", "path", *mountpoint)
		if err := unix.Unmount(*mountpoint, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("bt mount: detach the dead mount on %s: %w: run umount -l %s", *mountpoint, err, *mountpoint)
		}
	}

	client, err := proto.Dial(*socket, proto.ClientOptions{Logger: logger})
	if err != nil {
		return fmt.Errorf("bt mount: %w", err)
	}
	defer client.Close()
	server, err := fusefs.Mount(*mountpoint, fusefs.Options{FS: client, Principal: actor, Logger: logger})
	if err != nil {
		return fmt.Errorf("bt mount: %w", err)
	}
	// The process serves this mount until it exits, so its readers may
	// keep Ps of their own (docs/benchmarks.md, "GOMAXPROCS and the FUSE
	// readers").
	server.ReserveReaderProcs()
	unmounted := make(chan struct{})
	go func() {
		server.Wait()
		close(unmounted)
	}()
	logger.Info("tree mounted", "principal", actor, "path", *mountpoint)
	if err := supervise.NotifyReady(); err != nil {
		logger.Warn("reporting readiness to the supervisor failed", "path", *mountpoint, "error", err)
	}

	select {
	case <-ctx.Done():
		logger.Info("stopping on signal", "path", *mountpoint)
		if err := unmountOrDetach(server, logger); err != nil {
			return fmt.Errorf("bt mount: %w", err)
		}
		return nil
	case <-client.Done():
		// The mount's open handles lived in the daemon's connection, so the
		// mount cannot go on. The supervisor starts a new one once the
		// daemon is back.
		if err := unmountOrDetach(server, logger); err != nil {
			logger.Error("unmounting after the storage daemon connection was lost failed", "path", *mountpoint, "error", err)
		}
		return fmt.Errorf("bt mount: lost the connection to the storage daemon at %s (%v), so %s is unmounted: run bt mount again once the daemon is back", *socket, client.Err(), *mountpoint)
	case <-unmounted:
		logger.Warn("the tree was unmounted from outside; stopping", "path", *mountpoint)
		return nil
	}
}

// unmountOrDetach unmounts server. While programs still use the mount, it
// detaches the mount lazily instead, so that the kernel removes it once
// they let go and the stopping service does not wait for them.
func unmountOrDetach(server *fusefs.Server, logger *slog.Logger) error {
	err := server.Unmount()
	if err == nil {
		return nil
	}
	logger.Warn("the mount is busy; detaching it", "path", server.Mountpoint(), "error", err)
	if err := unix.Unmount(server.Mountpoint(), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("detach %s: %w", server.Mountpoint(), err)
	}
	return nil
}

// serviceLogger returns an info-level logger on standard error, which the
// supervisor collects, and makes it the default.
func serviceLogger(env *environment) *slog.Logger {
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(logger)
	return logger
}
