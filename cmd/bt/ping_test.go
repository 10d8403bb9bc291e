package main

import (
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

func TestLocalNodeAddress(t *testing.T) {
	var root, node, other principal.Principal
	root[0], node[0], other[0] = 1, 2, 3

	hostMode := localNode{root: node, node: node}
	if got, err := hostMode.address(other.String(), "shell"); err != nil || got != endpoint.Service(other, other, "shell") {
		t.Errorf("host mode: address(principal) = %v, %v; expected the node as the root of its own tree", got, err)
	}
	shared := localNode{root: root, node: node}
	if got, err := shared.address(other.String(), "shell"); err != nil || got != endpoint.Service(root, other, "shell") {
		t.Errorf("shared tree: address(principal) = %v, %v; expected the node in the local root's tree", got, err)
	}
	full := endpoint.Service(root, other, "echo")
	if got, err := shared.address(full.String(), "shell"); err != nil || got != full {
		t.Errorf("address(%s) = %v, %v; expected the address as given", full, got, err)
	}
	if _, err := hostMode.address("nonsense", "shell"); err == nil {
		t.Error("address accepted a word that is no principal")
	}
	if _, err := hostMode.address("/"+root.String()+"/dev", "shell"); err == nil {
		t.Error("address accepted a path that is no bus address")
	}
}

func TestPingRequiresState(t *testing.T) {
	r := runBT(t, "ping", "btx")
	if r.code != 2 || !strings.Contains(r.stderr, "--state") {
		t.Errorf("bt ping without --state: exit %d, stderr %q; expected exit 2 naming --state", r.code, r.stderr)
	}
}

func TestNodeRejectsLongRunDirectory(t *testing.T) {
	state, mount := t.TempDir(), t.TempDir()
	run := "/" + strings.Repeat("r", 100)
	r := runBT(t, "node", "--state", state, "--mount", mount, "--run", run)
	if r.code != 2 || !strings.Contains(r.stderr, "shorter run directory") {
		t.Errorf("bt node --run %s: exit %d, stderr %q; expected exit 2 asking for a shorter directory", run, r.code, r.stderr)
	}
}
