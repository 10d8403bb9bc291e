package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/bus/rpc"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/tpm"
	"github.com/blocktree/blocktree/services/netd/grant"
)

var keysCommands = []command{
	{"create", "create a root credential, sealed by the TPM or protected by a passphrase", runKeysCreate},
	{"show", "print the principal and public identity of a credential", runKeysShow},
	{"issue", "sign a writecap that lets another principal write under a path", runKeysIssue},
	{"verify", "check that a writecap chain lets a writer write a path", runKeysVerify},
	{"recover", "unlock a credential with its recovery key and protect it again", runKeysRecover},
}

func runKeys(env *environment, args []string) error {
	return dispatch(env, "bt keys", keysCommands, args)
}

// defaultKeyDir returns the directory of the user's root credential.
func defaultKeyDir() string {
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "blocktree", "keys")
	}
	return filepath.Join(".blocktree", "keys")
}

// protectorFlags are the options that choose how a credential is protected
// (create, recover) or unlocked (issue).
type protectorFlags struct {
	tpm            string
	pcrs           string
	passphraseFile string
}

// registerSealing adds the options of commands that protect a credential anew.
func (p *protectorFlags) registerSealing(fs *flag.FlagSet) {
	fs.StringVar(&p.tpm, "tpm", "auto", "TPM to seal the credential with: auto (/dev/tpmrm0 when present, else none), none (protect it with a passphrase instead), or the path of a TPM device or swtpm socket")
	fs.StringVar(&p.pcrs, "pcrs", "7", "comma-separated PCR indexes (SHA-256 bank) that the sealed credential is bound to")
	fs.StringVar(&p.passphraseFile, "passphrase-file", "", "read the new passphrase from the first line of this file instead of the terminal (used without a TPM)")
}

// registerUnlocking adds the options of commands that unlock an existing
// credential.
func (p *protectorFlags) registerUnlocking(fs *flag.FlagSet) {
	fs.StringVar(&p.tpm, "tpm", "auto", "TPM that sealed the credential: auto (/dev/tpmrm0 for a sealed credential, none for a passphrase-protected one), none, or the path of a TPM device or swtpm socket")
	fs.StringVar(&p.passphraseFile, "passphrase-file", "", "read the passphrase from the first line of this file instead of the terminal (for a passphrase-protected credential)")
}

// openNew returns the protector for a new or recovered credential and a
// function that releases it. A passphrase typed at the terminal is requested
// twice.
func (p *protectorFlags) openNew(env *environment) (keystore.Protector, func(), error) {
	// --pcrs is checked even with --tpm none, so a typo in it is never ignored.
	pcrs, err := parsePCRs(p.pcrs)
	if err != nil {
		return nil, nil, err
	}
	path := p.tpm
	if path == "auto" {
		path = "none"
		if _, err := os.Stat(defaultTPMDevice); err == nil {
			path = defaultTPMDevice
		}
	}
	if path == "none" {
		return openPassphrase(env, p.passphraseFile, true)
	}
	t, err := tpm.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (use --tpm none for a passphrase instead)", err)
	}
	return &keystore.TPMProtector{TPM: t, PCRs: pcrs}, func() { t.Close() }, nil
}

// openExisting returns the protector that unlocks the credential in dir and
// a function that releases it. --tpm must match how dir is protected, which
// is checked before any passphrase is read.
func (p *protectorFlags) openExisting(env *environment, dir string) (keystore.Protector, func(), error) {
	method, err := keystore.Method(dir)
	if err != nil {
		return nil, nil, err
	}
	path := p.tpm
	if path == "auto" {
		path = "none"
		if method == "tpm" {
			path = defaultTPMDevice
		}
	}
	switch {
	case method == "tpm" && path == "none":
		return nil, nil, usagef("--tpm none: the credential in %s is sealed by a TPM: pass --tpm with that TPM's device or swtpm socket", dir)
	case method == "passphrase" && path != "none":
		return nil, nil, usagef("--tpm %s: the credential in %s is protected by a passphrase: pass --tpm none or leave --tpm out", p.tpm, dir)
	}
	if path == "none" {
		return openPassphrase(env, p.passphraseFile, false)
	}
	t, err := tpm.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (pass --tpm with the TPM that sealed the credential in %s, or run 'bt keys recover --dir %s' if that TPM is gone)", err, dir, dir)
	}
	// Unsealing needs no PCR list because the sealed blob records its own.
	return &keystore.TPMProtector{TPM: t}, func() { t.Close() }, nil
}

// openPassphrase reads a passphrase and returns it as a protector with a
// function that wipes it.
func openPassphrase(env *environment, file string, confirm bool) (keystore.Protector, func(), error) {
	pass, err := readPassphrase(env, file, confirm)
	if err != nil {
		return nil, nil, err
	}
	return keystore.Passphrase(pass), func() { principal.Wipe(pass) }, nil
}

func parsePCRs(list string) ([]int, error) {
	var pcrs []int
	for _, field := range strings.Split(list, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		n, err := strconv.Atoi(field)
		if err != nil || n < 0 || n > 23 {
			return nil, usagef("--pcrs: %q is not a PCR index: use numbers from 0 to 23 separated by commas", field)
		}
		pcrs = append(pcrs, n)
	}
	if len(pcrs) == 0 {
		return nil, usagef("--pcrs is empty: name at least one PCR, for example 7")
	}
	return pcrs, nil
}

// readPassphrase reads a passphrase from file, or from the terminal with the
// echo off. A new passphrase is asked twice.
func readPassphrase(env *environment, file string, confirm bool) ([]byte, error) {
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--passphrase-file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		return []byte(strings.TrimSuffix(line, "\r")), nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		return nil, usagef("no passphrase: run in a terminal, or pass --passphrase-file FILE")
	}
	defer tty.Close()
	fmt.Fprint(tty, "Passphrase: ")
	pass, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if confirm {
		fmt.Fprint(tty, "Repeat passphrase: ")
		again, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if string(again) != string(pass) {
			return nil, errors.New("the two passphrases differ: run the command again")
		}
	}
	return pass, nil
}

func runKeysCreate(env *environment, args []string) error {
	fs := newFlags(env, "bt keys create", "bt keys create [--dir DIR] [--tpm auto|none|PATH] [--pcrs LIST] [--passphrase-file FILE]")
	dir := fs.String("dir", defaultKeyDir(), "key directory to create; it must not exist or be empty")
	var pf protectorFlags
	pf.registerSealing(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	protector, release, err := pf.openNew(env)
	if err != nil {
		return fmt.Errorf("bt keys create: %w", err)
	}
	defer release()
	cred, recovery, err := keystore.Create(*dir, protector)
	if err != nil {
		return fmt.Errorf("bt keys create: %w", err)
	}

	fmt.Fprintf(env.stdout, "principal   %s\n", cred.Principal())
	fmt.Fprintf(env.stdout, "tree        %s\n", capability.RootPath(cred.Principal()))
	fmt.Fprintf(env.stdout, "directory   %s\n", *dir)
	fmt.Fprintf(env.stdout, "protection  %s\n", describe(protector))
	fmt.Fprintf(env.stdout, "\nRecovery key (shown only now; write it down and keep it away from this machine):\n\n    %s\n\n", recovery)
	fmt.Fprintf(env.stdout, "It unlocks the credential with 'bt keys recover --dir %s' if the TPM is cleared or replaced or the passphrase is lost.\n", *dir)
	return nil
}

func describe(p keystore.Protector) string {
	if t, ok := p.(*keystore.TPMProtector); ok {
		return fmt.Sprintf("sealed by the TPM to PCRs %v", t.PCRs)
	}
	return "passphrase (Argon2id)"
}

func runKeysShow(env *environment, args []string) error {
	fs := newFlags(env, "bt keys show", "bt keys show [--dir DIR | --state DIR] [--identity]")
	dir := fs.String("dir", defaultKeyDir(), "key directory")
	stateDir := fs.String("state", "", "show the principal of the node with this state directory instead of a key directory; works while the node runs")
	identity := fs.Bool("identity", false, "print only the public identity (base64), which others need to grant this principal read access")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *stateDir != "" {
		return showNode(env, *stateDir)
	}

	id, err := keystore.LoadIdentity(*dir)
	if err != nil {
		return fmt.Errorf("bt keys show: %w", err)
	}
	encoded, err := id.MarshalBinary()
	if err != nil {
		return fmt.Errorf("bt keys show: %w", err)
	}
	if *identity {
		fmt.Fprintln(env.stdout, base64.StdEncoding.EncodeToString(encoded))
		return nil
	}
	method, err := keystore.Method(*dir)
	if err != nil {
		return fmt.Errorf("bt keys show: %w", err)
	}
	fmt.Fprintf(env.stdout, "principal   %s\n", id.Principal())
	fmt.Fprintf(env.stdout, "tree        %s\n", capability.RootPath(id.Principal()))
	fmt.Fprintf(env.stdout, "protection  %s\n", method)
	fmt.Fprintf(env.stdout, "identity    %s\n", base64.StdEncoding.EncodeToString(encoded))
	return nil
}

func runKeysIssue(env *environment, args []string) error {
	fs := newFlags(env, "bt keys issue", "bt keys issue --subject PRINCIPAL --out FILE|- [--prefix PATH] [--expires DURATION|TIME] [--chain FILE] [--dir DIR | --state DIR | --run DIR] [--tpm auto|none|PATH] [--passphrase-file FILE]")
	dir := fs.String("dir", defaultKeyDir(), "key directory of the issuer")
	stateDir := fs.String("state", "", "issue as the stopped node with this state directory, whose TPM unseals its key, instead of a key directory")
	runDir := fs.String("run", "", "issue as the running node with this run directory (/run/bt on a device), through its netd, instead of a key directory")
	subject := fs.String("subject", "", "principal that receives the grant, as printed by bt keys show (required)")
	prefix := fs.String("prefix", "", "tree path under which the subject may write (default: all of the issuer's own scope)")
	expires := fs.String("expires", "720h", "when the grant ends: a duration from now (e.g. 720h) or an RFC 3339 time")
	chainFile := fs.String("chain", "", "the issuer's own writecap chain; omit when the issuer is the tree's root")
	out := fs.String("out", "", "file to write the subject's new chain to (required; must not exist), or - to print it as one line of text")
	var pf protectorFlags
	pf.registerUnlocking(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireOptions(fs, "subject", "out"); err != nil {
		return err
	}
	if *runDir != "" && (*stateDir != "" || *chainFile != "") {
		return usagef("bt keys issue: --run issues with the running node's own key and chain: leave out --state and --chain")
	}
	subjectPrincipal, err := principal.Parse(*subject)
	if err != nil {
		return usagef("bt keys issue: --subject: %v", err)
	}
	if *prefix != "" {
		if err := capability.ValidatePath(*prefix); err != nil {
			return usagef("bt keys issue: --prefix: %v", err)
		}
	}
	now := time.Now()
	expiry, err := parseExpiry(*expires, now)
	if err != nil {
		return fmt.Errorf("bt keys issue: %w", err)
	}
	if *out != "-" {
		if _, err := os.Stat(*out); err == nil {
			return usagef("bt keys issue: --out %s already exists: choose another file or remove it", *out)
		}
	}

	var newChain capability.Chain
	if *runDir != "" {
		newChain, err = issueOnline(*runDir, subjectPrincipal, *prefix, expiry)
	} else {
		newChain, err = issueOffline(env, &pf, *dir, *stateDir, *chainFile, subjectPrincipal, *prefix, now, expiry)
	}
	if err != nil {
		return fmt.Errorf("bt keys issue: %w", err)
	}
	return writeIssued(env, newChain, subjectPrincipal, *out)
}

// issueOffline signs the grant with the issuer's key from a key directory
// or a stopped node's state directory.
func issueOffline(env *environment, pf *protectorFlags, dir, stateDir, chainFile string, subject principal.Principal, prefix string, now, expiry time.Time) (capability.Chain, error) {
	chain := capability.Chain{}
	if chainFile != "" {
		var err error
		if chain, err = readChain(chainFile); err != nil {
			return nil, err
		}
	}

	// Check the grant against the issuer's public identity before unlocking
	// the credential, so bt rejects a grant before it reads a passphrase.
	issuer, err := issuerPrincipal(dir, stateDir)
	if err != nil {
		return nil, err
	}
	scope := capability.RootPath(issuer)
	if len(chain) > 0 {
		scope = chain[len(chain)-1].Prefix
	}
	if prefix == "" {
		prefix = scope
	}
	root, _ := capability.PathRoot(prefix)
	if err := chain.Verify(root, issuer, prefix, now); err != nil {
		if len(chain) == 0 && root != issuer {
			return nil, fmt.Errorf("the issuer %s is not the root of %s: pass --chain FILE with the chain that grants the issuer write access there", issuer, prefix)
		}
		return nil, fmt.Errorf("the issuer %s may not grant %s: %w", issuer, prefix, err)
	}

	cred, release, err := loadIssuer(env, pf, dir, stateDir)
	if err != nil {
		return nil, err
	}
	defer release()

	link, err := capability.Issue(cred.Signing, subject, prefix, now, expiry)
	if err != nil {
		return nil, err
	}
	return append(append(capability.Chain{}, chain...), link), nil
}

// issueOnline has the running node whose run directory is runDir sign the
// grant, through the key service of its netd.
func issueOnline(runDir string, subject principal.Principal, prefix string, expiry time.Time) (capability.Chain, error) {
	root, node, err := endpoint.ReadIdentity(runDir)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		prefix = capability.RootPath(root)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	address := endpoint.Service(root, node, grant.ServiceName).String()
	conn, err := endpoint.Dial(ctx, runDir, node, address)
	if err != nil {
		return nil, fmt.Errorf("reach the node's key service: %w", err)
	}
	defer conn.Close()
	return grant.Ask(ctx, rpc.NewClient(conn), grant.Request{Subject: subject, Prefix: prefix, Expires: expiry})
}

// writeIssued writes the new chain to out, or prints its text form when out
// is "-", and reports the grant.
func writeIssued(env *environment, chain capability.Chain, subject principal.Principal, out string) error {
	link := chain[len(chain)-1]
	end := chainEnd(chain)
	report := env.stdout
	if out == "-" {
		text, err := chain.MarshalText()
		if err != nil {
			return fmt.Errorf("bt keys issue: %w", err)
		}
		fmt.Fprintf(env.stdout, "%s\n", text)
		report = env.stderr
	} else {
		encoded, err := chain.MarshalBinary()
		if err != nil {
			return fmt.Errorf("bt keys issue: %w", err)
		}
		if err := writeNewFile(out, encoded); err != nil {
			return fmt.Errorf("bt keys issue: %w", err)
		}
	}

	where := out
	if out == "-" {
		where = "the blocktree-chain line above"
	}
	fmt.Fprintf(report, "granted %s write access under %s until %s (chain of %d in %s)\n",
		subject, link.Prefix, end.UTC().Format(time.RFC3339), len(chain), where)
	if end.Before(link.Expires) {
		fmt.Fprintf(env.stderr, "bt keys issue: note: --expires %s is after the issuer's own grant ends, so the new chain is valid only until %s\n",
			link.Expires.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
	}
	return nil
}

// chainEnd returns when chain stops being valid: the earliest expiry of its
// links, because Verify checks every link.
func chainEnd(chain capability.Chain) time.Time {
	end := chain[0].Expires
	for _, link := range chain[1:] {
		if link.Expires.Before(end) {
			end = link.Expires
		}
	}
	return end
}

// writeNewFile writes data to name, which must not exist. The exclusive
// create also protects a file that appeared after the command's first check.
func writeNewFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return usagef("--out %s already exists: choose another file or remove it", name)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func parseExpiry(value string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(value); err == nil {
		if d <= 0 {
			return time.Time{}, usagef("--expires %q: the duration must be positive", value)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return time.Time{}, usagef("--expires %q: not a duration (720h) or an RFC 3339 time (2027-01-02T15:04:05Z)", value)
	}
	if !t.After(now) {
		return time.Time{}, usagef("--expires %q is in the past: give a later time", value)
	}
	return t, nil
}

func readChain(file string) (capability.Chain, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read chain: %w", err)
	}
	chain, err := capability.ParseChainFile(data)
	if err != nil {
		return nil, fmt.Errorf("read chain %s: %w", file, err)
	}
	return chain, nil
}

func runKeysVerify(env *environment, args []string) error {
	fs := newFlags(env, "bt keys verify", "bt keys verify --chain FILE --writer PRINCIPAL --path PATH [--at TIME]")
	chainFile := fs.String("chain", "", "writecap chain file, as written by bt keys issue (required)")
	writer := fs.String("writer", "", "principal that would write (required)")
	path := fs.String("path", "", "tree path to write, /ROOT/... (required)")
	at := fs.String("at", "", "check validity at this RFC 3339 time instead of now")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireOptions(fs, "chain", "writer", "path"); err != nil {
		return err
	}
	writerPrincipal, err := principal.Parse(*writer)
	if err != nil {
		return usagef("bt keys verify: --writer: %v", err)
	}
	root, err := capability.PathRoot(*path)
	if err != nil {
		return usagef("bt keys verify: --path: %v", err)
	}
	now := time.Now()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			return usagef("bt keys verify: --at %q is not an RFC 3339 time such as 2027-01-02T15:04:05Z", *at)
		}
	}
	chain, err := readChain(*chainFile)
	if err != nil {
		return fmt.Errorf("bt keys verify: %w", err)
	}
	if err := chain.Verify(root, writerPrincipal, *path, now); err != nil {
		return fmt.Errorf("bt keys verify: invalid: %w", err)
	}
	fmt.Fprintf(env.stdout, "valid: %s may write %s (chain of %d from root %s)\n", writerPrincipal, *path, len(chain), root)
	return nil
}

func runKeysRecover(env *environment, args []string) error {
	fs := newFlags(env, "bt keys recover", "bt keys recover [--dir DIR] [--recovery-key-file FILE] [--tpm auto|none|PATH] [--pcrs LIST] [--passphrase-file FILE]")
	dir := fs.String("dir", defaultKeyDir(), "key directory to recover")
	keyFile := fs.String("recovery-key-file", "", "read the recovery key from this file instead of the terminal")
	var pf protectorFlags
	pf.registerSealing(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Reject a bad --pcrs before the user types the recovery key.
	if _, err := parsePCRs(pf.pcrs); err != nil {
		return fmt.Errorf("bt keys recover: %w", err)
	}

	key, err := readRecoveryKey(env, *keyFile)
	if err != nil {
		return fmt.Errorf("bt keys recover: %w", err)
	}
	protector, release, err := pf.openNew(env)
	if err != nil {
		return fmt.Errorf("bt keys recover: %w", err)
	}
	defer release()
	cred, err := keystore.Recover(*dir, key, protector)
	if err != nil {
		return fmt.Errorf("bt keys recover: %w", err)
	}
	fmt.Fprintf(env.stdout, "recovered %s; now %s\n", cred.Principal(), describe(protector))
	return nil
}

func readRecoveryKey(env *environment, file string) (keystore.RecoveryKey, error) {
	var text string
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return keystore.RecoveryKey{}, fmt.Errorf("--recovery-key-file: %w", err)
		}
		text = string(data)
	} else {
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return keystore.RecoveryKey{}, usagef("no recovery key: run in a terminal, or pass --recovery-key-file FILE")
		}
		defer tty.Close()
		fmt.Fprint(tty, "Recovery key: ")
		line, err := bufio.NewReader(tty).ReadString('\n')
		if err != nil {
			return keystore.RecoveryKey{}, fmt.Errorf("read recovery key: %w", err)
		}
		text = line
	}
	return keystore.ParseRecoveryKey(text)
}

// defaultTPMDevice is the kernel's TPM resource manager, which lets several
// processes share the TPM without managing its object slots themselves.
const defaultTPMDevice = "/dev/tpmrm0"
