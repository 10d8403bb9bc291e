package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func randomSecret(t testing.TB, size int) []byte {
	t.Helper()
	secret := make([]byte, size)
	if _, err := rand.Read(secret); err != nil {
		t.Fatalf("read random secret: %v", err)
	}
	return secret
}

func marshalBlob(t testing.TB, blob *SealedBlob) []byte {
	t.Helper()
	data, err := blob.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return data
}

func unmarshalBlob(t testing.TB, data []byte) *SealedBlob {
	t.Helper()
	blob, err := UnmarshalSealedBlob(data)
	if err != nil {
		t.Fatalf("UnmarshalSealedBlob: %v", err)
	}
	return blob
}

func TestSealUnsealRoundTrip(t *testing.T) {
	tpm := newDevice(t).open()

	for _, size := range []int{1, 16, 32, 64, 100, 127, MaxSecretSize} {
		t.Run(fmt.Sprintf("%d bytes", size), func(t *testing.T) {
			secret := randomSecret(t, size)
			blob, err := tpm.Seal(secret, []int{7, 0, 11})
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if !slices.Equal(blob.PCRs, []int{0, 7, 11}) {
				t.Errorf("blob PCRs = %v, want [0 7 11]", blob.PCRs)
			}

			// Unseal a decoded copy, as a caller that stored the blob would.
			got, err := tpm.Unseal(unmarshalBlob(t, marshalBlob(t, blob)))
			if err != nil {
				t.Fatalf("Unseal: %v", err)
			}
			if !bytes.Equal(got, secret) {
				t.Errorf("Unseal returned %d bytes that differ from the %d sealed bytes", len(got), len(secret))
			}
		})
	}
}

func TestSealRecordsCurrentPCRValues(t *testing.T) {
	tpm := newDevice(t).open()
	if err := tpm.ExtendPCR(12, []byte("boot loader")); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}

	blob, err := tpm.Seal([]byte("secret"), []int{12, 0})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	current, err := tpm.ReadPCRs([]int{0, 12})
	if err != nil {
		t.Fatalf("ReadPCRs: %v", err)
	}
	for i, pcr := range blob.PCRs {
		if !bytes.Equal(blob.PCRDigests[i], current[pcr]) {
			t.Errorf("blob value of PCR %d = %x, want current value %x", pcr, blob.PCRDigests[i], current[pcr])
		}
	}
}

func TestSealRejectsInvalidInput(t *testing.T) {
	tpm := newDevice(t).open()

	tests := []struct {
		name   string
		secret []byte
		pcrs   []int
	}{
		{"empty secret", nil, []int{7}},
		{"secret over limit", make([]byte, MaxSecretSize+1), []int{7}},
		{"no PCRs", []byte("s"), nil},
		{"PCR 24", []byte("s"), []int{24}},
		{"negative PCR", []byte("s"), []int{-1}},
		{"repeated PCR", []byte("s"), []int{7, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if blob, err := tpm.Seal(tt.secret, tt.pcrs); err == nil {
				t.Errorf("Seal returned a blob for PCRs %v, want an error", blob.PCRs)
			}
		})
	}
}

func TestUnsealAfterExtendReportsPCR(t *testing.T) {
	dev := newDevice(t)
	tpm := dev.open()
	secret := randomSecret(t, 32)
	blob, err := tpm.Seal(secret, []int{7, 11, 12})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	stored := marshalBlob(t, blob)

	if err := tpm.ExtendPCR(11, []byte("unexpected kernel")); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}
	_, err = tpm.Unseal(blob)
	var mismatch *PCRMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Unseal after extending PCR 11: error = %v, want *PCRMismatchError", err)
	}
	if !slices.Equal(mismatch.PCRs, []int{11}) {
		t.Errorf("mismatched PCRs = %v, want [11]", mismatch.PCRs)
	}
	if !strings.Contains(err.Error(), "PCR 11 differs from the sealing policy") {
		t.Errorf("error %q does not name PCR 11", err)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v left after a PCR mismatch, want none loaded", handles)
	}

	if err := tpm.ExtendPCR(7, []byte("unexpected secure boot state")); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}
	_, err = tpm.Unseal(blob)
	if !errors.As(err, &mismatch) {
		t.Fatalf("Unseal after extending PCRs 7 and 11: error = %v, want *PCRMismatchError", err)
	}
	if !slices.Equal(mismatch.PCRs, []int{7, 11}) {
		t.Errorf("mismatched PCRs = %v, want [7 11]", mismatch.PCRs)
	}
	if !strings.Contains(err.Error(), "PCR 7, 11 differ from the sealing policy") {
		t.Errorf("error %q does not name PCRs 7 and 11", err)
	}

	if !bytes.Equal(marshalBlob(t, blob), stored) {
		t.Error("blob changed during failed Unseal calls")
	}

	// A restart resets the PCRs, so the untouched blob unseals again.
	tpm = dev.reboot(tpm)
	got, err := tpm.Unseal(unmarshalBlob(t, stored))
	if err != nil {
		t.Fatalf("Unseal after reboot: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Error("Unseal after reboot returned a different secret")
	}
}

func TestUnsealAfterCleanReboot(t *testing.T) {
	dev := newDevice(t)
	tpm := dev.open()
	secret := randomSecret(t, 64)
	blob, err := tpm.Seal(secret, []int{0, 7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	stored := marshalBlob(t, blob)

	for reboot := 1; reboot <= 2; reboot++ {
		tpm = dev.reboot(tpm)
		got, err := tpm.Unseal(unmarshalBlob(t, stored))
		if err != nil {
			t.Fatalf("Unseal after reboot %d: %v", reboot, err)
		}
		if !bytes.Equal(got, secret) {
			t.Errorf("Unseal after reboot %d returned a different secret", reboot)
		}
		if counter := readProperty(t, tpm, tpm2.TPMPTLockoutCounter); counter != 0 {
			t.Errorf("lockout counter after clean reboot %d = %d, want 0", reboot, counter)
		}
	}
}

// useDAProtectedKey authorizes a key without noDA, as other software on
// the machine might. The TPM reference implementation that libtpms follows
// (USE_DA_USED) counts a restart without TPM2_Shutdown as a failed
// authorization only if such a key was used since the last orderly
// shutdown. It returns the error of the authorization, TPM_RC_LOCKOUT once
// the TPM is in lockout.
func useDAProtectedKey(t testing.TB, tpm *TPM) error {
	t.Helper()
	tpm.mu.Lock()
	defer tpm.mu.Unlock()

	primary, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgKeyedHash,
			NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{
				FixedTPM:            true,
				FixedParent:         true,
				SensitiveDataOrigin: true,
				UserWithAuth:        true,
				SignEncrypt:         true,
				NoDA:                false,
			},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{
					Scheme:  tpm2.TPMAlgHMAC,
					Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
				},
			}),
		}),
	}).Execute(tpm.transport)
	if err != nil {
		t.Fatalf("create DA-protected HMAC key: %v", err)
	}
	defer tpm.flush(primary.ObjectHandle, "DA-protected test key")

	hmac := tpm2.Hmac{
		Handle:  tpm2.AuthHandle{Handle: primary.ObjectHandle, Name: primary.Name, Auth: tpm2.PasswordAuth(nil)},
		Buffer:  tpm2.TPM2BMaxBuffer{Buffer: []byte("data")},
		HashAlg: tpm2.TPMAlgSHA256,
	}
	_, err = hmac.Execute(tpm.transport)
	if errors.Is(err, tpm2.TPMRCRetry) {
		// The first DA-protected authorization after an orderly start
		// records that in NV memory and returns TPM_RC_RETRY.
		_, err = hmac.Execute(tpm.transport)
	}
	return err
}

func TestUnsealAfterPowerCuts(t *testing.T) {
	t.Run("noDA objects only", func(t *testing.T) {
		dev := newDevice(t)
		tpm := dev.open()
		secret := randomSecret(t, 48)
		blob, err := tpm.Seal(secret, []int{7})
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}

		for cut := 1; cut <= 3; cut++ {
			tpm = dev.powerCut(tpm)

			// Nothing DA-protected was authorized, so libtpms does not count
			// the unorderly restarts.
			if counter := readProperty(t, tpm, tpm2.TPMPTLockoutCounter); counter != 0 {
				t.Errorf("lockout counter after power cut %d = %d, want 0", cut, counter)
			}
			got, err := tpm.Unseal(blob)
			if err != nil {
				t.Fatalf("Unseal after power cut %d: %v", cut, err)
			}
			if !bytes.Equal(got, secret) {
				t.Errorf("Unseal after power cut %d returned a different secret", cut)
			}
		}
	})

	t.Run("DA-protected key in use", func(t *testing.T) {
		dev := newDevice(t)
		tpm := dev.open()
		secret := randomSecret(t, 48)
		blob, err := tpm.Seal(secret, []int{7})
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		maxAuthFail := readProperty(t, tpm, tpm2.TPMPTMaxAuthFail)
		if maxAuthFail != 3 {
			t.Fatalf("TPM_PT_MAX_AUTH_FAIL = %d, but the test expects lockout after 3 power cuts, the libtpms default", maxAuthFail)
		}

		for cut := uint32(1); cut <= maxAuthFail; cut++ {
			if err := useDAProtectedKey(t, tpm); err != nil {
				t.Fatalf("use DA-protected key before power cut %d: %v", cut, err)
			}
			tpm = dev.powerCut(tpm)

			counter := readProperty(t, tpm, tpm2.TPMPTLockoutCounter)
			inLockout := readProperty(t, tpm, tpm2.TPMPTPermanent)&permanentInLockout != 0
			t.Logf("after power cut %d: lockout counter %d of %d, in lockout %v", cut, counter, maxAuthFail, inLockout)
			if counter != cut {
				t.Errorf("lockout counter after power cut %d = %d, want %d", cut, counter, cut)
			}

			got, err := tpm.Unseal(blob)
			if err != nil {
				t.Fatalf("Unseal after power cut %d (lockout counter %d, in lockout %v): %v", cut, counter, inLockout, err)
			}
			if !bytes.Equal(got, secret) {
				t.Errorf("Unseal after power cut %d returned a different secret", cut)
			}
		}

		if readProperty(t, tpm, tpm2.TPMPTPermanent)&permanentInLockout == 0 {
			t.Error("TPM is not in lockout after the last power cut")
		}
		if err := useDAProtectedKey(t, tpm); !errors.Is(err, tpm2.TPMRCLockout) {
			t.Errorf("DA-protected key in lockout: error = %v, want TPM_RC_LOCKOUT", err)
		}
		if _, err := tpm.Unseal(blob); err != nil {
			t.Errorf("Unseal in lockout: %v", err)
		}
	})
}

func TestUnsealAfterClearReportsSRKChanged(t *testing.T) {
	tpm := newDevice(t).open()
	blob, err := tpm.Seal([]byte("disk key"), []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	if err := tpm.Clear(); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	_, err = tpm.Unseal(blob)
	if !errors.Is(err, ErrSRKChanged) {
		t.Fatalf("Unseal after Clear: error = %v, want ErrSRKChanged", err)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v left after ErrSRKChanged, want none", handles)
	}

	// The cleared TPM seals and unseals under its new SRK.
	fresh, err := tpm.Seal([]byte("new disk key"), []int{7})
	if err != nil {
		t.Fatalf("Seal after Clear: %v", err)
	}
	if bytes.Equal(fresh.SRKName, blob.SRKName) {
		t.Error("SRK name unchanged after Clear")
	}
	if _, err := tpm.Unseal(fresh); err != nil {
		t.Errorf("Unseal of a blob sealed after Clear: %v", err)
	}
}

func TestSealUnsealLeaveNoHandles(t *testing.T) {
	tpm := newDevice(t).open()
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Fatalf("handles %v after Open, want none", handles)
	}

	blob, err := tpm.Seal([]byte("secret"), []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v after Seal, want none", handles)
	}

	if _, err := tpm.Unseal(blob); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v after Unseal, want none", handles)
	}

	// A PCR change after the policy session started fails TPM2_Unseal.
	tpm.testHook = func(step hookStep) {
		if step == afterPolicy {
			if err := tpm.extendLocked(7, []byte("late change")); err != nil {
				t.Errorf("extend PCR 7 in hook: %v", err)
			}
		}
	}
	if _, err := tpm.Unseal(blob); err == nil {
		t.Fatal("Unseal succeeded although PCR 7 changed during the session")
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v after a failed Unseal, want none", handles)
	}
}

func TestUnsealRetriesAfterPCRChange(t *testing.T) {
	tpm := newDevice(t).open()
	secret := []byte("retry secret")
	blob, err := tpm.Seal(secret, []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	// Extending PCR 15, outside the policy, moves the TPM's global PCR
	// update counter, so TPM2_Unseal fails with TPM_RC_PCR_CHANGED although
	// PCR 7 still matches. Measured-boot code running at the same time
	// causes the same failure.
	policyRuns := 0
	tpm.testHook = func(step hookStep) {
		if step != afterPolicy {
			return
		}
		policyRuns++
		if policyRuns > 1 {
			return
		}
		if err := tpm.extendLocked(15, []byte("concurrent measurement")); err != nil {
			t.Errorf("extend PCR 15 in hook: %v", err)
		}
	}

	got, err := tpm.Unseal(blob)
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Error("Unseal returned a different secret")
	}
	if policyRuns != 2 {
		t.Errorf("policy ran %d times, want 2 (one retry)", policyRuns)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v after the retry, want none", handles)
	}
}

func TestUnsealRetriesOnlyOnce(t *testing.T) {
	tpm := newDevice(t).open()
	blob, err := tpm.Seal([]byte("secret"), []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	policyRuns := 0
	tpm.testHook = func(step hookStep) {
		if step != afterPolicy {
			return
		}
		policyRuns++
		if err := tpm.extendLocked(15, []byte("busy measurement")); err != nil {
			t.Errorf("extend PCR 15 in hook: %v", err)
		}
	}

	_, err = tpm.Unseal(blob)
	if !errors.Is(err, tpm2.TPMRCPCRChanged) {
		t.Fatalf("Unseal: error = %v, want TPM_RC_PCR_CHANGED", err)
	}
	if policyRuns != 2 {
		t.Errorf("policy ran %d times, want 2 (one retry)", policyRuns)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v after the failed retry, want none", handles)
	}
}

func TestUnsealReportsPCRChangedMidSession(t *testing.T) {
	steps := []struct {
		name string
		step hookStep
	}{
		{"before PolicyPCR", afterPCRCheck},
		{"after PolicyPCR", afterPolicy},
	}
	for _, tt := range steps {
		step := tt.step
		t.Run(tt.name, func(t *testing.T) {
			tpm := newDevice(t).open()
			blob, err := tpm.Seal([]byte("secret"), []int{7, 8})
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}

			extended := false
			tpm.testHook = func(current hookStep) {
				if current == step && !extended {
					extended = true
					if err := tpm.extendLocked(8, []byte("attack")); err != nil {
						t.Errorf("extend PCR 8 in hook: %v", err)
					}
				}
			}

			_, err = tpm.Unseal(blob)
			var mismatch *PCRMismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("Unseal: error = %v, want *PCRMismatchError", err)
			}
			if !slices.Equal(mismatch.PCRs, []int{8}) {
				t.Errorf("mismatched PCRs = %v, want [8]", mismatch.PCRs)
			}
			if handles := openHandles(t, tpm); len(handles) != 0 {
				t.Errorf("handles %v left, want none", handles)
			}
		})
	}
}

func TestReadPCRsAllTwentyFour(t *testing.T) {
	tpm := newDevice(t).open()
	all := make([]int, pcrCount)
	for i := range all {
		all[i] = i
	}

	values, err := tpm.ReadPCRs(all)
	if err != nil {
		t.Fatalf("ReadPCRs: %v", err)
	}
	if len(values) != pcrCount {
		t.Fatalf("ReadPCRs returned %d values, want %d", len(values), pcrCount)
	}
	for _, pcr := range all {
		single, err := tpm.ReadPCRs([]int{pcr})
		if err != nil {
			t.Fatalf("ReadPCRs(%d): %v", pcr, err)
		}
		if !bytes.Equal(values[pcr], single[pcr]) {
			t.Errorf("PCR %d = %x in the full read, %x alone", pcr, values[pcr], single[pcr])
		}
	}
}

func TestReadPCRsRejectsInvalidList(t *testing.T) {
	tpm := newDevice(t).open()
	for _, pcrs := range [][]int{nil, {24}, {-1}, {3, 3}} {
		if _, err := tpm.ReadPCRs(pcrs); err == nil {
			t.Errorf("ReadPCRs(%v) succeeded, want an error", pcrs)
		}
	}
}

func TestExtendPCRExtendsEveryBank(t *testing.T) {
	tpm := newDevice(t).open()
	before, err := tpm.ReadPCRs([]int{14})
	if err != nil {
		t.Fatalf("ReadPCRs: %v", err)
	}
	data := []byte("measured component")

	if err := tpm.ExtendPCR(14, data); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}

	after, err := tpm.ReadPCRs([]int{14})
	if err != nil {
		t.Fatalf("ReadPCRs: %v", err)
	}
	measurement := sha256.Sum256(data)
	want := sha256.Sum256(append(bytes.Clone(before[14]), measurement[:]...))
	if !bytes.Equal(after[14], want[:]) {
		t.Errorf("SHA-256 PCR 14 = %x, want %x", after[14], want)
	}

	// Every other allocated bank moved away from its reset value too.
	for _, bank := range tpm.banks {
		rsp, err := (tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{
			PCRSelections: []tpm2.TPMSPCRSelection{{Hash: bank, PCRSelect: tpm2.PCClientCompatible.PCRs(14)}},
		}}).Execute(tpm.transport)
		if err != nil {
			t.Fatalf("PCRRead bank %v: %v", bank, err)
		}
		if len(rsp.PCRValues.Digests) != 1 {
			t.Fatalf("PCRRead bank %v returned %d values, want 1", bank, len(rsp.PCRValues.Digests))
		}
		value := rsp.PCRValues.Digests[0].Buffer
		if bytes.Equal(value, make([]byte, len(value))) {
			t.Errorf("PCR 14 of bank %v is still zero after ExtendPCR", bank)
		}
	}
}

func TestExtendPCRRejectsOutOfRange(t *testing.T) {
	tpm := newDevice(t).open()
	for _, pcr := range []int{-1, 24} {
		if err := tpm.ExtendPCR(pcr, []byte("x")); err == nil {
			t.Errorf("ExtendPCR(%d) succeeded, want an error", pcr)
		}
	}
}

func TestOpenRejectsRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-tpm")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if err == nil {
		t.Fatal("Open of a regular file succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "neither a Unix socket nor a character device") {
		t.Errorf("error %q does not say which file types work", err)
	}
}

func TestOpenMissingPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	if _, err := Open(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(%s): error = %v, want os.ErrNotExist", path, err)
	}
}

func TestMethodsAfterClose(t *testing.T) {
	tpm := newDevice(t).open()
	blob, err := tpm.Seal([]byte("secret"), []int{7})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if err := tpm.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tpm.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	if _, err := tpm.Seal([]byte("secret"), []int{7}); !errors.Is(err, ErrClosed) {
		t.Errorf("Seal after Close: error = %v, want ErrClosed", err)
	}
	if _, err := tpm.Unseal(blob); !errors.Is(err, ErrClosed) {
		t.Errorf("Unseal after Close: error = %v, want ErrClosed", err)
	}
	if _, err := tpm.ReadPCRs([]int{7}); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadPCRs after Close: error = %v, want ErrClosed", err)
	}
	if err := tpm.ExtendPCR(7, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("ExtendPCR after Close: error = %v, want ErrClosed", err)
	}
	if err := tpm.Clear(); !errors.Is(err, ErrClosed) {
		t.Errorf("Clear after Close: error = %v, want ErrClosed", err)
	}
}

func TestSealDetectsPCRChangeDuringSeal(t *testing.T) {
	tpm := newDevice(t).open()
	tpm.testHook = func(step hookStep) {
		if step == afterCreate {
			if err := tpm.extendLocked(7, []byte("concurrent measurement")); err != nil {
				t.Errorf("extend PCR 7 in hook: %v", err)
			}
		}
	}

	blob, err := tpm.Seal([]byte("secret"), []int{0, 7})
	if blob != nil {
		t.Errorf("Seal returned a blob for PCR values that changed during Seal")
	}
	var mismatch *PCRMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Seal: error = %v, want *PCRMismatchError", err)
	}
	if !slices.Equal(mismatch.PCRs, []int{7}) {
		t.Errorf("mismatched PCRs = %v, want [7]", mismatch.PCRs)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles %v left, want none", handles)
	}
}
