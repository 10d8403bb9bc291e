package endpoint

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
	"github.com/blocktree/blocktree/services/crypto/capability"
)

// claimEnv makes the test binary, started again, dial as a remote claim.
const claimEnv = "BT_ENDPOINT_CLAIM_DIAL"

func TestMain(m *testing.M) {
	if args := os.Getenv(claimEnv); args != "" {
		os.Exit(dialClaim(args))
	}
	os.Exit(m.Run())
}

// dialClaim runs in the child: it dials the echo service under the run
// directory run with a claim of a remote principal and a chain that
// covers the service, so only the uid check can reject it.
func dialClaim(run string) int {
	data, err := os.ReadFile(filepath.Join(run, "chain"))
	if err != nil {
		return 3
	}
	chain, err := capability.ParseChain(data)
	if err != nil || len(chain) == 0 {
		return 3
	}
	root := chain[0].Issuer.Principal()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := DialOrigin(ctx, run, Service(root, root, "echo"), &Origin{Principal: chain[0].Subject, Chain: chain})
	if err != nil {
		return 4
	}
	defer conn.Close()
	// The listener closes a rejected connection, so Recv ends.
	if _, err := conn.Recv(ctx); err != nil {
		return 0
	}
	return 5
}

func TestAcceptRejectsClaimFromOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("not running as root, which this test needs to run a process as another user (CI=true, so this fails instead of skipping)")
		}
		t.Skip("skipping: not running as root, which this test needs to run a process as another user")
	}
	nodeCred, remote := newCredential(t), newCredential(t)
	node := nodeCred.Principal()
	run := t.TempDir()
	a := Service(node, node, "echo")
	l := register(t, run, a)
	chain := issue(t, nodeCred, remote.Principal(), capability.RootPath(node))
	data, err := chain.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "chain"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Let user nobody reach the socket and the test binary's directory.
	path, _ := SocketPath(run, a)
	for _, p := range []string{filepath.Dir(run), run, filepath.Dir(path)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	child := testenv.CopyTestBinary(t, run)

	ch := acceptOne(l)
	cmd := exec.Command(child)
	cmd.Env = append(os.Environ(), claimEnv+"="+run)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v (exit 3: cannot read the chain, 4: dial failed, 5: the claim was accepted): %s", err, out)
	}

	got := <-ch
	if !errors.Is(got.err, ErrHello) {
		t.Fatalf("Accept of a claim from uid 65534 = %v, expected ErrHello", got.err)
	}
	if l.Rejected() != 1 {
		t.Errorf("Rejected() = %d, expected 1", l.Rejected())
	}
}
