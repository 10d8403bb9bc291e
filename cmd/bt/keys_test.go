package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/swtpm/swtpmtest"
)

// Every passphrase operation runs Argon2id with 64 MiB, so the tests create
// only the credentials they need and use generated principals as subjects.

// result is the outcome of one in-process run of bt.
type result struct {
	code   int
	stdout string
	stderr string
}

// runBT runs bt with args in-process. Standard input is empty, so a command
// that tries to prompt fails instead of waiting.
func runBT(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(&environment{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}, args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// writeFile writes text to path and returns path.
func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keyDir is a credential that bt keys create made for a test.
type keyDir struct {
	dir            string
	passphraseFile string
	principal      string
	recoveryKey    string
}

// createKeys runs bt keys create with a passphrase in a new temporary
// directory and returns what it printed.
func createKeys(t *testing.T, passphrase string) keyDir {
	t.Helper()
	base := t.TempDir()
	k := keyDir{
		dir:            filepath.Join(base, "keys"),
		passphraseFile: writeFile(t, filepath.Join(base, "passphrase"), passphrase+"\n"),
	}
	res := runBT(t, "keys", "create", "--dir", k.dir, "--tpm", "none", "--passphrase-file", k.passphraseFile)
	if res.code != 0 {
		t.Fatalf("bt keys create exited with %d: %s", res.code, res.stderr)
	}
	k.principal = outputField(t, res.stdout, "principal")
	k.recoveryKey = recoveryKeyFrom(t, res.stdout)
	return k
}

// outputField returns the value on the line of output that starts with name,
// as bt keys create and show print them.
func outputField(t *testing.T, output, name string) string {
	t.Helper()
	for line := range strings.Lines(output) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == name {
			return strings.Join(fields[1:], " ")
		}
	}
	t.Fatalf("output has no %q line:\n%s", name, output)
	return ""
}

// recoveryKeyFrom returns the first non-empty line after the "Recovery key"
// heading of bt keys create.
func recoveryKeyFrom(t *testing.T, output string) string {
	t.Helper()
	_, after, found := strings.Cut(output, "Recovery key")
	if !found {
		t.Fatalf("output has no recovery key:\n%s", output)
	}
	lines := strings.Split(after, "\n")
	for _, line := range lines[1:] {
		if key := strings.TrimSpace(line); key != "" {
			return key
		}
	}
	t.Fatalf("output has no line after the recovery key heading:\n%s", output)
	return ""
}

// newPrincipal returns the principal of a fresh signing key, for subjects and
// writers that never need to unlock a credential.
func newPrincipal(t *testing.T) string {
	t.Helper()
	key, err := principal.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return key.Principal().String()
}

// snapshot returns the names and contents of the files under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, entry os.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		relative, _ := filepath.Rel(dir, path)
		files[relative] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// compareSnapshots reports every file that was added, removed or changed.
func compareSnapshots(t *testing.T, before, after map[string]string) {
	t.Helper()
	for name, data := range before {
		got, ok := after[name]
		switch {
		case !ok:
			t.Errorf("file %s was removed", name)
		case got != data:
			t.Errorf("file %s was changed", name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("file %s was added", name)
		}
	}
}

// checkOneLine reports an error when stderr is not exactly one line.
func checkOneLine(t *testing.T, stderr string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("standard error is not one line:\n%s", stderr)
	}
}

// rfc3339 formats the time d from now as bt keys verify --at expects it.
func rfc3339(d time.Duration) string {
	return time.Now().Add(d).UTC().Format(time.RFC3339)
}

func TestKeysCreateShow(t *testing.T) {
	k := createKeys(t, "create show passphrase")

	if _, err := principal.Parse(k.principal); err != nil {
		t.Errorf("create printed principal %q that does not parse: %v", k.principal, err)
	}
	if _, err := keystore.ParseRecoveryKey(k.recoveryKey); err != nil {
		t.Errorf("create printed recovery key %q that does not parse: %v", k.recoveryKey, err)
	}

	show := runBT(t, "keys", "show", "--dir", k.dir)
	if show.code != 0 {
		t.Fatalf("show exited with %d: %s", show.code, show.stderr)
	}
	if got := outputField(t, show.stdout, "principal"); got != k.principal {
		t.Errorf("show printed principal %s, create printed %s", got, k.principal)
	}
	if got := outputField(t, show.stdout, "tree"); got != "/"+k.principal {
		t.Errorf("show printed tree %s, expected /%s", got, k.principal)
	}
	if got := outputField(t, show.stdout, "protection"); got != "passphrase" {
		t.Errorf("show printed protection %q, expected passphrase", got)
	}

	identity := runBT(t, "keys", "show", "--dir", k.dir, "--identity")
	if identity.code != 0 {
		t.Fatalf("show --identity exited with %d: %s", identity.code, identity.stderr)
	}
	if strings.Count(identity.stdout, "\n") != 1 {
		t.Errorf("show --identity printed %d lines, expected one:\n%s", strings.Count(identity.stdout, "\n"), identity.stdout)
	}
	encoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(identity.stdout))
	if err != nil {
		t.Fatalf("show --identity printed %q, which is not base64: %v", identity.stdout, err)
	}
	id, err := principal.ParseIdentity(encoded)
	if err != nil {
		t.Fatalf("show --identity printed bytes that principal.ParseIdentity rejects: %v", err)
	}
	if got := id.Principal().String(); got != k.principal {
		t.Errorf("show --identity printed the identity of %s, expected %s", got, k.principal)
	}
}

func TestKeysCreateExisting(t *testing.T) {
	k := createKeys(t, "existing passphrase")
	before := snapshot(t, filepath.Dir(k.dir))

	res := runBT(t, "keys", "create", "--dir", k.dir, "--tpm", "none", "--passphrase-file", k.passphraseFile)
	if res.code != 1 {
		t.Errorf("create on an existing key directory exited with %d, expected 1", res.code)
	}
	if !strings.Contains(res.stderr, k.dir) {
		t.Errorf("error does not name the directory %s: %s", k.dir, res.stderr)
	}
	if !strings.Contains(res.stderr, "already exists") {
		t.Errorf("error does not say that a credential already exists: %s", res.stderr)
	}
	checkOneLine(t, res.stderr)
	compareSnapshots(t, before, snapshot(t, filepath.Dir(k.dir)))
}

func TestKeysCreateNonEmptyDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "notes.txt"), "not a credential\n")
	passphraseFile := writeFile(t, filepath.Join(base, "passphrase"), "non-empty dir passphrase\n")
	before := snapshot(t, base)

	res := runBT(t, "keys", "create", "--dir", dir, "--tpm", "none", "--passphrase-file", passphraseFile)
	if res.code != 1 {
		t.Errorf("create in a non-empty directory exited with %d, expected 1", res.code)
	}
	if !strings.Contains(res.stderr, dir) {
		t.Errorf("error does not name the directory %s: %s", dir, res.stderr)
	}
	if !strings.Contains(res.stderr, "not empty") {
		t.Errorf("error does not say that the directory is not empty: %s", res.stderr)
	}
	compareSnapshots(t, before, snapshot(t, base))
}

func TestKeysCreateMissingTPM(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "keys")
	tpmPath := filepath.Join(base, "no-such-tpm")

	res := runBT(t, "keys", "create", "--dir", dir, "--tpm", tpmPath)
	if res.code != 1 {
		t.Errorf("create with a missing TPM exited with %d, expected 1", res.code)
	}
	if !strings.Contains(res.stderr, tpmPath) {
		t.Errorf("error does not name the TPM path %s: %s", tpmPath, res.stderr)
	}
	if !strings.Contains(res.stderr, "--tpm none") {
		t.Errorf("error does not suggest --tpm none: %s", res.stderr)
	}
	if strings.Count(res.stderr, "open TPM") != 1 {
		t.Errorf("error repeats its context: %s", res.stderr)
	}
	checkOneLine(t, res.stderr)
	if entries, err := os.ReadDir(base); err != nil || len(entries) != 0 {
		t.Errorf("create with a missing TPM left %d entries in %s (error %v), expected none", len(entries), base, err)
	}
}

func TestKeysIssueVerify(t *testing.T) {
	root := createKeys(t, "root passphrase 1")
	device := createKeys(t, "device passphrase 2")
	writer := newPrincipal(t)
	work := t.TempDir()
	kitchen := "/" + root.principal + "/devices/kitchen"
	netd := kitchen + "/netd"

	deviceChain := filepath.Join(work, "device.chain")
	res := runBT(t, "keys", "issue", "--dir", root.dir, "--tpm", "none", "--passphrase-file", root.passphraseFile,
		"--subject", device.principal, "--prefix", kitchen, "--expires", "48h", "--out", deviceChain)
	if res.code != 0 {
		t.Fatalf("root issue exited with %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "granted "+device.principal) {
		t.Errorf("root issue output does not name the subject %s: %s", device.principal, res.stdout)
	}
	if !strings.Contains(res.stdout, "chain of 1") {
		t.Errorf("root issue output does not give the chain length 1: %s", res.stdout)
	}

	writerChain := filepath.Join(work, "writer.chain")
	res = runBT(t, "keys", "issue", "--dir", device.dir, "--tpm", "none", "--passphrase-file", device.passphraseFile,
		"--chain", deviceChain, "--subject", writer, "--prefix", netd, "--expires", "24h", "--out", writerChain)
	if res.code != 0 {
		t.Fatalf("onward issue exited with %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "chain of 2") {
		t.Errorf("onward issue output does not give the chain length 2: %s", res.stdout)
	}
	if res.stderr != "" {
		t.Errorf("onward issue within the issuer's validity printed to standard error: %s", res.stderr)
	}

	path := netd + "/netd.conf"
	res = runBT(t, "keys", "verify", "--chain", writerChain, "--writer", writer, "--path", path)
	if res.code != 0 {
		t.Fatalf("verify of the writer's chain exited with %d: %s", res.code, res.stderr)
	}
	if !strings.HasPrefix(res.stdout, "valid: "+writer) {
		t.Errorf("verify output does not start with %q: %s", "valid: "+writer, res.stdout)
	}

	failures := []struct {
		name   string
		writer string
		path   string
		at     string
		want   string
	}{
		{"outside", writer, kitchen + "/other.conf", "", "outside"},
		{"other tree", writer, "/" + device.principal + "/netd.conf", "", "root principal"},
		{"wrong writer", device.principal, path, "", "does not end at the writer"},
		{"expired", writer, path, rfc3339(30 * time.Hour), "expired"},
		{"not yet valid", writer, path, rfc3339(-time.Hour), "not yet valid"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"keys", "verify", "--chain", writerChain, "--writer", tc.writer, "--path", tc.path}
			if tc.at != "" {
				args = append(args, "--at", tc.at)
			}
			res := runBT(t, args...)
			if res.code != 1 {
				t.Errorf("verify exited with %d, expected 1", res.code)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("error does not contain %q: %s", tc.want, res.stderr)
			}
			checkOneLine(t, res.stderr)
			if res.stdout != "" {
				t.Errorf("failed verify printed to standard output: %s", res.stdout)
			}
		})
	}

	t.Run("issue outside scope", func(t *testing.T) {
		out := filepath.Join(work, "hall.chain")
		// The passphrase file does not exist, so this fails with a file error
		// if bt reads the passphrase before it checks the grant.
		res := runBT(t, "keys", "issue", "--dir", device.dir, "--tpm", "none",
			"--passphrase-file", filepath.Join(work, "unused-passphrase"),
			"--chain", deviceChain, "--subject", writer, "--prefix", "/"+root.principal+"/devices/hall", "--out", out)
		if res.code != 1 {
			t.Errorf("issue outside the issuer's prefix exited with %d, expected 1", res.code)
		}
		if !strings.Contains(res.stderr, "may not grant") {
			t.Errorf("error does not say the issuer may not grant the prefix: %s", res.stderr)
		}
		if !strings.Contains(res.stderr, "/devices/hall") {
			t.Errorf("error does not name the requested prefix: %s", res.stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("rejected issue created %s", out)
		}
	})

	t.Run("expiry after issuer", func(t *testing.T) {
		out := filepath.Join(work, "long.chain")
		res := runBT(t, "keys", "issue", "--dir", device.dir, "--tpm", "none", "--passphrase-file", device.passphraseFile,
			"--chain", deviceChain, "--subject", writer, "--expires", "96h", "--out", out)
		if res.code != 0 {
			t.Fatalf("issue with a later expiry than the issuer's exited with %d: %s", res.code, res.stderr)
		}
		if !strings.Contains(res.stderr, "valid only until") {
			t.Errorf("issue did not note that the issuer's grant ends first: %q", res.stderr)
		}
		chain, err := os.ReadFile(deviceChain)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := capability.ParseChain(chain)
		if err != nil {
			t.Fatal(err)
		}
		issuerEnd := parsed[0].Expires.UTC().Format(time.RFC3339)
		if !strings.Contains(res.stdout, "until "+issuerEnd) {
			t.Errorf("issue output does not give the issuer's end %s as the chain's end: %s", issuerEnd, res.stdout)
		}
	})
}

func TestKeysVerifyTampered(t *testing.T) {
	root := createKeys(t, "tamper passphrase")
	writer := newPrincipal(t)
	work := t.TempDir()
	chainFile := filepath.Join(work, "writer.chain")
	path := "/" + root.principal + "/notes.txt"

	res := runBT(t, "keys", "issue", "--dir", root.dir, "--tpm", "none", "--passphrase-file", root.passphraseFile,
		"--subject", writer, "--out", chainFile)
	if res.code != 0 {
		t.Fatalf("issue exited with %d: %s", res.code, res.stderr)
	}
	original, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	res = runBT(t, "keys", "verify", "--chain", chainFile, "--writer", writer, "--path", path)
	if res.code != 0 {
		t.Fatalf("verify of the untampered chain exited with %d: %s", res.code, res.stderr)
	}

	tampered := filepath.Join(work, "tampered.chain")
	for i := range original {
		data := bytes.Clone(original)
		data[i] ^= 0xff
		writeFile(t, tampered, string(data))

		res := runBT(t, "keys", "verify", "--chain", tampered, "--writer", writer, "--path", path)
		if res.code != 1 {
			t.Errorf("verify of the chain with byte %d flipped exited with %d, expected 1", i, res.code)
		}
		if !strings.Contains(res.stderr, "decode") && !strings.Contains(res.stderr, "signature does not verify") {
			t.Errorf("error for byte %d flipped names neither a decode error nor a bad signature: %s", i, res.stderr)
		}
	}
}

func TestKeysIssueOutExists(t *testing.T) {
	k := createKeys(t, "out exists passphrase")
	out := writeFile(t, filepath.Join(t.TempDir(), "existing.chain"), "keep me\n")

	res := runBT(t, "keys", "issue", "--dir", k.dir, "--tpm", "none", "--passphrase-file", k.passphraseFile,
		"--subject", newPrincipal(t), "--out", out)
	if res.code != 2 {
		t.Errorf("issue to an existing --out exited with %d, expected 2", res.code)
	}
	if !strings.Contains(res.stderr, out) {
		t.Errorf("error does not name the file %s: %s", out, res.stderr)
	}
	if !strings.Contains(res.stderr, "already exists") {
		t.Errorf("error does not say the file already exists: %s", res.stderr)
	}
	checkOneLine(t, res.stderr)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "keep me\n" {
		t.Errorf("issue changed the existing --out file to %q", data)
	}
}

func TestKeysRecover(t *testing.T) {
	k := createKeys(t, "old passphrase 11")
	work := t.TempDir()
	newPassphrase := writeFile(t, filepath.Join(work, "new-passphrase"), "new passphrase 22\n")
	before := snapshot(t, filepath.Dir(k.dir))

	wrongKeys := []struct {
		name string
		key  string
		want string
	}{
		// The zero key has a valid checksum, so it is rejected only when it fails to unwrap.
		{"wrong key", keystore.RecoveryKey{}.String(), "wrong passphrase or recovery key"},
		{"typo", strings.Replace(k.recoveryKey, k.recoveryKey[:1], flipLetter(k.recoveryKey[:1]), 1), "typos"},
	}
	for _, tc := range wrongKeys {
		t.Run(tc.name, func(t *testing.T) {
			keyFile := writeFile(t, filepath.Join(work, "wrong-recovery-key"), tc.key+"\n")
			res := runBT(t, "keys", "recover", "--dir", k.dir, "--recovery-key-file", keyFile,
				"--tpm", "none", "--passphrase-file", newPassphrase)
			if res.code != 1 {
				t.Errorf("recover with a %s exited with %d, expected 1", tc.name, res.code)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("error does not contain %q: %s", tc.want, res.stderr)
			}
			checkOneLine(t, res.stderr)
			compareSnapshots(t, before, snapshot(t, filepath.Dir(k.dir)))
		})
	}

	keyFile := writeFile(t, filepath.Join(work, "recovery-key"), k.recoveryKey+"\n")
	res := runBT(t, "keys", "recover", "--dir", k.dir, "--recovery-key-file", keyFile,
		"--tpm", "none", "--passphrase-file", newPassphrase)
	if res.code != 0 {
		t.Fatalf("recover exited with %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "recovered "+k.principal) {
		t.Errorf("recover output does not name %s: %s", k.principal, res.stdout)
	}

	res = runBT(t, "keys", "issue", "--dir", k.dir, "--tpm", "none", "--passphrase-file", newPassphrase,
		"--subject", newPrincipal(t), "--out", filepath.Join(work, "new.chain"))
	if res.code != 0 {
		t.Errorf("issue with the new passphrase exited with %d: %s", res.code, res.stderr)
	}

	res = runBT(t, "keys", "issue", "--dir", k.dir, "--tpm", "none", "--passphrase-file", k.passphraseFile,
		"--subject", newPrincipal(t), "--out", filepath.Join(work, "old.chain"))
	if res.code != 1 {
		t.Errorf("issue with the replaced passphrase exited with %d, expected 1", res.code)
	}
	if !strings.Contains(res.stderr, "wrong passphrase") {
		t.Errorf("error does not say the passphrase is wrong: %s", res.stderr)
	}
}

// flipLetter returns a different base32 letter than s, so a recovery key
// with it substituted fails its checksum.
func flipLetter(s string) string {
	if s == "A" {
		return "B"
	}
	return "A"
}

func TestKeysTPM(t *testing.T) {
	device := swtpmtest.Start(t)
	socket := device.SocketPath()
	work := t.TempDir()
	dir := filepath.Join(work, "keys")

	res := runBT(t, "keys", "create", "--dir", dir, "--tpm", socket)
	if res.code != 0 {
		t.Fatalf("create with swtpm exited with %d: %s", res.code, res.stderr)
	}
	if got := outputField(t, res.stdout, "protection"); !strings.HasPrefix(got, "sealed by the TPM") {
		t.Errorf("create printed protection %q, expected a TPM seal", got)
	}
	root := outputField(t, res.stdout, "principal")

	show := runBT(t, "keys", "show", "--dir", dir)
	if got := outputField(t, show.stdout, "protection"); got != "tpm" {
		t.Errorf("show printed protection %q, expected tpm", got)
	}

	writer := newPrincipal(t)
	chainFile := filepath.Join(work, "writer.chain")
	res = runBT(t, "keys", "issue", "--dir", dir, "--tpm", socket, "--subject", writer, "--out", chainFile)
	if res.code != 0 {
		t.Fatalf("issue with swtpm exited with %d: %s", res.code, res.stderr)
	}

	res = runBT(t, "keys", "verify", "--chain", chainFile, "--writer", writer, "--path", "/"+root+"/etc/netd.conf")
	if res.code != 0 {
		t.Errorf("verify of the TPM-issued chain exited with %d: %s", res.code, res.stderr)
	}

	res = runBT(t, "keys", "issue", "--dir", dir, "--tpm", "none", "--subject", writer, "--out", filepath.Join(work, "none.chain"))
	if res.code != 2 {
		t.Errorf("issue with --tpm none on a sealed credential exited with %d, expected 2", res.code)
	}
	if !strings.Contains(res.stderr, "sealed by a TPM") {
		t.Errorf("error does not say the credential is sealed by a TPM: %s", res.stderr)
	}
	checkOneLine(t, res.stderr)
}

func TestKeysUsageErrors(t *testing.T) {
	valid := newPrincipal(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown subcommand", []string{"frob"}, `"frob"`},
		{"subject invalid", []string{"issue", "--subject", "btnope", "--out", "x.chain"}, `"btnope"`},
		{"prefix relative", []string{"issue", "--subject", valid, "--prefix", "devices/kitchen", "--out", "x.chain"}, `"devices/kitchen"`},
		{"prefix dot-dot", []string{"issue", "--subject", valid, "--prefix", "/" + valid + "/a/../b", "--out", "x.chain"}, `".."`},
		{"expires word", []string{"issue", "--subject", valid, "--expires", "soon", "--out", "x.chain"}, `"soon"`},
		{"expires negative", []string{"issue", "--subject", valid, "--expires", "-5h", "--out", "x.chain"}, `"-5h"`},
		{"expires past", []string{"issue", "--subject", valid, "--expires", "2020-01-02T03:04:05Z", "--out", "x.chain"}, `"2020-01-02T03:04:05Z"`},
		{"subject missing", []string{"issue", "--out", "x.chain"}, "--subject"},
		{"out missing", []string{"issue", "--subject", valid}, "--out"},
		{"pcrs too high", []string{"create", "--tpm", "none", "--pcrs", "24"}, `"24"`},
		{"pcrs negative", []string{"create", "--tpm", "none", "--pcrs", "7,-1"}, `"-1"`},
		{"pcrs word", []string{"create", "--tpm", "none", "--pcrs", "7,x"}, `"x"`},
		{"pcrs empty", []string{"create", "--tpm", "none", "--pcrs", ""}, "--pcrs is empty"},
		{"pcrs commas", []string{"create", "--tpm", "none", "--pcrs", " , "}, "--pcrs is empty"},
		{"pcrs recover", []string{"recover", "--tpm", "none", "--pcrs", "30", "--recovery-key-file", "no-such-file"}, `"30"`},
		{"verify path missing", []string{"verify", "--chain", "x.chain", "--writer", valid}, "--path"},
		{"verify writer invalid", []string{"verify", "--chain", "x.chain", "--writer", "alice", "--path", "/" + valid}, `"alice"`},
		{"verify path relative", []string{"verify", "--chain", "x.chain", "--writer", valid, "--path", "notes.txt"}, `"notes.txt"`},
		{"verify at invalid", []string{"verify", "--chain", "x.chain", "--writer", valid, "--path", "/" + valid, "--at", "tomorrow"}, `"tomorrow"`},
		{"show positional", []string{"show", "extra"}, `"extra"`},
		{"create positional", []string{"create", "--tpm", "none", "extra"}, `"extra"`},
		{"verify positional", []string{"verify", "x.chain"}, `"x.chain"`},
		{"unknown option", []string{"issue", "--bogus"}, "bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			t.Chdir(work)
			args := append([]string{"keys", tc.args[0]}, tc.args[1:]...)
			if tc.args[0] != "frob" && tc.args[0] != "verify" {
				args = append(args, "--dir", filepath.Join(work, "keys"))
			}
			if tc.args[0] == "create" || tc.args[0] == "recover" {
				args = append(args, "--passphrase-file", filepath.Join(work, "no-such-passphrase"))
			}

			res := runBT(t, args...)
			if res.code != 2 {
				t.Errorf("bt %s exited with %d, expected 2 (stderr: %s)", strings.Join(args, " "), res.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("error does not name %s: %s", tc.want, res.stderr)
			}
			checkOneLine(t, res.stderr)
			if res.stdout != "" {
				t.Errorf("usage error printed to standard output: %s", res.stdout)
			}
			if entries, err := os.ReadDir(work); err != nil || len(entries) != 0 {
				t.Errorf("usage error left %d entries in the working directory (error %v), expected none", len(entries), err)
			}
		})
	}
}

func TestKeysMissingCommand(t *testing.T) {
	res := runBT(t, "keys")
	if res.code != 2 {
		t.Errorf("bt keys without a subcommand exited with %d, expected 2", res.code)
	}
	if res.stderr != "bt keys: missing command\n" {
		t.Errorf("bt keys without a subcommand printed error %q", res.stderr)
	}
	if !strings.Contains(res.stdout, "Usage: bt keys COMMAND") {
		t.Errorf("bt keys without a subcommand did not print the usage: %s", res.stdout)
	}
}

func TestKeysHelp(t *testing.T) {
	cases := []struct {
		subcommand string
		option     string
	}{
		{"create", "--pcrs"},
		{"show", "--identity"},
		{"issue", "--subject"},
		{"verify", "--writer"},
		{"recover", "--recovery-key-file"},
	}
	for _, tc := range cases {
		t.Run(tc.subcommand, func(t *testing.T) {
			res := runBT(t, "keys", tc.subcommand, "--help")
			if res.code != 0 {
				t.Errorf("--help exited with %d, expected 0", res.code)
			}
			if !strings.HasPrefix(res.stdout, "Usage: bt keys "+tc.subcommand) {
				t.Errorf("--help output does not start with the usage line: %s", res.stdout)
			}
			if !strings.Contains(res.stdout, "\n  "+tc.option+" ") && !strings.Contains(res.stdout, "\n  "+tc.option+"\n") {
				t.Errorf("--help output does not list %s: %s", tc.option, res.stdout)
			}
			if res.stderr != "" {
				t.Errorf("--help printed to standard error: %s", res.stderr)
			}
		})
	}

	res := runBT(t, "keys", "--help")
	if res.code != 0 {
		t.Errorf("bt keys --help exited with %d, expected 0", res.code)
	}
	for _, tc := range cases {
		if !strings.Contains(res.stdout, "\n  "+tc.subcommand+" ") {
			t.Errorf("bt keys --help does not list %s: %s", tc.subcommand, res.stdout)
		}
	}
}
