//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/tpm"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/storage/storaged"
)

const (
	tpmDevice = state.HardwareTPM
	tpmWait   = 5 * time.Second

	// cmdlinePCR receives PID 1's measurement of the kernel command line
	// on a direct kernel boot, where no firmware or stub measures the
	// kernel, the initramfs or the command line.
	cmdlinePCR = 8
)

var (
	// directBootPCRs are the PCRs the keys are sealed to when QEMU loads
	// the kernel itself (make run): only PID 1's measurement of the kernel
	// command line. That catches a changed command line but not a changed
	// initramfs, because a replaced PID 1 can skip the measurement.
	directBootPCRs = []int{cmdlinePCR}
	// uefiBootPCRs are the PCRs the keys are sealed to on a UEFI boot:
	// PCR 4 contains the firmware's digest of the boot application (the UKI
	// with its kernel, initramfs and command line) and PCR 7 the Secure
	// Boot policy.
	uefiBootPCRs = []int{4, 7}
)

// device is an unlocked device: its data partition is mounted read-write
// and its keys unseal with the TPM as the boot measured it.
type device struct {
	partition string
	node      principal.Principal
	root      principal.Principal // the root of the node's tree
	// credential is the node's unsealed credential in a sealed memfd
	// (keystore.ShareCredential), which the services inherit so that they
	// need not unseal the keys again. PID 1 keeps it open until it exits.
	credential *os.File
}

// unlock mounts the data partition, measures the boot, and opens the
// node's keys. It creates them on first boot, unseals them on later boots,
// and prompts for the recovery key on the console when the TPM rejects
// them.
func unlock() (*device, error) {
	part, err := findDataPartition()
	if err != nil {
		return nil, err
	}
	if err := mountData(part); err != nil {
		return nil, err
	}
	pcrs, err := measureBoot()
	if err != nil {
		return nil, err
	}
	opts := state.Options{
		Dir:    dataMount,
		TPM:    tpmDevice,
		PCRs:   pcrs,
		Logger: quietLogger,
		// The recovery key goes to the console once, on first boot, and
		// never to a logger.
		RecoveryKey:  os.Stdout,
		RecoveryHint: "If this device's TPM rejects its keys after a changed boot or a cleared TPM, the console prompts for this key.",
	}
	ctx := context.Background()
	dev := &device{partition: part}

	if _, err := os.Stat(filepath.Join(dataMount, "node")); errors.Is(err, fs.ErrNotExist) {
		if err := remountDataWritable(part); err != nil {
			return nil, err
		}
		logger.Info("first boot: creating this device's keys and sealing them with the TPM", "pcrs", pcrList(pcrs))
		node, err := state.Open(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("create the device's keys: %w", err)
		}
		if err := dev.adopt(node); err != nil {
			return nil, err
		}
		return dev, nil
	}

	opts.MustExist = true
	node, err := state.Open(ctx, opts)
	if err == nil {
		if err := dev.adopt(node); err != nil {
			return nil, err
		}
		if err := remountDataWritable(part); err != nil {
			return nil, err
		}
		logger.Info("keys unsealed", "node", dev.node)
		return dev, nil
	}
	rejection := state.ClassifyUnsealError(err)
	if rejection == "" {
		return nil, err
	}
	node, err = recoverOnConsole(ctx, opts, part, rejection, err)
	if err != nil {
		return nil, err
	}
	if err := dev.adopt(node); err != nil {
		return nil, err
	}
	return dev, nil
}

// adopt records the principal of the node that PID 1 opened, shares its
// credential for the services, and closes the node so that the storage
// service can open it.
func (dev *device) adopt(node *state.Node) error {
	dev.node = node.Credential.Principal()
	dev.root = node.Tree.Root
	f, err := keystore.ShareCredential(node.Credential)
	closeNode(node)
	if err != nil {
		return err
	}
	dev.credential = f
	return nil
}

// closeNode closes a node that PID 1 opened to unseal its keys, so that
// the storage service can open it. A failed TPM2_Shutdown does not keep the
// service from opening the node, so the error is logged only.
func closeNode(node *state.Node) {
	if err := node.Close(); err != nil {
		logger.Warn("closing the node after unlocking failed; the storage service opens it anyway", "node", node.Credential.Principal(), "error", err)
	}
}

// measureBoot extends the PCRs that PID 1 measures and returns the PCRs
// that new seals use. On a direct kernel boot nothing else measured the
// kernel command line, so PID 1 measures it into cmdlinePCR, and a changed
// command line then unseals nothing. Under UEFI the firmware measured the
// UKI, command line included.
func measureBoot() ([]int, error) {
	if err := waitForFile(tpmDevice, tpmWait); err != nil {
		return nil, fmt.Errorf("TPM not found: %s did not appear within %s: boot with a TPM 2.0 (make run starts swtpm for QEMU)", tpmDevice, tpmWait)
	}
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		return uefiBootPCRs, nil
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("read the kernel command line to measure it: %w", err)
	}
	t, err := tpm.Open(tpmDevice)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	event := append([]byte("blocktree boot v1 kernel command line\x00"), cmdline...)
	if err := t.ExtendPCR(cmdlinePCR, event); err != nil {
		return nil, fmt.Errorf("measure the kernel command line into PCR %d: %w", cmdlinePCR, err)
	}
	logger.Info("kernel command line measured", "pcr", cmdlinePCR, "sha256", fmt.Sprintf("%x", sha256.Sum256(event)))
	return directBootPCRs, nil
}

// recoverOnConsole explains in plain words why the keys did not unseal and
// prompts for the recovery key until one unlocks them or the user types
// poweroff or reboot. The data partition stays read-only until a
// well-formed key is typed. cause is the error that state.Open returned.
func recoverOnConsole(ctx context.Context, opts state.Options, part string, rejection state.UnsealRejection, cause error) (*state.Node, error) {
	logger.Warn("the TPM rejected the keys; prompting for the recovery key on the console", "reason", string(rejection))
	out := os.Stdout
	fmt.Fprintln(out)
	// image/appliance_test.go matches the first line of the BootChanged
	// case and "recovery key: ", so keep their wording stable.
	switch rejection {
	case state.BootChanged:
		detail := "the PCRs differ from the sealing policy"
		var mismatch *tpm.PCRMismatchError
		if errors.As(cause, &mismatch) {
			detail = mismatch.Error()
		}
		fmt.Fprintf(out, "blocktree: the TPM refused to unseal this device's keys: the measured boot changed since they were sealed (%s).\n", detail)
		fmt.Fprintln(out, "blocktree: a different kernel, kernel command line, boot loader or firmware started this time.")
	default:
		fmt.Fprintln(out, "blocktree: the TPM refused to unseal this device's keys: it was cleared or replaced since they were sealed.")
	}
	fmt.Fprintln(out, "blocktree: the data on this device has not been touched.")
	fmt.Fprintln(out, "blocktree: if you made this change, type the recovery key to unlock the device and seal its keys to this boot; otherwise type poweroff.")

	lines := bufio.NewReader(os.Stdin)
	writable := false
	for {
		fmt.Fprint(out, "recovery key: ")
		line, err := readSecretLine(lines)
		fmt.Fprintln(out)
		if err != nil {
			return nil, fmt.Errorf("read the recovery key from the console: %w", err)
		}
		switch strings.TrimSpace(line) {
		case "":
			continue
		case "poweroff":
			requestShutdown(unix.LINUX_REBOOT_CMD_POWER_OFF, "poweroff typed at the recovery key prompt")
			// The shutdown goroutine ends in reboot(2), so this boot
			// goroutine has nothing left to do.
			select {}
		case "reboot":
			requestShutdown(unix.LINUX_REBOOT_CMD_RESTART, "reboot typed at the recovery key prompt")
			select {}
		}
		key, err := keystore.ParseRecoveryKey(line)
		if err != nil {
			// The error names the expected format, never the typed text.
			fmt.Fprintf(out, "blocktree: %v\n", err)
			continue
		}
		if !writable {
			if err := remountDataWritable(part); err != nil {
				return nil, err
			}
			writable = true
		}
		node, err := state.Recover(ctx, opts, key)
		if err != nil {
			fmt.Fprintf(out, "blocktree: that recovery key does not unlock this device (%v): type it again\n", err)
			continue
		}
		if err := storaged.Rebind(node); err != nil {
			node.Close()
			return nil, fmt.Errorf("set the rollback counter offset of node %s for this TPM after recovery: %w", node.Credential.Principal(), err)
		}
		// image/appliance_test.go matches "blocktree: recovered".
		fmt.Fprintf(out, "blocktree: recovered: the keys of node %s are sealed to this boot again\n", node.Credential.Principal())
		logger.Info("keys recovered with the recovery key and sealed to this boot", "node", node.Credential.Principal())
		return node, nil
	}
}

// readSecretLine reads one line from the console with echo turned off, so
// the recovery key does not stay on the screen.
func readSecretLine(r *bufio.Reader) (string, error) {
	old, err := unix.IoctlGetTermios(0, unix.TCGETS)
	if err == nil {
		quiet := *old
		quiet.Lflag &^= unix.ECHO
		if unix.IoctlSetTermios(0, unix.TCSETS, &quiet) == nil {
			defer unix.IoctlSetTermios(0, unix.TCSETS, old)
		}
	}
	line, err := r.ReadString('\n')
	if err == io.EOF && line != "" {
		err = nil
	}
	return line, err
}

// waitForFile polls until path exists and returns the last os.Stat error
// when timeout passes first.
func waitForFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := os.Stat(path)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pcrList formats PCR numbers as "4,7".
func pcrList(pcrs []int) string {
	numbers := make([]string, len(pcrs))
	for i, pcr := range pcrs {
		numbers[i] = strconv.Itoa(pcr)
	}
	return strings.Join(numbers, ",")
}
