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
	"syscall"

	"github.com/blocktree/blocktree/services/fuse"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/storage/proto"
	"github.com/blocktree/blocktree/services/storage/storaged"
)

func runNode(env *environment, args []string) error {
	fs := newFlags(env, "bt node", "bt node --state DIR --mount DIR [--tpm auto|software|PATH] [--verbose]")
	stateDir := fs.String("state", "", "state directory of the node (required; it must exist, and the node creates its files in DIR/node on first start)")
	mountpoint := fs.String("mount", "", "empty directory to mount the tree on (required)")
	tpmChoice := fs.String("tpm", state.TPMAuto, "TPM that seals the node's keys on first start: auto (/dev/tpmrm0 when usable, else a software TPM under the state directory), software, or a TPM device or swtpm socket path")
	verbose := fs.Bool("verbose", false, "log at debug level")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *stateDir == "" || *mountpoint == "" {
		return usagef("bt node: --state and --mount are required")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	// Check the mount point before the state directory is touched, so a
	// mistake in --mount leaves a new state directory empty.
	if err := checkMountpoint(*mountpoint); err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	if info, err := os.Stat(*stateDir); err != nil || !info.IsDir() {
		return fmt.Errorf("bt node: state directory %s does not exist: create it with mkdir -p %s", *stateDir, *stateDir)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	node, err := state.Open(ctx, state.Options{Dir: *stateDir, TPM: *tpmChoice, Logger: logger, RecoveryKey: env.stderr})
	if err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	defer node.Close()

	daemon, err := storaged.Open(storaged.Options{Node: node, Logger: logger})
	if err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	err = serveAndMount(ctx, env, node, daemon, *mountpoint, logger)
	if closeErr := daemon.Close(); closeErr != nil {
		logger.Error("storage daemon stopped with an error", "error", closeErr)
		err = errors.Join(err, closeErr)
	}
	if closeErr := node.Close(); closeErr != nil {
		logger.Error("closing the node state failed", "error", closeErr)
		err = errors.Join(err, closeErr)
	}
	if err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	logger.Info("node stopped", "node", node.Credential.Principal())
	return nil
}

// serveAndMount serves the storage daemon on a Unix socket, mounts it
// through FUSE as a client of that socket, and waits for a signal or an
// unmount from outside.
func serveAndMount(ctx context.Context, env *environment, node *state.Node, daemon *storaged.Daemon, mountpoint string, logger *slog.Logger) error {
	socket := filepath.Join(node.Dir, "storage.sock")
	os.Remove(socket) // a socket left by a node that was killed
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", socket, err)
	}
	serveCtx, cancelServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- daemon.Serve(serveCtx, listener) }()
	defer func() {
		cancelServe()
		listener.Close()
		<-served
		os.Remove(socket)
	}()

	client, err := proto.Dial(socket, proto.ClientOptions{Logger: logger})
	if err != nil {
		return err
	}
	defer client.Close()
	server, err := fusefs.Mount(mountpoint, fusefs.Options{FS: client, Principal: node.Credential.Principal(), Logger: logger})
	if err != nil {
		return err
	}
	unmounted := make(chan struct{})
	go func() {
		server.Wait()
		close(unmounted)
	}()

	root := node.Tree.Root
	logger.Info("node ready", "node", node.Credential.Principal(), "tree", "/"+root.String(), "mount", mountpoint)
	fmt.Fprintf(env.stdout, "ready: node %s serves tree /%s at %s\n", node.Credential.Principal(), root, mountpoint)

	select {
	case <-ctx.Done():
		logger.Info("stopping on signal", "node", node.Credential.Principal())
		if err := server.Unmount(); err != nil {
			logger.Error("unmount failed", "mount", mountpoint, "error", err)
			return fmt.Errorf("unmount %s: %w (close programs using it, then umount it)", mountpoint, err)
		}
		<-unmounted
	case <-unmounted:
		logger.Warn("the tree was unmounted from outside; stopping", "mount", mountpoint)
	}
	return nil
}

// checkMountpoint requires an existing directory on which nothing is mounted.
func checkMountpoint(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("mount point %s does not exist: create it with mkdir -p %s", path, path)
	}
	if !info.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", path)
	}
	parent, err := os.Stat(filepath.Dir(filepath.Clean(path)))
	if err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	if info.Sys().(*syscall.Stat_t).Dev != parent.Sys().(*syscall.Stat_t).Dev {
		return fmt.Errorf("mount point %s is busy: something is mounted there already (umount it or choose another directory)", path)
	}
	return nil
}

func runFsck(env *environment, args []string) error {
	fs := newFlags(env, "bt fsck", "bt fsck --state DIR")
	stateDir := fs.String("state", "", "state directory of a stopped node (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *stateDir == "" {
		return usagef("bt fsck: --state is required")
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(logger)
	if _, err := os.Stat(filepath.Join(*stateDir, "node")); err != nil {
		return fmt.Errorf("bt fsck: %s contains no node state (%s not found): check the path", *stateDir, filepath.Join(*stateDir, "node"))
	}

	ctx := context.Background()
	node, err := state.Open(ctx, state.Options{Dir: *stateDir, Logger: logger})
	if err != nil {
		return fmt.Errorf("bt fsck: %w", err)
	}
	defer node.Close()
	daemon, err := storaged.Open(storaged.Options{Node: node, Logger: logger, Check: true})
	if err != nil {
		return fmt.Errorf("bt fsck: %w", err)
	}
	problems, err := daemon.Fsck()
	closeErr := daemon.Close()
	if err != nil {
		return fmt.Errorf("bt fsck: %w", err)
	}
	if closeErr != nil {
		return fmt.Errorf("bt fsck: %w", closeErr)
	}
	for _, p := range problems {
		fmt.Fprintln(env.stdout, p)
	}
	damage := 0
	for _, p := range problems {
		if p.Kind != "garbage" {
			damage++
		}
	}
	if damage > 0 {
		return fmt.Errorf("bt fsck: %d damaged item(s) in %s", damage, *stateDir)
	}
	fmt.Fprintf(env.stdout, "clean: node %s, tree /%s\n", node.Credential.Principal(), node.Tree.Root)
	return nil
}
