// Package keystore keeps a principal's credential on disk, never in the clear.
//
// A credential (a signing key and an encryption key) is generated in memory
// and written to a key directory in two protected copies:
//
//   - the primary copy, protected by a Protector: sealed by the TPM to a PCR
//     policy on a device, or wrapped under a passphrase through Argon2id on a
//     workstation without a TPM;
//   - the recovery copy, wrapped under a recovery key: 256 random bits shown
//     once when the credential is created and never stored. When the TPM
//     refuses (it was cleared, the firmware or boot chain changed, the board
//     was replaced), the recovery key unwraps the credential and Recover
//     protects it again with the TPM as it is now.
//
// The public identity is stored in the clear beside them, so that showing a
// principal never needs a secret.
//
// Every write is atomic: Create builds the directory under a temporary name and
// renames it into place, and Recover replaces one file by rename, so a crash or
// a failed step leaves either the old state or the new one. Load and failed
// unseals write nothing.
//
// Wrapped copies bind the principal in the AEAD's associated data, so a
// wrapped file copied from another key directory does not open here.
package keystore
