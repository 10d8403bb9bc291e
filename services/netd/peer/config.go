package peer

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Defaults for the zero fields of Config.
const (
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultMaxPendingHandshakes = 64
)

// Config holds what a node needs to take part in a link. Dial and Listen
// copy it, so later changes do not affect links already made.
type Config struct {
	// Node is this node's credential. Only its signing key is used, as the
	// key of the TLS certificate, so peers identify this node as
	// Node.Principal().
	Node *principal.Credential

	// Chain is this node's writecap chain from Root, which Dial presents to
	// the listener. The links it makes may open circuits only to addresses
	// under the chain's last prefix (Scope). It is empty when this node is
	// the root of the listener's tree. Listen ignores it.
	Chain capability.Chain

	// Root is the root principal of the tree whose services the link
	// reaches: for Dial the listener's tree, for Listen this node's own
	// tree. Dialers must hold a chain from it.
	Root principal.Principal

	// HandshakeTimeout bounds the setup of one link: the TLS handshake and
	// the chain exchange, and for Dial also the TCP connect. 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// MaxPendingHandshakes bounds the handshakes that a Listener runs at
	// once. Further connections wait in the kernel's accept queue until one
	// finishes. 0 means DefaultMaxPendingHandshakes.
	MaxPendingHandshakes int

	// Logger receives the listener's log lines. nil means slog.Default().
	Logger *slog.Logger
}

// NodeSpace returns the address space of the node services of root's tree,
// /ROOT/dev.
func NodeSpace(root principal.Principal) string {
	return capability.RootPath(root) + "/dev"
}

// Scope returns what chain lets its holder reach in root's tree: the
// prefix of its last link, or the whole tree for the root's empty chain.
func Scope(root principal.Principal, chain capability.Chain) string {
	if len(chain) == 0 {
		return capability.RootPath(root)
	}
	return chain[len(chain)-1].Prefix
}

// withDefaults checks cfg and returns it with its zero fields filled in.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Node == nil {
		return cfg, errors.New("peer config: Node is nil: pass the node's credential (state.Node.Credential)")
	}
	if cfg.Root.IsZero() {
		return cfg, errors.New("peer config: Root is the zero principal: pass the tree's root principal")
	}
	if cfg.HandshakeTimeout < 0 {
		return cfg, fmt.Errorf("peer config: HandshakeTimeout %s is negative", cfg.HandshakeTimeout)
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxPendingHandshakes < 0 {
		return cfg, fmt.Errorf("peer config: MaxPendingHandshakes %d is negative", cfg.MaxPendingHandshakes)
	}
	if cfg.MaxPendingHandshakes == 0 {
		cfg.MaxPendingHandshakes = DefaultMaxPendingHandshakes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Chain = append(capability.Chain(nil), cfg.Chain...)
	return cfg, nil
}

// verifyChain checks that chain lets writer write under its own last
// prefix in root's tree now, and returns that prefix. A last prefix in
// another tree is checked against root's whole tree instead, so that
// Verify names the first link that leaves it.
func verifyChain(root, writer principal.Principal, chain capability.Chain) (string, error) {
	scope := Scope(root, chain)
	if scopeRoot, err := capability.PathRoot(scope); err != nil || scopeRoot != root {
		scope = capability.RootPath(root)
	}
	return scope, chain.Verify(root, writer, scope, time.Now())
}

// checkOwnChain verifies this node's chain as the listener will, so that a
// node with an expired or wrong chain learns it here instead of from the
// listener's rejection.
func (cfg Config) checkOwnChain() error {
	node := cfg.Node.Principal()
	scope, err := verifyChain(cfg.Root, node, cfg.Chain)
	if err != nil {
		return fmt.Errorf("peer config: nodes of tree %s would reject this node (%s) because its chain does not let it reach %s: %w: %s",
			cfg.Root, node, scope, err, chainHint(err, cfg.Root))
	}
	return nil
}

// prepare checks cfg, and this node's chain when it dials, and returns cfg
// with defaults and the TLS key.
func (cfg Config) prepare(dialing bool) (Config, *ecdsa.PrivateKey, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return cfg, nil, err
	}
	if dialing {
		if err := cfg.checkOwnChain(); err != nil {
			return cfg, nil, err
		}
	} else {
		cfg.Chain = nil
	}
	key, err := tlsKey(cfg.Node)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, key, nil
}
