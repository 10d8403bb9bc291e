package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

const (
	counterOffsetFile    = "counter-offset"
	counterOffsetContext = "blocktree counter offset v1"
)

// Recover unlocks the node's credential with its recovery key, seals it
// again with the TPM as it is now, and returns the opened node. Use it when
// the TPM refuses to unseal: the boot chain changed, the TPM was cleared or
// replaced, or the software TPM's state was lost. Only the sealed copy of
// the credential is replaced; nothing else in the state directory changes.
func Recover(ctx context.Context, opts Options, key keystore.RecoveryKey) (*Node, error) {
	opts, dir, err := checkOptions(opts)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("recover node: %s: %w (nothing to recover)", dir, err)
	}
	return open(ctx, dir, opts, true, func(n *Node, keys string) (*principal.Credential, error) {
		cred, err := keystore.Recover(keys, key, n.protector(opts))
		if err != nil {
			return nil, fmt.Errorf("recover node: %w", err)
		}
		n.logger.Warn("node keys recovered with the recovery key and sealed again to the current TPM", "node", cred.Principal())
		return cred, nil
	})
}

// CounterOffset returns the value the node adds to the TPM's rollback counter. It is
// zero until a recovery moves the node to a TPM whose counter is behind the
// one the node's checkpoints recorded (a replaced or cleared TPM).
func (n *Node) CounterOffset() uint64 { return n.counterOffset }

// SetCounterOffset records a new counter offset, signed by the node.
func (n *Node) SetCounterOffset(offset uint64) error {
	message := binary.BigEndian.AppendUint64(nil, offset)
	sig, err := n.Credential.Signing.Sign(counterOffsetContext, message)
	if err != nil {
		return err
	}
	path := filepath.Join(n.Dir, counterOffsetFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(message, sig...), 0o600); err != nil {
		return fmt.Errorf("write counter offset: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write counter offset: %w", err)
	}
	if err := syncDir(n.Dir); err != nil {
		return err
	}
	n.counterOffset = offset
	n.logger.Info("rollback counter offset set", "node", n.Credential.Principal(), "offset", offset)
	return nil
}

// readCounterOffset loads and checks the counter offset file.
func (n *Node) readCounterOffset() error {
	data, err := os.ReadFile(filepath.Join(n.Dir, counterOffsetFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read counter offset: %w", err)
	}
	if len(data) != 8+principal.SignatureSize {
		return fmt.Errorf("counter offset file of %d bytes: expected %d", len(data), 8+principal.SignatureSize)
	}
	if err := n.Credential.Signing.Public().Verify(counterOffsetContext, data[:8], data[8:]); err != nil {
		return fmt.Errorf("counter offset file: %w", err)
	}
	n.counterOffset = binary.BigEndian.Uint64(data[:8])
	return nil
}
