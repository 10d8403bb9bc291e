package tpm

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// recordingTransport keeps a copy of every command and response.
type recordingTransport struct {
	inner     transport.TPMCloser
	commands  [][]byte
	responses [][]byte
}

func (r *recordingTransport) Send(command []byte) ([]byte, error) {
	r.commands = append(r.commands, bytes.Clone(command))
	response, err := r.inner.Send(command)
	r.responses = append(r.responses, bytes.Clone(response))
	return response, err
}

func (r *recordingTransport) Close() error { return r.inner.Close() }

// commandsWithCode returns the recorded commands with command code code.
func (r *recordingTransport) commandsWithCode(code tpm2.TPMCC) [][]byte {
	var matching [][]byte
	for _, command := range r.commands {
		if len(command) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(command[6:10])) == code {
			matching = append(matching, command)
		}
	}
	return matching
}

// openRecorded opens the TPM at path like Open, with a recordingTransport
// that records every command from the first one on.
func openRecorded(t testing.TB, path string) (*TPM, *recordingTransport) {
	t.Helper()
	inner, err := openTransport(path)
	if err != nil {
		t.Fatalf("open transport: %v", err)
	}
	recorder := &recordingTransport{inner: inner}
	tpm := &TPM{path: path, logger: slog.Default().With("tpm", path), transport: recorder}
	if err := tpm.init(); err != nil {
		inner.Close()
		t.Fatalf("init: %v", err)
	}
	t.Cleanup(func() { tpm.Close() })
	return tpm, recorder
}

func TestSecretNeverSentInClear(t *testing.T) {
	dev := newDevice(t)
	tpm, recorder := openRecorded(t, dev.process.SocketPath())
	secret := randomSecret(t, 64)

	blob, err := tpm.Seal(secret, []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	got, err := tpm.Unseal(blob)
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatal("Unseal returned a different secret")
	}

	for i, command := range recorder.commands {
		if bytes.Contains(command, secret[:16]) {
			t.Errorf("command %d (%x) contains the secret in clear", i, command[6:10])
		}
	}
	for i, response := range recorder.responses {
		if bytes.Contains(response, secret[:16]) {
			t.Errorf("response to command %d (%x) contains the secret in clear", i, recorder.commands[i][6:10])
		}
	}
}

func TestSessionsAreSaltedAndEncrypted(t *testing.T) {
	dev := newDevice(t)
	tpm, recorder := openRecorded(t, dev.process.SocketPath())

	blob, err := tpm.Seal([]byte("secret"), []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if _, err := tpm.Unseal(blob); err != nil {
		t.Fatalf("Unseal: %v", err)
	}

	starts := recorder.commandsWithCode(tpm2.TPMCCStartAuthSession)
	if len(starts) != 2 {
		t.Fatalf("recorded %d TPM2_StartAuthSession commands, want 2 (Create and Unseal)", len(starts))
	}
	for i, command := range starts {
		// Header (10 bytes), tpmKey, bind, nonceCaller, encryptedSalt,
		// sessionType, symmetric (algorithm, key bits, mode), authHash.
		tpmKey := binary.BigEndian.Uint32(command[10:14])
		if tpmKey>>24 != uint32(tpm2.TPMHTTransient) {
			t.Errorf("session %d: salt key handle %#x is not a transient object (the SRK)", i, tpmKey)
		}
		offset := 18
		nonceSize := int(binary.BigEndian.Uint16(command[offset:]))
		offset += 2 + nonceSize
		saltSize := int(binary.BigEndian.Uint16(command[offset:]))
		if saltSize == 0 {
			t.Errorf("session %d: encrypted salt is empty", i)
		}
		offset += 2 + saltSize + 1
		algorithm := tpm2.TPMAlgID(binary.BigEndian.Uint16(command[offset:]))
		keyBits := binary.BigEndian.Uint16(command[offset+2:])
		mode := tpm2.TPMAlgID(binary.BigEndian.Uint16(command[offset+4:]))
		if algorithm != tpm2.TPMAlgAES || keyBits != 128 || mode != tpm2.TPMAlgCFB {
			t.Errorf("session %d: parameter encryption %v-%d-%v, want AES-128-CFB", i, algorithm, keyBits, mode)
		}
	}
}

func TestOpenSendsStartupOnlyWhenNeeded(t *testing.T) {
	dev := newDevice(t)

	// swtpm started with startup-clear has already sent TPM2_Startup.
	tpm, recorder := openRecorded(t, dev.process.SocketPath())
	if n := len(recorder.commandsWithCode(tpm2.TPMCCStartup)); n != 0 {
		t.Errorf("Open sent TPM2_Startup %d times to a started TPM, want 0", n)
	}
	secret := []byte("secret")
	blob, err := tpm.Seal(secret, []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if err := tpm.ExtendPCR(7, []byte("before reset")); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}
	if err := tpm.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// After CMD_INIT the TPM returns TPM_RC_INITIALIZE until someone sends
	// TPM2_Startup, as a hardware TPM does before the firmware runs.
	if err := dev.process.PowerCycle(); err != nil {
		t.Fatalf("PowerCycle: %v", err)
	}
	tpm, recorder = openRecorded(t, dev.process.SocketPath())
	if n := len(recorder.commandsWithCode(tpm2.TPMCCStartup)); n != 1 {
		t.Errorf("Open sent TPM2_Startup %d times after a power cycle, want 1", n)
	}
	got, err := tpm.Unseal(blob)
	if err != nil {
		t.Fatalf("Unseal after power cycle and Open: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Error("Unseal returned a different secret")
	}
}

func TestCloseSendsShutdownState(t *testing.T) {
	dev := newDevice(t)
	tpm, recorder := openRecorded(t, dev.process.SocketPath())
	if err := tpm.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	shutdowns := recorder.commandsWithCode(tpm2.TPMCCShutdown)
	if len(shutdowns) != 1 {
		t.Fatalf("Close sent TPM2_Shutdown %d times, want 1", len(shutdowns))
	}
	if shutdownType := tpm2.TPMSU(binary.BigEndian.Uint16(shutdowns[0][10:])); shutdownType != tpm2.TPMSUState {
		t.Errorf("TPM2_Shutdown type %#x, want TPM_SU_STATE", shutdownType)
	}
}
