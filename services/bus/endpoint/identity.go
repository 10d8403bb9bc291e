package endpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Files in a node's run directory that name the node whose endpoints the
// directory contains. Tools such as bt shell read them to find the node's
// principals without its state directory. Each contains one principal as
// text and a newline.
const (
	NodeFile = "node" // the node's principal
	RootFile = "root" // the principal of the node's tree root
)

// WriteIdentity writes NodeFile and RootFile under runDir, creating the
// directory, for the node node of root's tree. Each file is replaced with
// a rename, so a reader sees the old file or the new one.
func WriteIdentity(runDir string, root, node principal.Principal) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("write the node's principals to %s: %w", runDir, err)
	}
	for _, f := range []struct {
		name string
		p    principal.Principal
	}{{NodeFile, node}, {RootFile, root}} {
		path := filepath.Join(runDir, f.name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(f.p.String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// ReadIdentity reads the tree's root and the node's principal from
// RootFile and NodeFile under runDir. The error names a missing file and
// what writes it.
func ReadIdentity(runDir string) (root, node principal.Principal, err error) {
	if node, err = readPrincipalFile(filepath.Join(runDir, NodeFile)); err != nil {
		return root, node, err
	}
	if root, err = readPrincipalFile(filepath.Join(runDir, RootFile)); err != nil {
		return root, node, err
	}
	return root, node, nil
}

func readPrincipalFile(path string) (principal.Principal, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return principal.Principal{}, fmt.Errorf("%s not found: the node's init writes it at boot; on a host-mode node pass --state DIR instead", path)
	}
	if err != nil {
		return principal.Principal{}, fmt.Errorf("read the node's principals: %w", err)
	}
	p, err := parsePrincipalFile(data)
	if err != nil {
		return principal.Principal{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// parsePrincipalFile parses the contents of NodeFile or RootFile: one
// principal, with or without a final newline.
func parsePrincipalFile(data []byte) (principal.Principal, error) {
	text := strings.TrimSuffix(string(data), "\n")
	if strings.ContainsAny(text, "\n\r") {
		return principal.Principal{}, errors.New("expected one line with a principal, found several")
	}
	return principal.Parse(text)
}
