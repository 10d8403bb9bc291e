package main

import (
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

func TestEchoAddressOfTarget(t *testing.T) {
	var root, node principal.Principal
	root[0], node[0] = 1, 2
	want := endpoint.Service(node, node, endpoint.EchoName)
	if got, err := echoAddress(node.String()); err != nil || got != want {
		t.Errorf("echoAddress(principal) = %v, %v; expected %v", got, err, want)
	}
	other := endpoint.Service(root, node, "shell").String()
	if got, err := echoAddress(other); err != nil || got != endpoint.Service(root, node, endpoint.EchoName) {
		t.Errorf("echoAddress(%s) = %v, %v; expected the echo service of the same node", other, got, err)
	}
	if _, err := echoAddress("nonsense"); err == nil {
		t.Error("echoAddress accepted a word that is no principal")
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
