package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/init/supervise"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/netd/grant"
	"github.com/blocktree/blocktree/services/netd/ifconfig"
)

// DefaultNetdPort is the TCP port on which the appliance's netd accepts
// links from other nodes.
const DefaultNetdPort = 7420

// defaultInterfaces is the interfaces file that netd writes into a tree
// that has none: DHCP on the first Ethernet port.
const defaultInterfaces = `# Network interfaces of this device, applied by netd within seconds of a
# change. See docs/netd.md for the keywords.
interface eth0
    dhcp
`

// defaultPeers is the peers file that netd writes into a tree that has none.
const defaultPeers = `# The nodes this node may dial, one per line: PRINCIPAL HOST:PORT
# (netd listens on port 7420 on the appliance).
`

func runNetd(env *environment, args []string) error {
	fs := newFlags(env, "bt netd", "bt netd --credential-fd N [--run DIR] [--tree DIR] [--listen HOST:PORT]")
	credentialFD := fs.Int("credential-fd", -1, "inherited descriptor of the node's credential, already unsealed by the parent (required)")
	runDir := fs.String("run", endpoint.DefaultRunDir, "the node's run directory, with the bus endpoints and the node and root files")
	tree := fs.String("tree", "/bt", "where the node's tree is mounted; netd reads its configuration from TREE/dev/NODE/net")
	listen := fs.String("listen", fmt.Sprintf(":%d", DefaultNetdPort), "HOST:PORT on which netd accepts links from other nodes; empty accepts none")
	interfacesState := fs.String("interfaces-state", ifconfig.DefaultStateFile, "file in which netd lists the addresses and routes it added")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *credentialFD == -1 {
		return usagef("bt netd: --credential-fd is required: netd takes the node's keys from its parent")
	}
	cred, err := inheritedCredential(*credentialFD)
	if err != nil {
		return fmt.Errorf("bt netd: %w", err)
	}
	root, node, err := endpoint.ReadIdentity(*runDir)
	if err != nil {
		return fmt.Errorf("bt netd: %w", err)
	}
	if node != cred.Principal() {
		return fmt.Errorf("bt netd: the credential is %s, but %s names node %s: hand over this node's credential", cred.Principal(), filepath.Join(*runDir, endpoint.NodeFile), node)
	}
	logger := serviceLogger(env)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	config := filepath.Join(*tree, "dev", node.String(), "net")
	if err := prepareNetConfig(config); err != nil {
		return fmt.Errorf("bt netd: %w", err)
	}
	service, err := startNetd(netdConfig{
		node: cred, root: root, runDir: *runDir, listen: *listen,
		peersFile: filepath.Join(config, "peers"), chainsDir: filepath.Join(config, "chains"), logger: logger,
	})
	if err != nil {
		return fmt.Errorf("bt netd: %w", err)
	}
	keys := &grant.Server{Node: cred, Logger: logger}
	if err := service.serve(grant.ServiceName, keys.Serve); err != nil {
		service.Close()
		return fmt.Errorf("bt netd: %w", err)
	}

	// Only the route family: the appliance kernel has no XFRM, which a
	// handle of every family would need.
	handle, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		service.Close()
		return fmt.Errorf("bt netd: open a netlink handle: %w", err)
	}
	defer handle.Close()
	interfaces, err := ifconfig.New(ifconfig.Options{
		Path: filepath.Join(config, "interfaces"), Handle: handle, StateFile: *interfacesState, Logger: logger,
	})
	if err != nil {
		service.Close()
		return fmt.Errorf("bt netd: %w", err)
	}
	watched := make(chan error, 1)
	go func() { watched <- interfaces.Watch(ctx) }()

	logger.Info("netd ready", "node", node.String(), "path", config)
	if err := supervise.NotifyReady(); err != nil {
		logger.Warn("reporting readiness to the supervisor failed", "node", node.String(), "error", err)
	}
	<-ctx.Done()
	watchErr := <-watched
	if errors.Is(watchErr, context.Canceled) {
		watchErr = nil
	}
	if err := errors.Join(watchErr, interfaces.Close(), service.Close()); err != nil {
		return fmt.Errorf("bt netd: %w", err)
	}
	return nil
}

// prepareNetConfig creates the node's network configuration directory in
// the tree, with commented files to edit, where they are missing. Existing
// files are left as they are.
func prepareNetConfig(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "chains"), 0o755); err != nil {
		return fmt.Errorf("create the network configuration directory: %w: is the tree mounted?", err)
	}
	for name, contents := range map[string]string{"interfaces": defaultInterfaces, "peers": defaultPeers} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", filepath.Join(dir, name), err)
		}
		_, err = f.WriteString(contents)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
		}
	}
	return nil
}
