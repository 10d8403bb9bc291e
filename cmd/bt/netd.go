package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/netd/route"
	"github.com/blocktree/blocktree/services/shell"
)

// netdFlags are bt node's options for the network daemon.
type netdFlags struct {
	listen, run, peers, chains *string
}

func registerNetdFlags(fs *flag.FlagSet) *netdFlags {
	return &netdFlags{
		listen: fs.String("listen", "", "HOST:PORT on which netd accepts links from other nodes (default: none, so no node can reach this one)"),
		run:    fs.String("run", "", "run directory for the node's bus endpoints (default: STATE/run); socket paths must stay under 108 bytes"),
		peers:  fs.String("peers", "", "peers file: one 'PRINCIPAL HOST:PORT' line per node this node may dial (default: MOUNT/dev/NODE/net/peers, in the node's own tree)"),
		chains: fs.String("chains", "", "directory of *.chain files, this node's writecap chains for other nodes' trees, as bt keys issue writes them (default: MOUNT/dev/NODE/net/chains)"),
	}
}

// configFiles returns the peers file and the chains directory: the flags'
// values, or else the files in the node's own tree mounted at mount.
func (f *netdFlags) configFiles(mount string, node principal.Principal) (peers, chains string) {
	dir := filepath.Join(mount, "dev", node.String(), "net")
	peers, chains = *f.peers, *f.chains
	if peers == "" {
		peers = filepath.Join(dir, "peers")
	}
	if chains == "" {
		chains = filepath.Join(dir, "chains")
	}
	return peers, chains
}

// runDir returns the run directory for the state directory stateDir.
func (f *netdFlags) runDir(stateDir string) string {
	if *f.run != "" {
		return *f.run
	}
	return filepath.Join(stateDir, "run")
}

// check rejects a run directory whose sockets do not fit a Unix socket
// address and a listen address that cannot be bound, before the state
// directory is touched.
func (f *netdFlags) check(stateDir string) error {
	if *f.listen != "" {
		// A trial bind finds a malformed address, an unknown host, a port
		// in use and a port that needs root now, not after the TPM and the
		// journal. The port could still be taken before netd binds it.
		ln, err := net.Listen("tcp", *f.listen)
		if err != nil {
			return fmt.Errorf("--listen %s: %w (give HOST:PORT with an address of this machine and a free port, such as :%d)", *f.listen, err, DefaultNetdPort)
		}
		ln.Close()
	}
	var p principal.Principal
	for _, name := range []string{endpoint.NetdName, endpoint.EchoName, shell.ServiceName} {
		if _, err := endpoint.SocketPath(f.runDir(stateDir), endpoint.Service(p, p, name)); err != nil {
			if *f.run == "" {
				return fmt.Errorf("--run: %w (pass --run with a short directory such as /run/bt-NAME)", err)
			}
			return fmt.Errorf("--run: %w", err)
		}
	}
	return nil
}

// netdConfig is the configuration of a node's network daemon, in bt node
// and in bt netd alike.
type netdConfig struct {
	node      *principal.Credential
	root      principal.Principal // the tree's root principal
	runDir    string
	listen    string // "" accepts no links
	peersFile string
	chainsDir string
	logger    *slog.Logger
}

// netdService is a running router and the bus services beside it.
type netdService struct {
	cfg      netdConfig
	router   *route.Router
	ctx      context.Context
	cancel   context.CancelFunc
	services sync.WaitGroup
	errsMu   sync.Mutex
	errs     []error
}

// startNetd starts netd's router on the node's run directory and the echo
// service beside it.
func startNetd(cfg netdConfig) (*netdService, error) {
	self := cfg.node.Principal()
	var ln net.Listener
	if cfg.listen != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.listen); err != nil {
			return nil, fmt.Errorf("netd --listen %s: %w", cfg.listen, err)
		}
	}

	router, err := route.New(route.Options{
		Node: cfg.node, Root: cfg.root, RunDir: cfg.runDir, Listener: ln,
		PeersFile: cfg.peersFile, ChainsDir: cfg.chainsDir, Logger: cfg.logger,
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &netdService{cfg: cfg, router: router, ctx: ctx, cancel: cancel}
	if err := s.serve(endpoint.EchoName, func(ctx context.Context, l *endpoint.Listener) error {
		return endpoint.ServeEcho(ctx, l, cfg.logger)
	}); err != nil {
		s.Close()
		return nil, err
	}
	if addr := router.Addr(); addr != nil {
		cfg.logger.Info("netd listening", "node", self.String(), "addr", addr.String(), "run", cfg.runDir)
	}
	return s, nil
}

// serve registers the node's service name in the run directory and runs
// fn on its listener until Close.
func (s *netdService) serve(name string, fn func(ctx context.Context, l *endpoint.Listener) error) error {
	l, err := endpoint.Register(s.cfg.runDir, endpoint.Service(s.cfg.root, s.cfg.node.Principal(), name))
	if err != nil {
		return err
	}
	s.services.Go(func() {
		if err := fn(s.ctx, l); err != nil {
			s.errsMu.Lock()
			s.errs = append(s.errs, fmt.Errorf("service %s: %w", name, err))
			s.errsMu.Unlock()
		}
	})
	return nil
}

// Close stops the services and the router.
func (s *netdService) Close() error {
	s.cancel()
	s.services.Wait()
	s.errsMu.Lock()
	defer s.errsMu.Unlock()
	return errors.Join(errors.Join(s.errs...), s.router.Close())
}
