package state

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/swtpm/swtpmtest"
)

func openNode(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := Open(context.Background(), Options{Dir: dir, TPM: TPMSoftware})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return n
}

func TestCreateThenReopen(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	var recovery bytes.Buffer
	n, err := Open(context.Background(), Options{Dir: dir, TPM: TPMSoftware, RecoveryKey: &recovery})
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	if !n.Created {
		t.Error("first Open did not report Created")
	}
	if !strings.Contains(recovery.String(), "Recovery key") {
		t.Errorf("recovery key not shown at creation; output %q", recovery.String())
	}
	if n.Tree.Root != n.Credential.Principal() {
		t.Errorf("host-mode tree root %s is not the node %s", n.Tree.Root, n.Credential.Principal())
	}
	node, key := n.Credential.Principal(), append([]byte(nil), n.Tree.JournalKey...)
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	n = openNode(t, dir)
	defer n.Close()
	if n.Created {
		t.Error("second Open reported Created")
	}
	if n.Credential.Principal() != node {
		t.Errorf("reopened node %s, created %s", n.Credential.Principal(), node)
	}
	if !bytes.Equal(n.Tree.JournalKey, key) {
		t.Error("journal key changed across reopen")
	}
}

func TestOpenLockedDirectory(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	n := openNode(t, dir)
	defer n.Close()
	_, err := Open(context.Background(), Options{Dir: dir, TPM: TPMSoftware})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second concurrent Open: %v, expected ErrLocked", err)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	_, err := Open(context.Background(), Options{Dir: missing})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Open of a missing directory: %v, expected an error naming %s", err, missing)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("Open created %s", missing)
	}
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(context.Background(), Options{Dir: dir, TPM: filepath.Join(dir, "no-such-tpm")})
	if err == nil {
		t.Fatal("Open with a missing TPM succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed first start left %d entries in the state directory", len(entries))
	}
}

func TestTamperedTreeFileRejected(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	openNode(t, dir).Close()

	path := filepath.Join(dir, "node", "tree")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[40] ^= 1
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Options{Dir: dir}); err == nil {
		t.Fatal("Open accepted a tampered tree file")
	}
}

func TestWrongTPMChoiceRejected(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	openNode(t, dir).Close()
	_, err := Open(context.Background(), Options{Dir: dir, TPM: HardwareTPM})
	if err == nil || !strings.Contains(err.Error(), "software") {
		t.Fatalf("Open with another TPM than the one that sealed: %v, expected an error naming the recorded TPM", err)
	}
}

func FuzzParseTreeFile(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x04, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseTreeFile(data)
	})
}

func TestRecoverAfterSoftwareTPMLost(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	var shown bytes.Buffer
	n, err := Open(context.Background(), Options{Dir: dir, TPM: TPMSoftware, RecoveryKey: &shown})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	node := n.Credential.Principal()
	n.Close()
	var keyText string
	for _, line := range strings.Split(shown.String(), "\n") {
		if strings.HasPrefix(line, "    ") {
			keyText = strings.TrimSpace(line)
		}
	}
	key, err := keystore.ParseRecoveryKey(keyText)
	if err != nil {
		t.Fatalf("recovery key %q from the creation message: %v", keyText, err)
	}

	if err := os.RemoveAll(filepath.Join(dir, "node", "tpm")); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "bt recover --state") {
		t.Fatalf("Open without the TPM state: %v, expected advice to run bt recover", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "node", "tpm")); !os.IsNotExist(statErr) {
		t.Error("the failed Open created a new software TPM state")
	}

	n, err = Recover(context.Background(), Options{Dir: dir}, key)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if n.Credential.Principal() != node {
		t.Errorf("recovered node %s, created %s", n.Credential.Principal(), node)
	}
	n.Close()
	n, err = Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Recover: %v", err)
	}
	n.Close()
}
