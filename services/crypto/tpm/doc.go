// Package tpm seals short secrets to a TPM 2.0 and the state of its PCRs,
// through the tpm2 API of github.com/google/go-tpm. It talks to a hardware
// TPM through the kernel resource manager (/dev/tpmrm0) or to swtpm through
// its Unix socket. Open chooses the transport by the type of the file.
//
// # Model
//
// Seal creates a sealed-data object (a KeyedHash object that holds the
// secret) as a child of the storage root key (SRK) and returns it as a
// SealedBlob: the TPM2B_PUBLIC and TPM2B_PRIVATE of the object, the SRK's
// name, and the PCR numbers and SHA-256 values that the object's policy
// expects. The private part is encrypted by the TPM under the SRK, so the
// blob is useless without the same TPM and owner hierarchy. The caller
// stores the blob, because this package writes no files.
//
// The SRK is the TCG reference ECC P-256 SRK template (restricted decrypt,
// AES-128-CFB, noDA, empty authorization) under the owner hierarchy. It is
// not persisted at 0x81000001. Every method that needs it runs
// TPM2_CreatePrimary, which derives the same key from the owner seed each
// time, and flushes it before returning. This avoids writing TPM NV memory
// and never takes a persistent handle that other software on the machine
// may own. TPM2_Clear replaces the owner seed, so the SRK changes and Unseal
// reports ErrSRKChanged.
//
// The sealed object's authPolicy is TPM2_PolicyPCR over the chosen PCRs of
// the SHA-256 bank. Its attributes are fixedTPM, fixedParent, noDA,
// adminWithPolicy and no userWithAuth, so only a policy session that
// satisfies the PCR policy can unseal it, and unsealing attempts never count
// towards the TPM's dictionary-attack lockout.
//
// Unseal first reads the PCRs and returns *PCRMismatchError, naming each
// differing PCR, before it creates or loads anything. Otherwise it checks the
// SRK's name against the blob, loads the object, runs PolicyPCR with the
// expected values in a fresh policy session and calls TPM2_Unseal. A PCR can
// still change between the read and the unseal: the TPM then rejects
// PolicyPCR (TPM_RC_VALUE) or Unseal (TPM_RC_PCR_CHANGED, because the TPM's
// PCR update counter moved since PolicyPCR, or TPM_RC_POLICY_FAIL). The
// counter is global, so an extend of any other PCR also fails the session.
// Unseal then reads the PCRs again, returns *PCRMismatchError if they now
// differ, and otherwise retries once with a new session. PCRs 16 and 23 do
// not move the counter on libtpms (swtpm 0.7.1), so a change to them after
// PolicyPCR within the same session goes unnoticed.
//
// Seal reads the PCRs again after TPM2_Create and fails with a wrapped
// *PCRMismatchError if they changed, so it never returns a blob for values
// the PCRs no longer hold.
//
// # Invariants
//
//   - Every command that carries a secret runs in a session salted to the SRK
//     with AES-128-CFB parameter encryption: TPM2_Create encrypts the secret
//     on the way in, TPM2_Unseal encrypts it on the way out. The SRK's public
//     area is checked against its name (nameAlg || SHA-256 of the public
//     area) and against the template before it is used for salting, and
//     Unseal compares that name with the blob's, so the salt goes only to
//     the key the blob was sealed under.
//   - No transient object or session outlives a method call: primaries,
//     loaded objects and sessions are flushed by deferred TPM2_FlushContext,
//     on errors as well. A failed flush is logged, not returned.
//   - PCR numbers are 0 to 23, the PC Client minimum of 24 PCRs. PCR lists
//     are sorted, without duplicates, and non-empty.
//   - A SealedBlob is validated on encode, decode and Unseal. Its public
//     area must be exactly the sealed-object template with the authPolicy
//     computed from its PCR values. A blob whose expected values were
//     altered is therefore rejected instead of reported as a PCR mismatch.
//   - Open sends TPM2_Startup(CLEAR) only when the TPM returns
//     TPM_RC_INITIALIZE. swtpm started with startup-clear has already sent
//     it, and behind /dev/tpmrm0 the firmware has, or the kernel driver if
//     the firmware did not.
//   - Close sends TPM2_Shutdown(STATE), so a clean restart is orderly. A TPM
//     that restarts without it increments its dictionary-attack counter
//     (TPM_PT_LOCKOUT_COUNTER). libtpms, like the TPM reference code, does
//     so only if a DA-protected object was authorized since the last orderly
//     shutdown. The SRK and sealed objects are noDA, so they never add to the
//     counter and Unseal works even in lockout.
//
// A TPM value is safe for concurrent use. Its methods are serialized because
// neither transport supports interleaved commands.
package tpm
