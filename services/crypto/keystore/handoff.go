package keystore

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// handOffSeals make a handed-off credential immutable: its bytes, its size
// and its seals cannot change once ShareCredential returns.
const handOffSeals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// ShareCredential writes cred's secret into a sealed, unnamed memory file
// (memfd) for child processes to inherit, so that a service can use the
// node's keys without unsealing them with the TPM again. The file has no
// path and lives only while a process holds it open. It is created
// close-on-exec, so it reaches only the children that receive it on
// purpose (exec.Cmd.ExtraFiles). The caller closes it when no child needs
// it any more.
func ShareCredential(cred *principal.Credential) (*os.File, error) {
	fd, err := unix.MemfdCreate("blocktree-credential", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("share the credential of %s: memfd_create: %w", cred.Principal(), err)
	}
	f := os.NewFile(uintptr(fd), "blocktree-credential")

	secret := cred.Secret()
	defer principal.Wipe(secret)
	if _, err := f.WriteAt(secret, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("share the credential of %s: write: %w", cred.Principal(), err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, handOffSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("share the credential of %s: add seals: %w", cred.Principal(), err)
	}
	return f, nil
}

// ReceiveCredential reads a credential from a file made by ShareCredential
// and closes the file. It reads at offset 0 without moving the shared file
// offset, so the same file can be handed to a restarted child again. It
// rejects a file that is not sealed against writes, so the bytes it parsed
// are the bytes the parent wrote.
func ReceiveCredential(f *os.File) (*principal.Credential, error) {
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("receive a credential from descriptor %d: read its seals (is it a memfd from the parent?): %w", f.Fd(), err)
	}
	if seals&handOffSeals != handOffSeals {
		return nil, fmt.Errorf("receive a credential from descriptor %d: seals %#x, expected at least %#x: the parent must make it with ShareCredential", f.Fd(), seals, handOffSeals)
	}

	secret := make([]byte, principal.SecretSize+1)
	defer principal.Wipe(secret)
	n, err := f.ReadAt(secret, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("receive a credential from descriptor %d: read: %w", f.Fd(), err)
	}
	if n != principal.SecretSize {
		return nil, fmt.Errorf("receive a credential from descriptor %d: %d bytes, expected %d", f.Fd(), n, principal.SecretSize)
	}
	cred, err := principal.ParseCredential(secret[:n])
	if err != nil {
		return nil, fmt.Errorf("receive a credential from descriptor %d: %w", f.Fd(), err)
	}
	return cred, nil
}
