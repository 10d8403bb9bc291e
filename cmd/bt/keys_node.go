package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/node/state"
)

// showNode prints the principal and tree of the node with state directory
// stateDir, read from its tree file, so it works while the node runs.
func showNode(env *environment, stateDir string) error {
	root, node, err := state.ReadPrincipals(stateDir)
	if err != nil {
		return fmt.Errorf("bt keys show: %w", err)
	}
	fmt.Fprintf(env.stdout, "principal   %s\n", node)
	fmt.Fprintf(env.stdout, "tree        %s\n", capability.RootPath(root))
	return nil
}

// issuerPrincipal returns the principal of the issuer: the node of
// stateDir when it is set, else the credential in the key directory dir.
func issuerPrincipal(dir, stateDir string) (principal.Principal, error) {
	if stateDir != "" {
		_, node, err := state.ReadPrincipals(stateDir)
		return node, err
	}
	id, err := keystore.LoadIdentity(dir)
	if err != nil {
		return principal.Principal{}, err
	}
	return id.Principal(), nil
}

// loadIssuer unlocks the issuer's credential: the node's, unsealed by its
// TPM, when stateDir is set, else the one in the key directory dir. The
// returned function releases what it opened.
func loadIssuer(env *environment, pf *protectorFlags, dir, stateDir string) (*principal.Credential, func(), error) {
	if stateDir != "" {
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		node, err := state.Open(context.Background(), state.Options{Dir: stateDir, Logger: logger, MustExist: true})
		if err != nil {
			return nil, nil, err
		}
		return node.Credential, func() { node.Close() }, nil
	}
	protector, release, err := pf.openExisting(env, dir)
	if err != nil {
		return nil, nil, err
	}
	cred, err := keystore.Load(dir, protector)
	if err != nil {
		release()
		return nil, nil, err
	}
	return cred, release, nil
}
