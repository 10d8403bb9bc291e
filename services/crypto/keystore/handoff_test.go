package keystore

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// shareNewCredential shares a new credential and closes the file when the
// test ends.
func shareNewCredential(t *testing.T) (*principal.Credential, *os.File) {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	f, err := ShareCredential(cred)
	if err != nil {
		t.Fatalf("ShareCredential: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return cred, f
}

func TestShareCredentialRoundTrip(t *testing.T) {
	cred, f := shareNewCredential(t)

	// Two receivers, as after a restart of the child, each get the same
	// credential: a receive does not consume the file.
	for i := range 2 {
		dup, err := unix.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReceiveCredential(os.NewFile(uintptr(dup), "dup"))
		if err != nil {
			t.Fatalf("receive %d: %v", i, err)
		}
		if got.Principal() != cred.Principal() {
			t.Errorf("receive %d: principal %s, expected %s", i, got.Principal(), cred.Principal())
		}
		if !got.Encryption.Public().Equal(cred.Encryption.Public()) {
			t.Errorf("receive %d: the encryption key differs", i)
		}
	}
}

func TestSharedCredentialIsSealed(t *testing.T) {
	_, f := shareNewCredential(t)

	if _, err := f.WriteAt([]byte{1}, 0); err == nil {
		t.Errorf("a write to the shared credential succeeded")
	}
	if err := f.Truncate(0); err == nil {
		t.Errorf("truncating the shared credential succeeded")
	}
	if info, err := f.Stat(); err != nil || info.Size() != principal.SecretSize {
		t.Errorf("shared credential: size %v, error %v, expected %d bytes", info.Size(), err, principal.SecretSize)
	}
	if flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("shared credential: descriptor flags %#x, error %v, expected FD_CLOEXEC", flags, err)
	}
}

func TestReceiveCredentialRejects(t *testing.T) {
	unsealed := func(t *testing.T, data []byte) *os.File {
		fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "test")
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		return f
	}
	sealed := func(t *testing.T, data []byte) *os.File {
		f := unsealed(t, data)
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, handOffSeals); err != nil {
			t.Fatal(err)
		}
		return f
	}
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	secret := cred.Secret()

	regular, err := os.CreateTemp(t.TempDir(), "credential")
	if err != nil {
		t.Fatal(err)
	}
	regular.Write(secret)

	cases := []struct {
		name string
		file *os.File
		want string
	}{
		{"regular file", regular, "read its seals"},
		{"unsealed memfd", unsealed(t, secret), "seals"},
		{"short", sealed(t, secret[:10]), "10 bytes"},
		{"long", sealed(t, append(secret, 0)), "bytes, expected"},
		{"zero scalars", sealed(t, make([]byte, principal.SecretSize)), "parse"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReceiveCredential(c.file)
			if err == nil {
				t.Fatalf("ReceiveCredential accepted a %s", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

// TestShareCredentialWithChild hands the credential to a child process the
// way PID 1 hands it to a service, through exec.Cmd.ExtraFiles.
func TestShareCredentialWithChild(t *testing.T) {
	if os.Getenv("BT_TEST_RECEIVE_CREDENTIAL") == "1" {
		got, err := ReceiveCredential(os.NewFile(3, "credential"))
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		os.Stdout.WriteString(got.Principal().String() + "\n")
		return
	}
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	f, err := ShareCredential(cred)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestShareCredentialWithChild$")
	cmd.Env = append(os.Environ(), "BT_TEST_RECEIVE_CREDENTIAL=1")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), cred.Principal().String()) {
		t.Errorf("child printed %q, expected the principal %s", out, cred.Principal())
	}
}
