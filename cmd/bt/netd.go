package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/netd/route"
	"github.com/blocktree/blocktree/services/node/state"
)

// netdFlags are bt node's options for the network daemon.
type netdFlags struct {
	listen, run, peers, chains *string
}

func registerNetdFlags(fs *flag.FlagSet) *netdFlags {
	return &netdFlags{
		listen: fs.String("listen", "", "HOST:PORT on which netd accepts links from other nodes (default: none, so no node can reach this one)"),
		run:    fs.String("run", "", "run directory for the node's bus endpoints (default: STATE/run); socket paths must stay under 108 bytes"),
		peers:  fs.String("peers", "", "peers file: one 'PRINCIPAL HOST:PORT' line per node this node may dial (default: none)"),
		chains: fs.String("chains", "", "directory of *.chain files, this node's writecap chains for other nodes' trees, as bt keys issue writes them (default: none)"),
	}
}

// runDir returns the run directory for the state directory stateDir.
func (f *netdFlags) runDir(stateDir string) string {
	if *f.run != "" {
		return *f.run
	}
	return filepath.Join(stateDir, "run")
}

// check rejects a run directory whose sockets do not fit a Unix socket
// address, before the state directory is touched.
func (f *netdFlags) check(stateDir string) error {
	var p principal.Principal
	for _, name := range []string{endpoint.NetdName, endpoint.EchoName} {
		if _, err := endpoint.SocketPath(f.runDir(stateDir), endpoint.Service(p, p, name)); err != nil {
			if *f.run == "" {
				return fmt.Errorf("--run: %w (pass --run with a short directory such as /run/bt-NAME)", err)
			}
			return fmt.Errorf("--run: %w", err)
		}
	}
	return nil
}

// netdService is a running router and echo service.
type netdService struct {
	router   *route.Router
	stopEcho context.CancelFunc
	echoDone chan error
}

// startNetd starts netd's router on the node's run directory and the echo
// service beside it.
func startNetd(node *state.Node, f *netdFlags, stateDir string, logger *slog.Logger) (*netdService, error) {
	self := node.Credential.Principal()
	runDir := f.runDir(stateDir)
	var ln net.Listener
	if *f.listen != "" {
		var err error
		if ln, err = net.Listen("tcp", *f.listen); err != nil {
			return nil, fmt.Errorf("netd --listen %s: %w", *f.listen, err)
		}
	}

	router, err := route.New(route.Options{
		Node: node.Credential, Root: node.Tree.Root, RunDir: runDir, Listener: ln,
		PeersFile: *f.peers, ChainsDir: *f.chains, Logger: logger,
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}

	echo, err := endpoint.Register(runDir, endpoint.Service(node.Tree.Root, self, endpoint.EchoName))
	if err != nil {
		router.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &netdService{router: router, stopEcho: cancel, echoDone: make(chan error, 1)}
	go func() { s.echoDone <- endpoint.ServeEcho(ctx, echo, logger) }()
	if addr := router.Addr(); addr != nil {
		logger.Info("netd listening", "node", self.String(), "addr", addr.String(), "run", runDir)
	}
	return s, nil
}

// Close stops the echo service and the router.
func (s *netdService) Close() error {
	s.stopEcho()
	return errors.Join(<-s.echoDone, s.router.Close())
}
