package route

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// ParsePeers parses a peers file: one peer per line, a node principal and
// its netd's TCP address separated by white space, as in
//
//	btq5k... 192.0.2.7:7420
//
// Blank lines and lines whose first non-blank character is '#' are
// skipped. name is the file's name for errors, which are one line and
// name the file and the line.
func ParsePeers(name string, data []byte) (map[principal.Principal]string, error) {
	peers := make(map[principal.Principal]string)
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(make([]byte, 0, 4096), 64<<10)
	for line := 1; s.Scan(); line++ {
		text := strings.TrimSpace(s.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("peers %s:%d: %d fields, expected a node principal and HOST:PORT", name, line, len(fields))
		}
		node, err := principal.Parse(fields[0])
		if err != nil {
			return nil, fmt.Errorf("peers %s:%d: %v", name, line, err)
		}
		host, port, err := net.SplitHostPort(fields[1])
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("peers %s:%d: address %q is not HOST:PORT", name, line, fields[1])
		}
		if _, dup := peers[node]; dup {
			return nil, fmt.Errorf("peers %s:%d: node %s is listed twice: keep one line", name, line, node)
		}
		peers[node] = fields[1]
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("peers %s: %w", name, err)
	}
	return peers, nil
}

// LoadPeers reads and parses the peers file at path. An empty path or a
// missing file gives an empty table, so that a node whose tree has no
// peers file yet reports the file to create when it needs a peer.
func LoadPeers(path string) (map[principal.Principal]string, error) {
	if path == "" {
		return map[principal.Principal]string{}, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[principal.Principal]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	return ParsePeers(path, data)
}

// ChainSuffix is the file name suffix of the chain files that LoadChains
// reads.
const ChainSuffix = ".chain"

// LoadChains reads every file of dir whose name ends in ChainSuffix, each
// a writecap chain as bt keys issue writes it, and returns them by tree
// root: the issuer of each chain's first link. An empty dir gives an empty
// table, and so does a missing one. The chains are decoded, not verified:
// peer.Dial verifies the one it uses.
func LoadChains(dir string) (map[principal.Principal]capability.Chain, error) {
	chains := make(map[principal.Principal]capability.Chain)
	if dir == "" {
		return chains, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return chains, nil
	}
	if err != nil {
		return nil, fmt.Errorf("chains: %w", err)
	}
	from := make(map[principal.Principal]string)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ChainSuffix) || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("chains: %w", err)
		}
		chain, err := capability.ParseChainFile(data)
		if err != nil {
			return nil, fmt.Errorf("chains %s: %w", path, err)
		}
		if len(chain) == 0 || chain[0] == nil || chain[0].Issuer.IsZero() {
			return nil, fmt.Errorf("chains %s: the chain is empty: a root needs no chain file for its own tree, so remove it", path)
		}
		root := chain[0].Issuer.Principal()
		if other, dup := from[root]; dup {
			return nil, fmt.Errorf("chains %s: a second chain for tree %s, after %s: keep one", path, root, other)
		}
		from[root] = path
		chains[root] = chain
	}
	return chains, nil
}
