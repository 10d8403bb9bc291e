package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/node/state"
)

// localNode is the node on this machine whose netd and principal a
// client command such as bt ping or bt shell uses.
type localNode struct {
	root   principal.Principal // the root of the node's tree
	node   principal.Principal
	runDir string
}

// findLocalNode finds the local node without unsealing its keys. With a
// state directory, a host-mode node's, it reads the principals there and
// the run directory defaults to STATE/run. Without one, the run directory
// defaults to endpoint.DefaultRunDir, and the principals come from its
// node and root files, which the appliance's init writes.
func findLocalNode(stateDir, runDir string) (localNode, error) {
	if stateDir != "" {
		root, node, err := state.ReadPrincipals(stateDir)
		if err != nil {
			return localNode{}, err
		}
		if runDir == "" {
			runDir = filepath.Join(stateDir, "run")
		}
		return localNode{root: root, node: node, runDir: runDir}, nil
	}
	if runDir == "" {
		runDir = endpoint.DefaultRunDir
	}
	root, node, err := endpoint.ReadIdentity(runDir)
	if err != nil {
		return localNode{}, err
	}
	return localNode{root: root, node: node, runDir: runDir}, nil
}

// address returns the address that target names: a bus address as
// given, or, for a node principal, the address of that node's service
// name. A node that is the root of its own tree, as every host-mode node
// is, takes another node to be the root of its own tree too. A node of a
// shared tree takes it to be a node of the same tree.
func (n localNode) address(target, name string) (endpoint.Address, error) {
	if strings.HasPrefix(target, "/") {
		return endpoint.Parse(target)
	}
	p, err := principal.Parse(target)
	if err != nil {
		return endpoint.Address{}, fmt.Errorf("%q is neither an address nor a node principal: %v", target, err)
	}
	root := n.root
	if root == n.node {
		root = p
	}
	return endpoint.Service(root, p, name), nil
}
