package tpm

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// sendHierarchyCommand sends a command that go-tpm v0.9.8 has no type for:
// one authorization handle with an empty password session, then params. It
// fails the test unless the TPM returns TPM_RC_SUCCESS.
func sendHierarchyCommand(t *testing.T, tpm *TPM, code tpm2.TPMCC, authHandle tpm2.TPMHandle, params []byte) {
	t.Helper()
	command := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTSessions))
	command = binary.BigEndian.AppendUint32(command, 0) // size, set below
	command = binary.BigEndian.AppendUint32(command, uint32(code))
	command = binary.BigEndian.AppendUint32(command, uint32(authHandle))
	// Authorization area: TPM_RS_PW, empty nonce, continueSession, empty
	// password.
	command = binary.BigEndian.AppendUint32(command, 9)
	command = binary.BigEndian.AppendUint32(command, uint32(tpm2.TPMRSPW))
	command = append(command, 0, 0, 1, 0, 0)
	command = append(command, params...)
	binary.BigEndian.PutUint32(command[2:], uint32(len(command)))

	tpm.mu.Lock()
	response, err := tpm.transport.Send(command)
	tpm.mu.Unlock()
	if err != nil {
		t.Fatalf("send command %v: %v", code, err)
	}
	if len(response) < 10 {
		t.Fatalf("command %v: response of %d bytes", code, len(response))
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(response[6:10])); rc != tpm2.TPMRCSuccess {
		t.Fatalf("command %v: %v", code, rc)
	}
}

func TestClearFallsBackToLockout(t *testing.T) {
	tpm := newDevice(t).open()
	blob, err := tpm.Seal([]byte("secret"), []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	// Firmware disables the platform hierarchy before the OS runs, as
	// TPM2_HierarchyControl(TPM_RH_PLATFORM, enable=TPM_RH_PLATFORM, NO)
	// does here.
	params := binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRHPlatform))
	params = append(params, 0)
	sendHierarchyCommand(t, tpm, tpm2.TPMCCHierarchyControl, tpm2.TPMRHPlatform, params)

	if err := tpm.Clear(); err != nil {
		t.Fatalf("Clear with the platform hierarchy disabled: %v", err)
	}
	if _, err := tpm.Unseal(blob); !errors.Is(err, ErrSRKChanged) {
		t.Errorf("Unseal after Clear: error = %v, want ErrSRKChanged", err)
	}
}

func TestClearReportsDisableClear(t *testing.T) {
	tpm := newDevice(t).open()
	blob, err := tpm.Seal([]byte("secret"), []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	// TPM2_ClearControl(TPM_RH_LOCKOUT, disable=YES) sets disableClear.
	sendHierarchyCommand(t, tpm, tpm2.TPMCCClearControl, tpm2.TPMRHLockout, []byte{1})

	err = tpm.Clear()
	if err == nil {
		t.Fatal("Clear succeeded although disableClear is set")
	}
	if !strings.Contains(err.Error(), "disableClear") {
		t.Errorf("error %q does not name disableClear", err)
	}
	if _, err := tpm.Unseal(blob); err != nil {
		t.Errorf("Unseal after the rejected Clear: %v", err)
	}
}
