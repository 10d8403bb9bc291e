package tpm

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// TPMA_PERMANENT bits, from TPM 2.0 Part 2 (Structures), section 8.6.
const (
	permanentOwnerAuthSet   = 1 << 0
	permanentLockoutAuthSet = 1 << 2
	permanentDisableClear   = 1 << 8
	permanentInLockout      = 1 << 9
)

// TPM is an open connection to a TPM 2.0.
type TPM struct {
	path   string
	logger *slog.Logger

	// mu serializes commands, because a transport carries one command at a
	// time, and guards closed.
	mu        sync.Mutex
	transport transport.TPMCloser
	closed    bool

	// banks lists the hash algorithms of the allocated PCR banks, which
	// ExtendPCR extends together.
	banks []tpm2.TPMIAlgHash

	// testHook, when set by a test, runs at each hookStep so the test can
	// change PCRs in the middle of Seal or Unseal.
	testHook func(hookStep)
}

// Open connects to the TPM at path: a character device such as /dev/tpmrm0
// or the Unix socket of swtpm. It sends TPM2_Startup(CLEAR) only if the TPM
// has not been started. It checks that the SHA-256 PCR bank is allocated
// and that the owner hierarchy has an empty authorization, and it creates
// the storage root key once to check that the TPM can.
func Open(path string) (*TPM, error) {
	tr, err := openTransport(path)
	if err != nil {
		return nil, fmt.Errorf("open TPM %s: %w", path, err)
	}

	t := &TPM{path: path, logger: slog.Default().With("tpm", path), transport: tr}
	if err := t.init(); err != nil {
		if closeErr := tr.Close(); closeErr != nil {
			t.logger.Warn("close TPM transport after failed open", "error", closeErr)
		}
		return nil, fmt.Errorf("open TPM %s: %w", path, err)
	}
	return t, nil
}

func openTransport(path string) (transport.TPMCloser, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	switch mode := info.Mode(); {
	case mode&os.ModeSocket != 0:
		return linuxudstpm.Open(path)
	case mode&os.ModeCharDevice != 0:
		return linuxtpm.Open(path)
	default:
		return nil, fmt.Errorf("file mode %s is neither a Unix socket nor a character device: pass /dev/tpmrm0 or the socket of swtpm", mode)
	}
}

func (t *TPM) init() error {
	permanent, err := t.startupIfNeeded()
	if err != nil {
		return err
	}
	if permanent&permanentOwnerAuthSet != 0 {
		// A wrong owner password counts as a dictionary attack, so Open does
		// not try the empty one.
		return errors.New("owner hierarchy has an authorization value: remove it (tpm2_changeauth -c owner -p CURRENT) or clear the TPM")
	}

	banks, err := t.allocatedBanks()
	if err != nil {
		return err
	}
	t.banks = banks

	srk, err := t.createSRK()
	if err != nil {
		return err
	}
	t.flush(srk.handle, "storage root key")

	t.logDAState(permanent)
	t.logger.Debug("TPM opened", "srk_name", fmt.Sprintf("%x", srk.name.Buffer), "pcr_banks", banks)
	return nil
}

// startupIfNeeded reads TPM_PT_PERMANENT and returns its TPMA_PERMANENT
// bits. If the TPM returns TPM_RC_INITIALIZE, nothing has sent
// TPM2_Startup yet, so it sends TPM2_Startup(CLEAR) and reads again.
func (t *TPM) startupIfNeeded() (uint32, error) {
	permanent, err := t.readProperty(tpm2.TPMPTPermanent)
	if !errors.Is(err, tpm2.TPMRCInitialize) {
		return permanent, err
	}

	t.logger.Info("TPM is not started, sending TPM2_Startup(CLEAR)")
	if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(t.transport); err != nil {
		return 0, fmt.Errorf("send TPM2_Startup(CLEAR): %w", err)
	}
	return t.readProperty(tpm2.TPMPTPermanent)
}

// readProperty returns one TPM_CAP_TPM_PROPERTIES value.
func (t *TPM) readProperty(property tpm2.TPMPT) (uint32, error) {
	rsp, err := (tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(property),
		PropertyCount: 1,
	}).Execute(t.transport)
	if err != nil {
		return 0, fmt.Errorf("read TPM property %v: %w", property, err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("read TPM property %v: %w", property, err)
	}
	if len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != property {
		return 0, fmt.Errorf("read TPM property %v: TPM did not return it", property)
	}
	return props.TPMProperty[0].Value, nil
}

// allocatedBanks returns the hash algorithms of the PCR banks that have at
// least one PCR allocated, and fails unless SHA-256 is among them.
func (t *TPM) allocatedBanks() ([]tpm2.TPMIAlgHash, error) {
	rsp, err := (tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}).Execute(t.transport)
	if err != nil {
		return nil, fmt.Errorf("read PCR allocation: %w", err)
	}
	selections, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("read PCR allocation: %w", err)
	}

	var banks []tpm2.TPMIAlgHash
	hasSHA256 := false
	for _, selection := range selections.PCRSelections {
		if len(selectedPCRs(selection.PCRSelect)) == 0 {
			continue
		}
		banks = append(banks, selection.Hash)
		if selection.Hash == tpm2.TPMAlgSHA256 {
			hasSHA256 = true
		}
	}
	if !hasSHA256 {
		return nil, fmt.Errorf("SHA-256 PCR bank is not allocated (banks %v): enable it in the firmware's TPM settings", banks)
	}
	return banks, nil
}

// logDAState logs the dictionary-attack counter when it is not zero. Failed
// authorizations increment it, and so do restarts without TPM2_Shutdown
// after a DA-protected object was used. noDA objects such as the SRK and
// sealed objects stay usable even in lockout.
func (t *TPM) logDAState(permanent uint32) {
	counter, err := t.readProperty(tpm2.TPMPTLockoutCounter)
	if err != nil {
		t.logger.Warn("read TPM dictionary-attack counter", "error", err)
		return
	}
	if counter == 0 {
		return
	}
	t.logger.Info("TPM dictionary-attack counter is not zero after failed authorizations or restarts without TPM2_Shutdown",
		"lockout_counter", counter, "in_lockout", permanent&permanentInLockout != 0)
}

// Clear runs TPM2_Clear with an empty authorization, first through the
// platform hierarchy (swtpm and firmware allow it), then through the lockout
// hierarchy. Clearing replaces the owner seed: every blob sealed before
// fails to unseal with ErrSRKChanged.
func (t *TPM) Clear() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("clear TPM %s: %w", t.path, ErrClosed)
	}

	platformErr := t.clearWith(tpm2.TPMRHPlatform)
	if platformErr == nil {
		t.logger.Info("TPM cleared through the platform hierarchy")
		return nil
	}

	permanent, err := t.readProperty(tpm2.TPMPTPermanent)
	if err != nil {
		return fmt.Errorf("clear TPM %s: platform hierarchy: %v; %w", t.path, platformErr, err)
	}
	if permanent&permanentDisableClear != 0 {
		return fmt.Errorf("clear TPM %s: platform hierarchy: %v; TPM2_Clear is disabled (disableClear): clear the TPM from the firmware", t.path, platformErr)
	}
	if permanent&permanentLockoutAuthSet != 0 {
		// A wrong lockout password locks the lockout hierarchy for the
		// TPM's lockout recovery time, so Clear does not guess.
		return fmt.Errorf("clear TPM %s: platform hierarchy: %v; lockout hierarchy has an authorization value: clear the TPM with it (tpm2_clear -c lockout) or from the firmware", t.path, platformErr)
	}

	if err := t.clearWith(tpm2.TPMRHLockout); err != nil {
		return fmt.Errorf("clear TPM %s: platform hierarchy: %v; lockout hierarchy: %w", t.path, platformErr, err)
	}
	t.logger.Info("TPM cleared through the lockout hierarchy", "platform_error", platformErr)
	return nil
}

func (t *TPM) clearWith(hierarchy tpm2.TPMHandle) error {
	_, err := (tpm2.Clear{
		AuthHandle: tpm2.AuthHandle{Handle: hierarchy, Auth: tpm2.PasswordAuth(nil)},
	}).Execute(t.transport)
	return err
}

// Close sends TPM2_Shutdown(STATE), so the next start counts as orderly,
// and closes the transport. Methods hold no TPM handles between calls, so
// there is nothing left to flush. Close after Close returns nil.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true

	var errs []error
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUState}).Execute(t.transport); err != nil {
		errs = append(errs, fmt.Errorf("close TPM %s: send TPM2_Shutdown(STATE): %w", t.path, err))
	}
	if err := t.transport.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close TPM %s: close transport: %w", t.path, err))
	}
	return errors.Join(errs...)
}

// flush runs TPM2_FlushContext on a transient object or session. A failure
// is logged and not returned, because the operation that used the handle
// has already finished. The handle then stays occupied until the next TPM
// reset (swtpm) or until the transport is closed (/dev/tpmrm0).
func (t *TPM) flush(handle tpm2.TPMHandle, object string) {
	if _, err := (tpm2.FlushContext{FlushHandle: handle}).Execute(t.transport); err != nil {
		t.logger.Warn("flush TPM handle", "handle", fmt.Sprintf("%#x", uint32(handle)), "object", object, "error", err)
	}
}
