//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
	// the kernel itself (make run): only PID 1's measurement of the
	// kernel command line. See docs/image.md for what this protects.
	directBootPCRs = []int{cmdlinePCR}
	// uefiBootPCRs are the PCRs the keys are sealed to on a UEFI boot:
	// PCR 4 holds the firmware's digest of the boot application (the UKI
	// with its kernel, initramfs and command line) and PCR 7 the Secure
	// Boot policy.
	uefiBootPCRs = []int{4, 7}
)

// device is an unlocked device: its data partition is mounted read-write
// and its keys unseal with the TPM as the boot measured it.
type device struct {
	partition string
	node      principal.Principal
}

// unlock mounts the data partition, measures the boot, and opens the
// node's keys: it creates them on first boot, unseals them later, and asks
// for the recovery key on the console when the TPM refuses.
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
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := state.Options{
		Dir:          dataMount,
		TPM:          tpmDevice,
		PCRs:         pcrs,
		Logger:       logger,
		RecoveryKey:  os.Stdout,
		RecoveryHint: "When this device's TPM refuses its keys (a changed boot, a cleared TPM), the console asks for this key.",
	}
	ctx := context.Background()
	dev := &device{partition: part}

	if _, err := os.Stat(filepath.Join(dataMount, "node")); errors.Is(err, os.ErrNotExist) {
		if err := remountDataWritable(part); err != nil {
			return nil, err
		}
		logf("first boot: creating this device's keys, sealed by the TPM to PCR %s", pcrList(pcrs))
		node, err := state.Open(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("create the device's keys: %w", err)
		}
		dev.node = node.Credential.Principal()
		return dev, node.Close()
	}

	opts.MustExist = true
	node, err := state.Open(ctx, opts)
	if err == nil {
		dev.node = node.Credential.Principal()
		if err := node.Close(); err != nil {
			return nil, err
		}
		return dev, remountDataWritable(part)
	}
	why := state.SealRefusal(err)
	if why == "" {
		return nil, err
	}
	node, err = recoverOnConsole(ctx, opts, part, why, err)
	if err != nil {
		return nil, err
	}
	dev.node = node.Credential.Principal()
	return dev, node.Close()
}

// measureBoot extends the PCRs that PID 1 measures and returns the PCRs
// that new seals use. On a direct kernel boot nothing measured the kernel
// command line, so PID 1 measures it into cmdlinePCR; a changed command
// line then unseals nothing. Under UEFI the firmware measured the UKI,
// command line included.
func measureBoot() ([]int, error) {
	if err := waitForFile(tpmDevice, tpmWait); err != nil {
		return nil, fmt.Errorf("no TPM: %s did not appear within %s: boot with a TPM (make run starts swtpm for QEMU)", tpmDevice, tpmWait)
	}
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		return uefiBootPCRs, nil
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	t, err := tpm.Open(tpmDevice)
	if err != nil {
		return nil, fmt.Errorf("open the TPM %s: %w", tpmDevice, err)
	}
	defer t.Close()
	event := append([]byte("blocktree boot v1 kernel command line\x00"), cmdline...)
	if err := t.ExtendPCR(cmdlinePCR, event); err != nil {
		return nil, err
	}
	logf("measured the kernel command line into PCR %d (sha256 %x)", cmdlinePCR, sha256.Sum256(event))
	return directBootPCRs, nil
}

// recoverOnConsole explains in plain words why the keys did not unseal and
// asks for the recovery key until one unlocks them or the user powers off.
// The data partition stays read-only until a well-formed key is typed.
func recoverOnConsole(ctx context.Context, opts state.Options, part, why string, cause error) (*state.Node, error) {
	out := os.Stdout
	fmt.Fprintln(out)
	switch why {
	case "changed":
		var mismatch *tpm.PCRMismatchError
		errors.As(cause, &mismatch)
		fmt.Fprintf(out, "blocktree: the TPM refused to unseal this device's keys: the measured boot changed since they were sealed (%v).\n", mismatch)
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
			requestShutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
			select {}
		case "reboot":
			requestShutdown(unix.LINUX_REBOOT_CMD_RESTART)
			select {}
		}
		key, err := keystore.ParseRecoveryKey(line)
		if err != nil {
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
			return nil, err
		}
		fmt.Fprintf(out, "blocktree: recovered: the keys of node %s are sealed to this boot again\n", node.Credential.Principal())
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

func pcrList(pcrs []int) string {
	s := make([]string, len(pcrs))
	for i, p := range pcrs {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}
