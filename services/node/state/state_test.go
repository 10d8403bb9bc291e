package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/swtpm/swtpmtest"
	"github.com/blocktree/blocktree/services/crypto/tpm"
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

func TestFailedOpenRestoresSoftwareTPMState(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	openNode(t, dir).Close()
	stranger := t.TempDir()
	openNode(t, stranger).Close()

	// The node's keys do not unseal with another node's TPM, which Open
	// learns only after it has started swtpm.
	tpmDir := filepath.Join(dir, "node", "tpm")
	if err := os.RemoveAll(tpmDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(tpmDir, os.DirFS(filepath.Join(stranger, "node", "tpm"))); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	_, err := Open(context.Background(), Options{Dir: dir})
	if !errors.Is(err, tpm.ErrSRKChanged) {
		t.Fatalf("Open with another node's TPM: %v, expected %v", err, tpm.ErrSRKChanged)
	}
	compareSnapshots(t, dir, before, snapshotDir(t, dir))
}

func TestOpenKeepsTPMStateOfSuccessfulStart(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	openNode(t, dir).Close()
	permall := filepath.Join(dir, "node", "tpm", "tpm2-00.permall")
	before, err := os.ReadFile(permall)
	if err != nil {
		t.Fatal(err)
	}
	openNode(t, dir).Close()
	after, err := os.ReadFile(permall)
	if err != nil {
		t.Fatal(err)
	}
	// TPM2_Startup(CLEAR) increments the reset count in NV memory.
	if bytes.Equal(before, after) {
		t.Errorf("%s is unchanged after a successful start, expected swtpm's writes to stay", permall)
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

// snapshotDir describes every entry under root, root itself included, by
// its relative path: type, permissions, modification time, and the
// contents of regular files or the target of symbolic links. Equal
// snapshots show that nothing was added, removed or rewritten. The
// directories' modification times also show an entry that was created and
// removed again, to the file system's timestamp resolution.
func snapshotDir(t *testing.T, root string) map[string]string {
	t.Helper()
	snapshot := make(map[string]string)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		entry := fmt.Sprintf("%v %s", info.Mode(), info.ModTime().Format(time.RFC3339Nano))
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			entry += fmt.Sprintf(" %q", data)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			entry += " -> " + target
		}
		snapshot[rel] = entry
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", root, err)
	}
	return snapshot
}

// compareSnapshots reports every entry that differs between two snapshots
// of the same directory.
func compareSnapshots(t *testing.T, dir string, before, after map[string]string) {
	t.Helper()
	for rel, entry := range before {
		if now, ok := after[rel]; !ok {
			t.Errorf("%s: %s was removed", dir, rel)
		} else if now != entry {
			t.Errorf("%s: %s changed from %s to %s", dir, rel, entry, now)
		}
	}
	for rel, entry := range after {
		if _, ok := before[rel]; !ok {
			t.Errorf("%s: %s was added: %s", dir, rel, entry)
		}
	}
}

func TestOpenMustExistWithoutNode(t *testing.T) {
	dir := t.TempDir()
	// Files of another program that shares the state directory.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "other"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other", "data"), []byte{0, 1, 2}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("notes.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)

	n, err := Open(context.Background(), Options{Dir: dir, TPM: TPMSoftware, MustExist: true})
	if err == nil {
		n.Close()
		t.Fatal("Open with MustExist created a node in a directory without one")
	}

	message := err.Error()
	if strings.Contains(message, "\n") {
		t.Errorf("error spans several lines: %q", message)
	}
	if missing := filepath.Join(dir, "node"); !strings.Contains(message, missing) {
		t.Errorf("error %q does not name the missing %s", message, missing)
	}
	if command := "bt node --state " + dir; !strings.Contains(message, command) {
		t.Errorf("error %q does not say to create the node with %q", message, command)
	}
	compareSnapshots(t, dir, before, snapshotDir(t, dir))
}

func TestOpenMustExistOpensNode(t *testing.T) {
	swtpmtest.Require(t)
	dir := t.TempDir()
	n := openNode(t, dir)
	node := n.Credential.Principal()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	n, err := Open(context.Background(), Options{Dir: dir, TPM: TPMSoftware, MustExist: true})
	if err != nil {
		t.Fatalf("Open with MustExist of an existing node: %v", err)
	}
	defer n.Close()
	if n.Created {
		t.Error("Open with MustExist reported Created")
	}
	if n.Credential.Principal() != node {
		t.Errorf("opened node %s, created %s", n.Credential.Principal(), node)
	}
}

func TestRecoveryHint(t *testing.T) {
	swtpmtest.Require(t)
	const customHint = "The console prompts for this key if the TPM rejects the device's keys."
	cases := []struct {
		name     string
		hint     string
		expected func(dir string) string
		absent   string
	}{
		{
			name:     "default names bt recover",
			hint:     "",
			expected: func(dir string) string { return "'bt recover --state " + dir + "'" },
		},
		{
			name:     "custom replaces default",
			hint:     customHint,
			expected: func(string) string { return customHint },
			absent:   "bt recover",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var recoveryOutput bytes.Buffer
			opts := Options{Dir: dir, TPM: TPMSoftware, RecoveryKey: &recoveryOutput, RecoveryHint: tc.hint}
			n, err := Open(context.Background(), opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			n.Close()

			output := recoveryOutput.String()
			key := recoveryKeyText(t, output)
			hint := tc.expected(dir)
			hintAt := strings.Index(output, hint)
			if hintAt < 0 {
				t.Fatalf("creation message does not contain the hint %q: %q", hint, output)
			}
			if keyAt := strings.Index(output, key); hintAt < keyAt {
				t.Errorf("hint comes before the recovery key in %q", output)
			}
			if tc.absent != "" && strings.Contains(output, tc.absent) {
				t.Errorf("creation message with a custom hint still contains %q: %q", tc.absent, output)
			}

			// The key and its hint are shown only when the node is created.
			recoveryOutput.Reset()
			n, err = Open(context.Background(), opts)
			if err != nil {
				t.Fatalf("second Open: %v", err)
			}
			n.Close()
			if recoveryOutput.Len() != 0 {
				t.Errorf("second Open wrote %q to RecoveryKey, expected nothing", recoveryOutput.String())
			}
		})
	}
}

// recoveryKeyText returns the recovery key from the message that Open
// writes to Options.RecoveryKey on creation, after checking that it parses.
func recoveryKeyText(t *testing.T, output string) string {
	t.Helper()
	var text string
	for _, line := range strings.Split(output, "\n") {
		if strings.HasPrefix(line, "    ") {
			text = strings.TrimSpace(line)
		}
	}
	if _, err := keystore.ParseRecoveryKey(text); err != nil {
		t.Fatalf("recovery key %q from the creation message %q: %v", text, output, err)
	}
	return text
}
