package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/swtpm"
	"github.com/blocktree/blocktree/services/crypto/tpm"
)

// TPM choices for Options.TPM.
const (
	TPMAuto     = "auto"     // the hardware TPM when usable, else software
	TPMSoftware = "software" // always swtpm under the state directory
	softwareTPM = "software"

	// HardwareTPM is the kernel's TPM resource manager.
	HardwareTPM = "/dev/tpmrm0"
)

// DefaultPCRs are the PCRs a host-mode node seals its keys to. PCR 7 holds
// the Secure Boot policy on UEFI machines: it changes when someone boots
// another loader, and it rarely changes on updates of the kernel.
var DefaultPCRs = []int{7}

// Options configures Open.
type Options struct {
	Dir    string // the state directory; it must exist
	TPM    string // TPMAuto, TPMSoftware or a TPM device or socket path
	PCRs   []int  // PCRs to seal to when creating; nil means DefaultPCRs
	Logger *slog.Logger

	// RecoveryKey receives the recovery key, once, when the node is created.
	RecoveryKey io.Writer
	// RecoveryHint is the sentence written after the recovery key to explain
	// when and how to use it. Empty means the host-mode hint, which names
	// 'bt recover'.
	RecoveryHint string

	// MustExist makes Open return an error instead of creating a node when
	// the state directory contains none. Processes that serve a node created
	// by another process set it, such as the appliance's storage service.
	MustExist bool

	// Credential, when set, is the node's credential as another process
	// already unsealed it (see keystore.ShareCredential), and Open uses it
	// instead of unsealing the keys with the TPM again. It must match the
	// identity stored in the state directory. Open still opens the TPM,
	// which holds the rollback counter.
	Credential *principal.Credential
}

// Node is an open state directory.
type Node struct {
	Dir        string // DIR/node
	Credential *principal.Credential
	Tree       *Tree
	TPM        *tpm.TPM
	Created    bool // this start created the node

	logger *slog.Logger
	swtpm  *swtpm.Process
	lock   *os.File

	counterOffset uint64
}

// ErrLocked is returned when another process has the state directory open.
var ErrLocked = errors.New("state directory is in use by another node process")

// IsNodeDir reports whether path holds the files of a node, as DIR/node of
// a state directory DIR does: a user who passes DIR/node as the state
// directory gets an error that names DIR instead of a second node.
func IsNodeDir(path string) bool {
	for _, name := range []string{"lock", "tpm-device"} {
		if _, err := os.Stat(filepath.Join(path, name)); err != nil {
			return false
		}
	}
	return true
}

// Paths inside DIR/node.
func (n *Node) JournalDir() string     { return filepath.Join(n.Dir, "journal") }
func (n *Node) BlocksDir() string      { return filepath.Join(n.Dir, "blocks") }
func (n *Node) CheckpointPath() string { return filepath.Join(n.Dir, "checkpoint") }

// Open opens the node state under opts.Dir, creating it on first start.
func Open(ctx context.Context, opts Options) (*Node, error) {
	opts, dir, err := checkOptions(opts)
	if err != nil {
		return nil, err
	}
	created := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if IsNodeDir(opts.Dir) {
			parent := filepath.Dir(filepath.Clean(opts.Dir))
			return nil, fmt.Errorf("%s is the node directory inside the state directory %s, not a state directory: pass --state %s", opts.Dir, parent, parent)
		}
		if opts.MustExist {
			return nil, fmt.Errorf("state directory %s contains no node: %s not found: create the node first (bt node --state %s --mount DIR creates it on its first start)", opts.Dir, dir, opts.Dir)
		}
		if err := create(ctx, dir, opts, opts.Logger); err != nil {
			return nil, err
		}
		created = true
	} else if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", opts.Dir, err)
	}
	n, err := open(ctx, dir, opts, false, func(n *Node, keys string) (*principal.Credential, error) {
		if opts.Credential != nil {
			return checkGivenCredential(keys, opts.Credential)
		}
		return keystore.Load(keys, n.protector(opts))
	})
	if err != nil {
		return nil, err
	}
	n.Created = created
	return n, nil
}

// checkGivenCredential returns cred when it is the credential whose
// identity the key directory keys stores.
func checkGivenCredential(keys string, cred *principal.Credential) (*principal.Credential, error) {
	id, err := keystore.LoadIdentity(keys)
	if err != nil {
		return nil, err
	}
	if id.Principal() != cred.Principal() || !id.Encryption.Equal(cred.Encryption.Public()) {
		return nil, fmt.Errorf("the credential handed to this process is %s, but the node in %s is %s: hand over this node's credential", cred.Principal(), keys, id.Principal())
	}
	return cred, nil
}

// checkOptions fills in defaults and checks the state directory.
func checkOptions(opts Options) (Options, string, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	info, err := os.Stat(opts.Dir)
	if err != nil {
		return opts, "", fmt.Errorf("state directory %s: %w (create it first)", opts.Dir, err)
	}
	if !info.IsDir() {
		return opts, "", fmt.Errorf("state directory %s is not a directory", opts.Dir)
	}
	if opts.TPM == "" {
		opts.TPM = TPMAuto
	}
	if opts.PCRs == nil {
		opts.PCRs = DefaultPCRs
	}
	return opts, filepath.Join(opts.Dir, "node"), nil
}

func (n *Node) protector(opts Options) *keystore.TPMProtector {
	return &keystore.TPMProtector{TPM: n.TPM, PCRs: opts.PCRs}
}

// create builds a new node state in a temporary directory and renames it to
// dir. On failure nothing is left behind.
func create(ctx context.Context, dir string, opts Options, logger *slog.Logger) (err error) {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".node.tmp-")
	if err != nil {
		return fmt.Errorf("create node state in %s: %w", opts.Dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	device, t, sw, err := chooseTPM(ctx, tmp, opts.TPM, logger)
	if err != nil {
		return err
	}
	closeTPM := func() error {
		var errs []error
		if t != nil {
			errs = append(errs, t.Close())
		}
		if sw != nil {
			errs = append(errs, sw.Stop())
		}
		return errors.Join(errs...)
	}

	protector := &keystore.TPMProtector{TPM: t, PCRs: opts.PCRs}
	cred, recovery, err := keystore.Create(filepath.Join(tmp, "keys"), protector)
	if err != nil {
		closeTPM()
		return fmt.Errorf("create node credential: %w", err)
	}
	if _, err := t.OpenCounter(tpm.DefaultCounterIndex); err != nil {
		closeTPM()
		return fmt.Errorf("create node rollback counter: %w", err)
	}
	tree, err := newTree(cred)
	if err != nil {
		closeTPM()
		return err
	}
	treeBytes, err := tree.marshal(cred)
	if err != nil {
		closeTPM()
		return err
	}
	if err := closeTPM(); err != nil {
		return fmt.Errorf("create node state: %w", err)
	}

	files := map[string][]byte{"tree": treeBytes, "tpm-device": []byte(device + "\n")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o600); err != nil {
			return fmt.Errorf("create node state: %w", err)
		}
	}
	for _, sub := range []string{"journal", "blocks"} {
		if err := os.Mkdir(filepath.Join(tmp, sub), 0o700); err != nil {
			return fmt.Errorf("create node state: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "lock"), nil, 0o600); err != nil {
		return fmt.Errorf("create node state: %w", err)
	}
	if err := syncTree(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("create node state: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}

	logger.Info("node created", "node", cred.Principal(), "state", dir, "tpm", device)
	if opts.RecoveryKey != nil {
		hint := opts.RecoveryHint
		if hint == "" {
			hint = fmt.Sprintf("It unlocks the node's keys with 'bt recover --state %s' if the TPM is cleared or replaced.", opts.Dir)
		}
		fmt.Fprintf(opts.RecoveryKey, "\nNode %s created.\nRecovery key (shown only now; write it down and keep it away from this machine):\n\n    %s\n\n%s\n\n",
			cred.Principal(), recovery, hint)
	}
	return nil
}

// chooseTPM opens the TPM for a new node and returns the device string to
// record. The software TPM's state goes under base/tpm.
func chooseTPM(ctx context.Context, base, choice string, logger *slog.Logger) (string, *tpm.TPM, *swtpm.Process, error) {
	if choice == TPMAuto {
		t, err := tpm.Open(HardwareTPM)
		if err == nil {
			return HardwareTPM, t, nil, nil
		}
		logger.Debug("hardware TPM not usable", "tpm", HardwareTPM, "error", err)
		choice = TPMSoftware
	}
	if choice == TPMSoftware {
		t, sw, err := startSoftwareTPM(ctx, base, logger)
		return softwareTPM, t, sw, err
	}
	t, err := tpm.Open(choice)
	if err != nil {
		return "", nil, nil, fmt.Errorf("%w (use --tpm auto or --tpm software)", err)
	}
	return choice, t, nil, nil
}

func startSoftwareTPM(ctx context.Context, base string, logger *slog.Logger) (*tpm.TPM, *swtpm.Process, error) {
	stateDir := filepath.Join(base, "tpm")
	sw, err := swtpm.Start(ctx, swtpm.Options{StateDir: stateDir, Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("start software TPM: %w", err)
	}
	t, err := tpm.Open(sw.SocketPath())
	if err != nil {
		sw.Stop()
		return nil, nil, fmt.Errorf("open software TPM: %w", err)
	}
	logger.Warn("no usable hardware TPM: using a software TPM, so the node's keys are protected only by this host's file permissions", "tpm_state", stateDir)
	return t, sw, nil
}

// open opens a node state created earlier; credential unlocks the keys.
func open(ctx context.Context, dir string, opts Options, recovering bool, credential func(n *Node, keys string) (*principal.Credential, error)) (_ *Node, err error) {
	logger := opts.Logger
	// Opened read-only, because flock needs no write access and the
	// appliance unseals the keys while the data partition is still mounted
	// read-only.
	lock, err := os.Open(filepath.Join(dir, "lock"))
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("open node state %s: %w: run bt as the user who owns the state directory, or as root", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open node state %s: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := flockHolder(lock)
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if holder > 0 {
				return nil, fmt.Errorf("open node state %s: %w (PID %d): stop that node first", dir, ErrLocked, holder)
			}
			return nil, fmt.Errorf("open node state %s: %w: stop that node first", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock node state %s: %w", dir, err)
	}
	n := &Node{Dir: dir, logger: logger, lock: lock}
	// tpmBefore is the software TPM's state as this start found it.
	var tpmBefore *swtpm.StateSnapshot
	defer func() {
		if err != nil {
			n.closeFailedOpen(tpmBefore)
		}
	}()

	recorded, err := os.ReadFile(filepath.Join(dir, "tpm-device"))
	if err != nil {
		return nil, fmt.Errorf("open node state %s: %w", dir, err)
	}
	device := strings.TrimSpace(string(recorded))
	if opts.TPM != TPMAuto && opts.TPM != device {
		return nil, fmt.Errorf("node state %s was sealed by TPM %q, not %q: run with --tpm auto", dir, device, opts.TPM)
	}
	if device == softwareTPM {
		if _, statErr := os.Stat(filepath.Join(dir, "tpm")); statErr != nil && !recovering {
			return nil, fmt.Errorf("the software TPM that sealed this node's keys is missing (%s): run 'bt recover --state %s' with the node's recovery key", filepath.Join(dir, "tpm"), opts.Dir)
		}
		// swtpm rewrites its state file when it powers on and shuts down,
		// so a failed start puts the files back (see closeFailedOpen).
		// Recover is left out: it may seal the keys to a new software TPM
		// whose state must stay.
		if !recovering {
			if tpmBefore, err = swtpm.SnapshotState(filepath.Join(dir, "tpm")); err != nil {
				return nil, fmt.Errorf("open node state %s: %w", dir, err)
			}
		}
		n.TPM, n.swtpm, err = startSoftwareTPM(ctx, dir, logger)
	} else {
		n.TPM, err = tpm.Open(device)
		if err != nil {
			err = fmt.Errorf("the TPM that sealed this node's keys is not usable: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}

	treeBytes, err := os.ReadFile(filepath.Join(dir, "tree"))
	if err != nil {
		return nil, fmt.Errorf("open node state %s: %w", dir, err)
	}
	parsed, err := parseTree(treeBytes)
	if err != nil {
		return nil, fmt.Errorf("open node state %s: %w", dir, err)
	}

	keys := filepath.Join(dir, "keys")
	cred, err := credential(n, keys)
	if err != nil {
		return nil, explainUnseal(err, opts.Dir, parsed)
	}
	n.Credential = cred
	if n.Tree, err = parsed.open(cred); err != nil {
		return nil, fmt.Errorf("open node state %s: %w", dir, err)
	}
	if err := n.readCounterOffset(); err != nil {
		return nil, fmt.Errorf("open node state %s: %w", dir, err)
	}
	logger.Info("node opened", "node", cred.Principal(), "state", dir, "tpm", device)
	return n, nil
}

// explainUnseal turns a rejection by the TPM into an error that explains
// what happened and what to do.
func explainUnseal(err error, stateDir string, tree *parsedTree) error {
	var mismatch *tpm.PCRMismatchError
	switch {
	case errors.As(err, &mismatch):
		return fmt.Errorf("the TPM rejected unsealing node %s: %w, so the boot chain changed since the keys were sealed; if you trust this change, run 'bt recover --state %s' with the node's recovery key", tree.node.Principal(), mismatch, stateDir)
	case errors.Is(err, tpm.ErrSRKChanged):
		return fmt.Errorf("node %s was sealed by another TPM, or this TPM was cleared (%w): if this is another machine's state directory, use that machine; otherwise run 'bt recover --state %s' with the node's recovery key", tree.node.Principal(), err, stateDir)
	}
	return fmt.Errorf("unseal node %s: %w", tree.node.Principal(), err)
}

// UnsealRejection is the reason the TPM rejected unsealing a node's keys.
// After either rejection, Recover unlocks the keys with the recovery key.
type UnsealRejection string

const (
	// BootChanged means that PCRs differ from the values the keys were
	// sealed to, because the measured boot changed.
	BootChanged UnsealRejection = "boot changed"
	// TPMCleared means that the TPM's storage root key differs from the one
	// that sealed the keys, because the TPM was cleared or replaced.
	TPMCleared UnsealRejection = "TPM cleared"
)

// ClassifyUnsealError returns the UnsealRejection that err wraps, or ""
// when err is no such rejection.
func ClassifyUnsealError(err error) UnsealRejection {
	var mismatch *tpm.PCRMismatchError
	switch {
	case errors.As(err, &mismatch):
		return BootChanged
	case errors.Is(err, tpm.ErrSRKChanged):
		return TPMCleared
	}
	return ""
}

// Close sends TPM2_Shutdown, stops the software TPM and releases the lock.
func (n *Node) Close() error {
	errs := []error{n.closeTPM()}
	if n.lock != nil {
		errs = append(errs, n.lock.Close())
		n.lock = nil
		if n.Credential != nil {
			n.logger.Info("node closed", "node", n.Credential.Principal())
		}
	}
	return errors.Join(errs...)
}

// closeTPM sends TPM2_Shutdown and stops the software TPM.
func (n *Node) closeTPM() error {
	var errs []error
	if n.TPM != nil {
		errs = append(errs, n.TPM.Close())
		n.TPM = nil
	}
	if n.swtpm != nil {
		errs = append(errs, n.swtpm.Stop())
		n.swtpm = nil
	}
	return errors.Join(errs...)
}

// closeFailedOpen ends a start that failed. It stops the TPM, puts the
// software TPM's state files back from tpmBefore (when not nil), and only
// then releases the lock, so that no other node process starts on the
// directory in between.
//
// Rolling the TPM back is safe here because the failed start committed
// nothing to it that anything depends on. Open has not returned, so no
// checkpoint was written and nothing was acknowledged to a client. Between
// the snapshot and this call, the TPM got TPM2_Startup and TPM2_Shutdown,
// reads, and an unseal under a transient storage root key of a noDA object.
// None of these defines, writes or increments an NV index: the rollback
// counter moves only when the storage daemon writes a checkpoint, after
// Open. What the rollback undoes is the TPM's reset count, clock and
// shutdown state, which no file in the state directory records.
func (n *Node) closeFailedOpen(tpmBefore *swtpm.StateSnapshot) {
	if err := n.closeTPM(); err != nil {
		n.logger.Warn("stopping the TPM after a failed start failed", "state", n.Dir, "error", err)
	}
	if tpmBefore != nil {
		// Restore fails while a swtpm still holds its lock file, so a swtpm
		// that Stop could not end keeps the files it writes.
		if err := tpmBefore.Restore(); err != nil {
			n.logger.Error("could not restore the software TPM state after a failed start, so node/tpm keeps the valid state that swtpm wrote", "state", n.Dir, "error", err)
		}
	}
	if err := n.Close(); err != nil {
		n.logger.Warn("releasing the node state after a failed start failed", "state", n.Dir, "error", err)
	}
}

func syncTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
		return nil
	})
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// flockHolder returns the PID of the process that holds a flock(2) lock on
// f, from /proc/locks, or 0 if it cannot tell: a process in another PID
// namespace shows there as PID 0, and the file may be unlocked meanwhile.
func flockHolder(f *os.File) int {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	// A line reads "1: FLOCK  ADVISORY  WRITE 19030 fe:00:10002613 0 EOF":
	// the PID, then the device's major and minor in hex and the inode.
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	for line := range strings.Lines(string(locks)) {
		fields := strings.Fields(line)
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}
