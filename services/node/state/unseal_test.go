package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/keystore"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/swtpm/swtpmtest"
	"github.com/blocktree/blocktree/services/crypto/tpm"
)

// createOnDevice creates a node in a new state directory whose keys are
// sealed to pcrs by the TPM of dev, as the appliance does with its TPM
// device. It returns the options to open the node again, the node's
// principal and its recovery key.
func createOnDevice(t *testing.T, dev *swtpmtest.Device, pcrs []int) (Options, principal.Principal, keystore.RecoveryKey) {
	t.Helper()
	var recoveryOutput bytes.Buffer
	opts := Options{Dir: t.TempDir(), TPM: dev.SocketPath(), PCRs: pcrs, RecoveryKey: &recoveryOutput}
	n, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("create node on TPM %s: %v", dev.SocketPath(), err)
	}
	node := n.Credential.Principal()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	key, err := keystore.ParseRecoveryKey(recoveryKeyText(t, recoveryOutput.String()))
	if err != nil {
		t.Fatalf("parse recovery key: %v", err)
	}
	opts.RecoveryKey = nil
	opts.MustExist = true
	return opts, node, key
}

// useTPM opens the TPM of dev, runs f with it and closes it, as another
// program on the same machine would.
func useTPM(t *testing.T, dev *swtpmtest.Device, f func(*tpm.TPM) error) {
	t.Helper()
	device, err := tpm.Open(dev.SocketPath())
	if err != nil {
		t.Fatalf("open TPM %s: %v", dev.SocketPath(), err)
	}
	if err := f(device); err != nil {
		device.Close()
		t.Fatal(err)
	}
	if err := device.Close(); err != nil {
		t.Fatalf("close TPM %s: %v", dev.SocketPath(), err)
	}
}

// checkRecovers checks that Recover unlocks the node with its recovery key
// after a rejection, and that the node then opens without it.
func checkRecovers(t *testing.T, opts Options, node principal.Principal, key keystore.RecoveryKey) {
	t.Helper()
	n, err := Recover(context.Background(), opts, key)
	if err != nil {
		t.Fatalf("Recover after the rejection: %v", err)
	}
	if got := n.Credential.Principal(); got != node {
		t.Errorf("recovered node %s, created %s", got, node)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	n, err = Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open after Recover: %v", err)
	}
	n.Close()
}

func TestUnsealRejectedAfterPCRExtend(t *testing.T) {
	dev := swtpmtest.Start(t)
	opts, node, key := createOnDevice(t, dev, []int{7, 11})

	// A changed kernel is measured into PCR 11 on the next boot.
	useTPM(t, dev, func(device *tpm.TPM) error {
		return device.ExtendPCR(11, []byte("another kernel"))
	})

	n, err := Open(context.Background(), opts)
	if err == nil {
		n.Close()
		t.Fatal("Open succeeded after PCR 11 changed")
	}
	if got := ClassifyUnsealError(err); got != BootChanged {
		t.Errorf("ClassifyUnsealError(%v) = %q, expected %q", err, got, BootChanged)
	}
	message := err.Error()
	if !strings.Contains(message, "PCR 11 differs") {
		t.Errorf("error %q does not name PCR 11", message)
	}
	if !strings.Contains(message, "bt recover --state "+opts.Dir) {
		t.Errorf("error %q does not say to run bt recover", message)
	}

	checkRecovers(t, opts, node, key)
}

func TestUnsealRejectedAfterTPMClear(t *testing.T) {
	dev := swtpmtest.Start(t)
	opts, node, key := createOnDevice(t, dev, []int{7})

	useTPM(t, dev, func(device *tpm.TPM) error { return device.Clear() })

	n, err := Open(context.Background(), opts)
	if err == nil {
		n.Close()
		t.Fatal("Open succeeded after the TPM was cleared")
	}
	if got := ClassifyUnsealError(err); got != TPMCleared {
		t.Errorf("ClassifyUnsealError(%v) = %q, expected %q", err, got, TPMCleared)
	}
	if !strings.Contains(err.Error(), "bt recover --state "+opts.Dir) {
		t.Errorf("error %q does not say to run bt recover", err)
	}

	checkRecovers(t, opts, node, key)
}

func TestUnusableTPMIsNoUnsealRejection(t *testing.T) {
	dev := swtpmtest.Start(t)
	opts, _, _ := createOnDevice(t, dev, []int{7})
	if err := dev.Process.Kill(); err != nil {
		t.Fatalf("kill swtpm: %v", err)
	}

	n, err := Open(context.Background(), opts)
	if err == nil {
		n.Close()
		t.Fatal("Open succeeded without its TPM")
	}
	if !strings.Contains(err.Error(), "not usable") {
		t.Errorf("error %q does not say that the TPM is not usable", err)
	}
	if got := ClassifyUnsealError(err); got != "" {
		t.Errorf("ClassifyUnsealError(%v) = %q, expected none, because the TPM rejected nothing", err, got)
	}
}

func TestClassifyUnsealError(t *testing.T) {
	_, noNode := Open(context.Background(), Options{Dir: t.TempDir(), MustExist: true})
	if noNode == nil {
		t.Fatal("Open with MustExist of an empty directory succeeded")
	}
	mismatch := &tpm.PCRMismatchError{PCRs: []int{7}}

	cases := []struct {
		name     string
		err      error
		expected UnsealRejection
	}{
		{"nil", nil, ""},
		{"no node", noNode, ""},
		{"locked", fmt.Errorf("open node state: %w", ErrLocked), ""},
		{"TPM closed", fmt.Errorf("unseal: %w", tpm.ErrClosed), ""},
		{"PCR mismatch", mismatch, BootChanged},
		{"wrapped PCR mismatch", fmt.Errorf("load credential: %w", fmt.Errorf("unseal from PCRs [7]: %w", mismatch)), BootChanged},
		{"SRK changed", tpm.ErrSRKChanged, TPMCleared},
		{"wrapped SRK changed", fmt.Errorf("load credential: %w", fmt.Errorf("unseal from PCRs [7]: %w", tpm.ErrSRKChanged)), TPMCleared},
		{"joined with SRK changed", errors.Join(errors.New("close TPM"), tpm.ErrSRKChanged), TPMCleared},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyUnsealError(tc.err); got != tc.expected {
				t.Errorf("ClassifyUnsealError(%v) = %q, expected %q", tc.err, got, tc.expected)
			}
		})
	}
}

// TestOpenWithGivenCredential checks that a credential handed over by the
// process that unsealed it opens the node without a second unseal, which
// would fail here because PCR 11 changed after the first one.
func TestOpenWithGivenCredential(t *testing.T) {
	dev := swtpmtest.Start(t)
	opts, node, _ := createOnDevice(t, dev, []int{7, 11})
	n, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	cred := n.Credential
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	useTPM(t, dev, func(device *tpm.TPM) error {
		return device.ExtendPCR(11, []byte("measured after the unseal"))
	})

	opts.Credential = cred
	n, err = Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open with the unsealed credential: %v", err)
	}
	if got := n.Credential.Principal(); got != node {
		t.Errorf("opened node %s, expected %s", got, node)
	}
	if n.TPM == nil {
		t.Errorf("Open with a given credential did not open the TPM")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	other, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	opts.Credential = other
	if n, err := Open(context.Background(), opts); err == nil {
		n.Close()
		t.Fatal("Open accepted another principal's credential")
	} else if !strings.Contains(err.Error(), "hand over this node's credential") {
		t.Errorf("error %q does not say which credential to hand over", err)
	}
}
