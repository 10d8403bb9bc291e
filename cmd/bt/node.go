package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/fuse"
	"github.com/blocktree/blocktree/services/netd/grant"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/shell"
	"github.com/blocktree/blocktree/services/storage/proto"
	"github.com/blocktree/blocktree/services/storage/storaged"
	"golang.org/x/sys/unix"
)

// startNodeServices publishes the node's principals in its run directory
// and serves the key and shell services beside netd, so that bt keys issue
// --run and bt shell reach the running node.
func startNodeServices(network *netdService, node *state.Node, runDir string, logger *slog.Logger) error {
	if err := endpoint.WriteIdentity(runDir, node.Tree.Root, node.Credential.Principal()); err != nil {
		return err
	}
	keys := &grant.Server{Node: node.Credential, Logger: logger}
	if err := network.serve(grant.ServiceName, keys.Serve); err != nil {
		return err
	}
	// The shell runs commands as the user who started bt node, for every
	// principal whose chain covers /ROOT/dev/NODE/svc/shell.
	return network.serve(shell.ServiceName, serveNodeShell(logger))
}

func runNode(env *environment, args []string) error {
	fs := newFlags(env, "bt node", "bt node --state DIR --mount DIR [--tpm auto|software|PATH] [--checkpoint-interval DURATION] [--listen HOST:PORT] [--run DIR] [--peers FILE] [--chains DIR] [--verbose]")
	stateDir := fs.String("state", "", "state directory of the node (required; it must exist, and the node creates its files in DIR/node on first start)")
	mountpoint := fs.String("mount", "", "empty directory to mount the tree on (required)")
	tpmChoice := fs.String("tpm", state.TPMAuto, "TPM that seals the node's keys on first start: auto (/dev/tpmrm0 when usable, else a software TPM under the state directory), software, or a TPM device or swtpm socket path")
	verbose := fs.Bool("verbose", false, "log at debug level")
	checkpointInterval := fs.Duration("checkpoint-interval", storaged.DefaultCheckpointInterval, "time after the last checkpoint from which the storage daemon writes the next one, once the tree has been quiet for two seconds; after ten intervals it writes one anyway (docs/fs.md)")
	netd := registerNetdFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireOptions(fs, "state", "mount"); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	if *checkpointInterval < time.Second {
		return usagef("bt node: invalid --checkpoint-interval %s: use a duration of at least 1s, such as %s", *checkpointInterval, storaged.DefaultCheckpointInterval)
	}
	if *tpmChoice == "none" {
		return usagef("bt node: --tpm none: a node always seals its keys with a TPM: use auto, software or a TPM device path")
	}

	// Check both directories before the state directory is touched, so a
	// mistake leaves a new state directory empty.
	if err := checkStateDir(*stateDir); err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	if err := checkMountpoint(*mountpoint, *stateDir); err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	if err := netd.check(*stateDir); err != nil {
		return usagef("bt node: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	node, err := state.Open(ctx, state.Options{Dir: *stateDir, TPM: *tpmChoice, Logger: logger, RecoveryKey: env.stdout})
	if err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	defer node.Close()

	// NOTE: a start that fails from here on keeps swtpm's writes to
	// node/tpm, and the storage daemon may already have cut a torn journal
	// tail. The TPM state is not put back, because closing the daemon may
	// write a checkpoint, which increments the TPM's rollback counter.
	// The user who starts the node owns the root directory of a new tree,
	// so that the mount, which only that user can reach unless it is
	// root, is writable.
	daemon, err := storaged.Open(storaged.Options{
		Node: node, Logger: logger, CheckpointInterval: *checkpointInterval,
		RootOwner: uint32(os.Getuid()), RootGroup: uint32(os.Getgid()),
	})
	if err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	absMount, err := filepath.Abs(*mountpoint)
	if err != nil {
		return fmt.Errorf("bt node: %w", err)
	}
	peersFile, chainsDir := netd.configFiles(absMount, node.Credential.Principal())
	network, err := startNetd(netdConfig{
		node: node.Credential, root: node.Tree.Root, runDir: netd.runDir(*stateDir),
		listen: *netd.listen, peersFile: peersFile, chainsDir: chainsDir, logger: logger,
	})
	if err == nil {
		err = startNodeServices(network, node, netd.runDir(*stateDir), logger)
		if err == nil {
			err = serveAndMount(ctx, env, node, daemon, *mountpoint, logger)
		}
		err = errors.Join(err, network.Close())
	}
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

// serveAndMount serves the storage daemon on a bus endpoint, mounts it
// through FUSE as a client of that endpoint, and waits for a signal or an
// unmount from outside.
func serveAndMount(ctx context.Context, env *environment, node *state.Node, daemon *storaged.Daemon, mountpoint string, logger *slog.Logger) error {
	socket := filepath.Join(node.Dir, "storage.sock")
	_, stopServing, err := listenStorage(daemon, socket)
	if err != nil {
		return err
	}
	defer stopServing()

	client, err := proto.Dial(socket, proto.ClientOptions{Logger: logger})
	if err != nil {
		return err
	}
	defer client.Close()
	server, err := fusefs.Mount(mountpoint, fusefs.Options{FS: client, Principal: node.Credential.Principal(), Logger: logger})
	if err != nil {
		return err
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

	root := node.Tree.Root
	logger.Info("node ready", "node", node.Credential.Principal(), "tree", "/"+root.String(), "mount", mountpoint)
	fmt.Fprintf(env.stdout, "ready: node %s serves tree /%s at %s\n", node.Credential.Principal(), root, mountpoint)

	// Only ctx carries stop requests, because a channel registered after the
	// ready line misses a signal sent just before it. A failed unmount
	// registers a fresh context, before the attempt, for the next signal.
	for {
		select {
		case <-ctx.Done():
			next, stopNext := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stopNext()
			ctx = next
			logger.Info("stopping on signal", "node", node.Credential.Principal())
			err := server.Unmount()
			if err == nil {
				<-unmounted
				return nil
			}
			// A local file system refuses to unmount while programs use it,
			// and keeps working for them, and so does the node.
			if errors.Is(err, fusefs.ErrBusy) {
				fmt.Fprintf(env.stderr, "bt node: %s is busy, so the node goes on serving it: close the programs that use it (fuser -vm %s lists them), then stop the node again\n", mountpoint, mountpoint)
			} else {
				fmt.Fprintf(env.stderr, "bt node: %v: the node goes on serving %s; stop it again, or run fusermount3 -u %s\n", err, mountpoint, mountpoint)
			}
		case <-unmounted:
			logger.Warn("the tree was unmounted from outside; stopping", "mount", mountpoint)
			return nil
		}
	}
}

// missingDir returns the error for a directory that does not exist. A
// path that starts with ~ usually comes from quotes that kept the shell
// from expanding it, and there mkdir -p with the same path, unquoted,
// would create another directory.
func missingDir(kind, path string) error {
	if strings.HasPrefix(path, "~") {
		return fmt.Errorf("%s %s does not exist: the shell expands ~ only outside quotes, so write the path without quotes or with $HOME", kind, path)
	}
	return fmt.Errorf("%s %s does not exist: create it with mkdir -p %s", kind, path, path)
}

// checkStateDir requires an existing directory.
func checkStateDir(path string) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return missingDir("state directory", path)
	case err != nil:
		return fmt.Errorf("state directory %s: %w", path, err)
	case !info.IsDir():
		return fmt.Errorf("state directory %s is not a directory: choose a directory", path)
	}
	return nil
}

// checkMountpoint requires an existing, empty directory on which nothing is
// mounted and that does not overlap the state directory.
func checkMountpoint(path, stateDir string) error {
	// Every statfs call sends a request to a FUSE server, while the kernel
	// may serve a stat from attributes it cached for a minute. So statfs
	// finds a mount whose server died at once.
	var fsInfo unix.Statfs_t
	statfsErr := unix.Statfs(path, &fsInfo)
	info, err := os.Stat(path)
	switch {
	case errors.Is(statfsErr, syscall.ENOTCONN) || errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("mount point %s is a FUSE mount whose server is gone (a node that crashed?): unmount it with fusermount3 -u -z %s", path, path)
	case errors.Is(err, fs.ErrNotExist):
		return missingDir("mount point", path)
	case err != nil:
		return fmt.Errorf("mount point %s: %w", path, err)
	case !info.IsDir():
		return fmt.Errorf("mount point %s is not a directory: choose an empty directory", path)
	}
	if err := checkOverlap(path, stateDir); err != nil {
		return err
	}

	parent, err := os.Stat(filepath.Dir(filepath.Clean(path)))
	if err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	if info.Sys().(*syscall.Stat_t).Dev != parent.Sys().(*syscall.Stat_t).Dev {
		if statfsErr == nil && fsInfo.Type == unix.FUSE_SUPER_MAGIC {
			return fmt.Errorf("mount point %s is busy: a FUSE server, perhaps another bt node, serves it (stop that server or choose another directory)", path)
		}
		return fmt.Errorf("mount point %s is busy: something is mounted there already (umount it or choose another directory)", path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	if len(entries) > 0 {
		noun := "entries"
		if len(entries) == 1 {
			noun = "entry"
		}
		return fmt.Errorf("mount point %s is not empty: the mount would hide its %d %s; choose an empty directory", path, len(entries), noun)
	}
	return nil
}

// checkOverlap rejects a mount point and a state directory of which one
// contains the other, after resolving symbolic links, since a link can
// name the same directory by another path. Both exist.
func checkOverlap(path, stateDir string) error {
	mount, err := filepath.EvalSymlinks(path)
	if err == nil {
		mount, err = filepath.Abs(mount)
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	state, err := filepath.EvalSymlinks(stateDir)
	if err == nil {
		state, err = filepath.Abs(state)
	}
	if err != nil {
		return fmt.Errorf("state directory %s: %w", stateDir, err)
	}
	switch {
	case state == mount:
		return fmt.Errorf("state directory %s and mount point %s are the same directory: choose a state directory outside the mount point", stateDir, path)
	case within(state, mount):
		return fmt.Errorf("state directory %s is inside mount point %s, which the mount would hide from the node: choose a state directory outside the mount point", stateDir, path)
	case within(mount, state):
		return fmt.Errorf("mount point %s is inside state directory %s, where the node keeps its blocks: choose a mount point outside the state directory", path, stateDir)
	}
	return nil
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// fsckFailed is bt fsck's exit status when it could not check the node at
// all, as opposed to 1 for damage that it found.
const fsckFailed = 3

func runFsck(env *environment, args []string) error {
	fs := newFlags(env, "bt fsck", "bt fsck --state DIR")
	stateDir := fs.String("state", "", "state directory of a stopped node (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireOptions(fs, "state"); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(logger)
	if _, err := os.Stat(filepath.Join(*stateDir, "node")); err != nil {
		if state.IsNodeDir(*stateDir) {
			parent := filepath.Dir(filepath.Clean(*stateDir))
			return exitError{fsckFailed, fmt.Errorf("bt fsck: %s is the node directory inside the state directory %s: run bt fsck --state %s", *stateDir, parent, parent)}
		}
		return exitError{fsckFailed, fmt.Errorf("bt fsck: %s contains no node state (%s not found): check the path", *stateDir, filepath.Join(*stateDir, "node"))}
	}

	ctx := context.Background()
	node, err := state.Open(ctx, state.Options{Dir: *stateDir, Logger: logger})
	if err != nil {
		return exitError{fsckFailed, fmt.Errorf("bt fsck: %w", err)}
	}
	defer node.Close()
	daemon, err := storaged.Open(storaged.Options{Node: node, Logger: logger, Check: true})
	if err != nil {
		return exitError{fsckFailed, fmt.Errorf("bt fsck: %w", err)}
	}
	problems, stats, err := daemon.Fsck()
	closeErr := daemon.Close()
	if err != nil {
		return exitError{fsckFailed, fmt.Errorf("bt fsck: %w", err)}
	}
	if closeErr != nil {
		return exitError{fsckFailed, fmt.Errorf("bt fsck: %w", closeErr)}
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
	fmt.Fprintf(env.stdout, "clean: node %s, tree /%s: %d checkpointed inodes, %d block versions and %d bytes of journal checked\n",
		node.Credential.Principal(), node.Tree.Root, stats.Inodes, stats.BlockVersions, stats.JournalBytes)
	return nil
}

func runRecover(env *environment, args []string) error {
	fs := newFlags(env, "bt recover", "bt recover --state DIR [--recovery-key-file FILE] [--tpm auto|software|PATH]")
	stateDir := fs.String("state", "", "state directory of the stopped node whose TPM refuses to unseal its keys (required)")
	keyFile := fs.String("recovery-key-file", "", "read the node's recovery key from this file instead of the terminal")
	tpmChoice := fs.String("tpm", state.TPMAuto, "TPM to seal the keys to: auto (the TPM recorded for this node), software, or a TPM device or swtpm socket path")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireOptions(fs, "state"); err != nil {
		return err
	}
	if err := checkStateDir(*stateDir); err != nil {
		return fmt.Errorf("bt recover: %w", err)
	}
	key, err := readRecoveryKey(env, *keyFile)
	if err != nil {
		return fmt.Errorf("bt recover: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	node, err := state.Recover(context.Background(), state.Options{Dir: *stateDir, TPM: *tpmChoice, Logger: logger}, key)
	if err != nil {
		return fmt.Errorf("bt recover: %w", err)
	}
	defer node.Close()
	if err := storaged.Rebind(node); err != nil {
		return fmt.Errorf("bt recover: %w", err)
	}
	fmt.Fprintf(env.stdout, "recovered node %s: its keys are sealed to the current TPM; start it with bt node --state %s --mount DIR\n", node.Credential.Principal(), *stateDir)
	return nil
}
