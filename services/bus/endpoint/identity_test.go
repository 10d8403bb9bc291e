package endpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentityRoundTrip(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	root, node := newCredential(t).Principal(), newCredential(t).Principal()
	if err := WriteIdentity(run, root, node); err != nil {
		t.Fatal(err)
	}
	gotRoot, gotNode, err := ReadIdentity(run)
	if err != nil {
		t.Fatal(err)
	}
	if gotRoot != root {
		t.Errorf("root = %s, expected %s", gotRoot, root)
	}
	if gotNode != node {
		t.Errorf("node = %s, expected %s", gotNode, node)
	}
}

func TestIdentityMissingFile(t *testing.T) {
	run := t.TempDir()
	_, _, err := ReadIdentity(run)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(run, NodeFile)+" not found") {
		t.Errorf("ReadIdentity of an empty directory = %v, expected an error naming %s", err, NodeFile)
	}

	node := newCredential(t).Principal()
	if err := os.WriteFile(filepath.Join(run, NodeFile), []byte(node.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = ReadIdentity(run)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(run, RootFile)+" not found") {
		t.Errorf("ReadIdentity without a root file = %v, expected an error naming %s", err, RootFile)
	}
}

func TestIdentityInvalidFile(t *testing.T) {
	run := t.TempDir()
	if err := os.WriteFile(filepath.Join(run, NodeFile), []byte("not a principal\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := ReadIdentity(run)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(run, NodeFile)+":") {
		t.Errorf("ReadIdentity of an invalid node file = %v, expected an error naming the file", err)
	}
}
