package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/swtpm/swtpmtest"
	"github.com/blocktree/blocktree/services/crypto/tpm"
)

// snapshot returns every file under dir with its contents, to show that an
// operation changed nothing on disk.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		files[path] = string(data)
		return err
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return files
}

func assertUnchanged(t *testing.T, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("key directory had %d files, now %d", len(before), len(after))
	}
	for name, data := range before {
		if after[name] != data {
			t.Errorf("%s changed", name)
		}
	}
}

var testPassphrase = Passphrase("correct horse battery staple")

func TestPassphraseCreateLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	cred, recovery, err := Create(dir, testPassphrase)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if recovery.String() == "" {
		t.Fatal("Create returned an empty recovery key")
	}

	loaded, err := Load(dir, testPassphrase)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if loaded.Principal() != cred.Principal() {
		t.Errorf("loaded principal %s, created %s", loaded.Principal(), cred.Principal())
	}
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	if id.Principal() != cred.Principal() {
		t.Errorf("identity principal %s, created %s", id.Principal(), cred.Principal())
	}
	method, err := Method(dir)
	if err != nil || method != "passphrase" {
		t.Errorf("Method = %q, %v; expected passphrase", method, err)
	}
}

func TestFilesHoldNoSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	cred, _, err := Create(dir, testPassphrase)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for name, data := range snapshot(t, dir) {
		if bytes.Contains([]byte(data), cred.Signing.Bytes()) || bytes.Contains([]byte(data), cred.Encryption.Bytes()) {
			t.Errorf("%s contains a private key in the clear", name)
		}
		if strings.Contains(data, string(testPassphrase)) {
			t.Errorf("%s contains the passphrase", name)
		}
	}
}

func TestWrongPassphraseChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, _, err := Create(dir, testPassphrase); err != nil {
		t.Fatalf("Create: %v", err)
	}
	before := snapshot(t, dir)

	_, err := Load(dir, Passphrase("not the passphrase at all"))
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Load with a wrong passphrase: %v, expected ErrWrongKey", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))
}

func TestShortPassphraseRejected(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, _, err := Create(dir, Passphrase("short")); err == nil {
		t.Fatal("Create accepted a 5-character passphrase")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("failed Create left %s behind: %v", dir, err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, _, err := Create(dir, testPassphrase); err != nil {
		t.Fatalf("Create: %v", err)
	}
	before := snapshot(t, dir)
	_, _, err := Create(dir, testPassphrase)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, expected ErrExists", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))
}

func TestCreateRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Create(dir, testPassphrase); err == nil {
		t.Fatal("Create used a non-empty directory")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory has %d entries after a failed Create, expected 1", len(entries))
	}
}

func TestLoadMissingDirectory(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none"), testPassphrase)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of a missing directory: %v, expected ErrNotFound", err)
	}
}

func TestRecoverWithRecoveryKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	cred, recovery, err := Create(dir, testPassphrase)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	key, err := ParseRecoveryKey(recovery.String())
	if err != nil {
		t.Fatalf("ParseRecoveryKey(%q): %v", recovery, err)
	}

	newPassphrase := Passphrase("a different long passphrase")
	recovered, err := Recover(dir, key, newPassphrase)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if recovered.Principal() != cred.Principal() {
		t.Errorf("recovered %s, created %s", recovered.Principal(), cred.Principal())
	}
	if _, err := Load(dir, newPassphrase); err != nil {
		t.Errorf("Load with the new passphrase after recovery: %v", err)
	}
	if _, err := Load(dir, testPassphrase); !errors.Is(err, ErrWrongKey) {
		t.Errorf("Load with the old passphrase after recovery: %v, expected ErrWrongKey", err)
	}
}

func TestRecoverWrongKeyChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, _, err := Create(dir, testPassphrase); err != nil {
		t.Fatalf("Create: %v", err)
	}
	before := snapshot(t, dir)
	other, err := newRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(dir, other, testPassphrase); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Recover with another key: %v, expected ErrWrongKey", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))
}

func TestRecoveryKeyText(t *testing.T) {
	key, err := newRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	text := key.String()

	lower := strings.ToLower(strings.ReplaceAll(text, "-", " "))
	parsed, err := ParseRecoveryKey(lower)
	if err != nil {
		t.Fatalf("ParseRecoveryKey(%q): %v", lower, err)
	}
	if parsed != key {
		t.Error("lower-case key with spaces parsed to a different key")
	}

	typo := []byte(text)
	if typo[0] == 'A' {
		typo[0] = 'B'
	} else {
		typo[0] = 'A'
	}
	if _, err := ParseRecoveryKey(string(typo)); !errors.Is(err, ErrRecoveryKeyTypo) {
		t.Errorf("key with one changed character: %v, expected ErrRecoveryKeyTypo", err)
	}
	if _, err := ParseRecoveryKey(text[:20]); err == nil {
		t.Error("truncated key parsed")
	}
	if _, err := ParseRecoveryKey(text + "-0"); err == nil {
		t.Error("key with a bad character parsed")
	}
}

func TestWrappedFileFromOtherDirectoryRejected(t *testing.T) {
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "a"), filepath.Join(base, "b")
	if _, _, err := Create(dirA, testPassphrase); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Create(dirB, testPassphrase); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dirA, "protected.passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "protected.passphrase"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dirB, testPassphrase); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Load with another directory's wrapped secret: %v, expected ErrWrongKey", err)
	}
}

// tpmDevice starts swtpm and opens it; the TPM is closed when the test ends.
func tpmDevice(t *testing.T) (*swtpmtest.Device, *tpm.TPM) {
	d := swtpmtest.Start(t)
	tp, err := tpm.Open(d.SocketPath())
	if err != nil {
		t.Fatalf("open TPM: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	return d, tp
}

func TestTPMCreateLoadAfterReboot(t *testing.T) {
	d, tp := tpmDevice(t)
	dir := filepath.Join(t.TempDir(), "keys")
	cred, _, err := Create(dir, &TPMProtector{TPM: tp, PCRs: []int{7, 11}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	d.Reboot()
	tp, err = tpm.Open(d.SocketPath())
	if err != nil {
		t.Fatalf("open TPM after reboot: %v", err)
	}
	defer tp.Close()
	loaded, err := Load(dir, &TPMProtector{TPM: tp, PCRs: []int{7, 11}})
	if err != nil {
		t.Fatalf("Load after reboot: %v", err)
	}
	if loaded.Principal() != cred.Principal() {
		t.Errorf("loaded %s, created %s", loaded.Principal(), cred.Principal())
	}
}

func TestTPMChangedPCRThenRecover(t *testing.T) {
	_, tp := tpmDevice(t)
	dir := filepath.Join(t.TempDir(), "keys")
	protector := &TPMProtector{TPM: tp, PCRs: []int{7}}
	cred, recovery, err := Create(dir, protector)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	before := snapshot(t, dir)

	if err := tp.ExtendPCR(7, []byte("a new boot loader")); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}
	_, err = Load(dir, protector)
	var mismatch *tpm.PCRMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Load after a PCR change: %v, expected *tpm.PCRMismatchError", err)
	}
	if len(mismatch.PCRs) != 1 || mismatch.PCRs[0] != 7 {
		t.Errorf("mismatch names PCRs %v, expected [7]", mismatch.PCRs)
	}
	assertUnchanged(t, before, snapshot(t, dir))

	recovered, err := Recover(dir, recovery, protector)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if recovered.Principal() != cred.Principal() {
		t.Errorf("recovered %s, created %s", recovered.Principal(), cred.Principal())
	}
	if _, err := Load(dir, protector); err != nil {
		t.Errorf("Load after recovery, sealed to the new PCR value: %v", err)
	}
}

func TestRecoverAfterTPMClear(t *testing.T) {
	_, tp := tpmDevice(t)
	dir := filepath.Join(t.TempDir(), "keys")
	protector := &TPMProtector{TPM: tp, PCRs: []int{7}}
	cred, recovery, err := Create(dir, protector)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	if err := tp.Clear(); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	before := snapshot(t, dir)
	if _, err := Load(dir, protector); !errors.Is(err, tpm.ErrSRKChanged) {
		t.Fatalf("Load after TPM clear: %v, expected tpm.ErrSRKChanged", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))

	recovered, err := Recover(dir, recovery, protector)
	if err != nil {
		t.Fatalf("Recover after clear: %v", err)
	}
	if recovered.Principal() != cred.Principal() {
		t.Errorf("recovered %s, created %s", recovered.Principal(), cred.Principal())
	}
	loaded, err := Load(dir, protector)
	if err != nil {
		t.Fatalf("Load after recovery: %v", err)
	}
	if !bytes.Equal(loaded.Secret(), cred.Secret()) {
		t.Error("credential after recovery differs from the one created")
	}
}

func TestSealedBlobFromOtherDirectoryRejected(t *testing.T) {
	_, tp := tpmDevice(t)
	base := t.TempDir()
	protector := &TPMProtector{TPM: tp, PCRs: []int{7}}
	dirA, dirB := filepath.Join(base, "a"), filepath.Join(base, "b")
	if _, _, err := Create(dirA, protector); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Create(dirB, protector); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dirA, "protected.tpm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "protected.tpm"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dirB, protector); err == nil || !strings.Contains(err.Error(), "does not match identity") {
		t.Fatalf("Load with another directory's sealed blob: %v, expected an identity mismatch", err)
	}
}

func FuzzParseWrappedSecret(f *testing.F) {
	owner := principal.Principal{1}
	recovery, _ := wrap(methodRecoveryKey, make([]byte, 32), []byte("secret"), owner)
	f.Add(recovery)
	w := &wrappedSecret{method: methodPassphrase, time: 1, memory: 64, threads: 1, salt: make([]byte, saltSize), nonce: make([]byte, 24), ciphertext: make([]byte, 20)}
	f.Add(w.marshal())
	f.Add([]byte{})
	f.Add(recovery[:len(recovery)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := parseWrappedSecret(data)
		if err != nil {
			return
		}
		if !bytes.Equal(w.marshal(), data) {
			t.Fatalf("re-encoding differs from accepted input")
		}
	})
}

func FuzzParseRecoveryKey(f *testing.F) {
	key, _ := newRecoveryKey()
	f.Add(key.String())
	f.Add(strings.ToLower(key.String()))
	f.Add("")
	f.Add("AAAAA-AAAAA")
	f.Fuzz(func(t *testing.T, text string) {
		parsed, err := ParseRecoveryKey(text)
		if err != nil {
			return
		}
		again, err := ParseRecoveryKey(parsed.String())
		if err != nil || again != parsed {
			t.Fatalf("printed form of an accepted key does not parse back: %v", err)
		}
	})
}
