package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// MaxSecretSize is the largest secret Seal accepts. It is MAX_SYM_DATA,
// the capacity of TPM2B_SENSITIVE_DATA, which the TPM 2.0 reference
// implementation and libtpms set to 128 bytes.
const MaxSecretSize = 128

// sessionNonceSize is the nonce size of every session. TPM2_StartAuthSession
// accepts 16 bytes up to the digest size of the session hash (SHA-256), and
// the largest nonce is used.
const sessionNonceSize = sha256.Size

// hookStep names the points of Seal and Unseal at which a test hook runs.
type hookStep int

const (
	// afterPCRCheck is in Unseal after the PCR values matched the blob and
	// before anything is loaded into the TPM.
	afterPCRCheck hookStep = iota
	// afterPolicy is in Unseal after TPM2_PolicyPCR succeeded and before
	// TPM2_Unseal.
	afterPolicy
	// afterCreate is in Seal after TPM2_Create and before the PCRs are read
	// again.
	afterCreate
)

// srkTemplate is the TCG reference ECC P-256 SRK template: restricted
// decrypt, AES-128-CFB, noDA, userWithAuth with an empty authorization.
var srkTemplate = tpm2.ECCSRKTemplate

// sealedObjectTemplate returns the public template of a sealed-data object
// whose only authorization is the policy with digest authPolicy.
func sealedObjectTemplate(authPolicy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:    true,
			FixedParent: true,
			// No userWithAuth: TPM2_Unseal needs the policy session.
			UserWithAuth: false,
			// Admin commands (TPM2_ObjectChangeAuth) would need a policy
			// with TPM2_PolicyCommandCode, which this policy never has.
			AdminWithPolicy: true,
			NoDA:            true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: authPolicy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
	}
}

// storageRootKey is a loaded SRK.
type storageRootKey struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
}

// createSRK creates the SRK in the owner hierarchy. The caller flushes it.
// The returned public area is checked against the template and the name, so
// a salt encrypted to it reaches only the key that name identifies.
func (t *TPM) createSRK() (*storageRootKey, error) {
	rsp, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(srkTemplate),
	}).Execute(t.transport)
	if err != nil {
		return nil, fmt.Errorf("create storage root key: %w", err)
	}
	srk := &storageRootKey{handle: rsp.ObjectHandle, name: rsp.Name}

	if err := checkSRK(rsp, &srk.public); err != nil {
		t.flush(srk.handle, "storage root key")
		return nil, fmt.Errorf("create storage root key: %w", err)
	}
	return srk, nil
}

// checkSRK checks that the TPM's TPM2_CreatePrimary response describes a key
// of the SRK template whose name is the SHA-256 of its public area, and
// stores the parsed public area in public.
func checkSRK(rsp *tpm2.CreatePrimaryResponse, public *tpm2.TPMTPublic) error {
	raw := rsp.OutPublic.Bytes()
	if err := checkPublicArea(raw, srkTemplate, 32); err != nil {
		return fmt.Errorf("public area: %w", err)
	}
	parsed, err := rsp.OutPublic.Contents()
	if err != nil {
		return fmt.Errorf("parse public area: %w", err)
	}

	digest := sha256.Sum256(raw)
	expected := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMAlgSHA256))
	expected = append(expected, digest[:]...)
	if !bytes.Equal(rsp.Name.Buffer, expected) {
		return fmt.Errorf("TPM returned name %x, expected %x from the public area", rsp.Name.Buffer, expected)
	}
	*public = *parsed
	return nil
}

// Seal seals secret, 1 to MaxSecretSize bytes, to this TPM and to the
// current values of pcrs in the SHA-256 bank. The secret reaches the TPM
// only encrypted by a session salted to the SRK. If a PCR changes while
// Seal runs, it returns an error wrapping *PCRMismatchError and no blob.
func (t *TPM) Seal(secret []byte, pcrs []int) (*SealedBlob, error) {
	if len(secret) == 0 || len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("seal to PCRs %v: secret has %d bytes, expected 1 to %d", pcrs, len(secret), MaxSecretSize)
	}
	sorted, err := normalizePCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("seal to PCRs %v: %w", pcrs, err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("seal to PCRs %v: %w", sorted, ErrClosed)
	}

	blob, err := t.seal(secret, sorted)
	if err != nil {
		return nil, fmt.Errorf("seal to PCRs %v: %w", sorted, err)
	}
	return blob, nil
}

func (t *TPM) seal(secret []byte, sorted []int) (*SealedBlob, error) {
	current, err := t.readPCRs(sorted)
	if err != nil {
		return nil, err
	}
	policy := pcrPolicy{pcrs: sorted}
	for _, pcr := range sorted {
		policy.values = append(policy.values, current[pcr])
	}
	authPolicy, err := policy.digest()
	if err != nil {
		return nil, err
	}

	srk, err := t.createSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(srk.handle, "storage root key")

	// The session authorizes the SRK (empty authorization) and encrypts the
	// first command parameter, inSensitive, which carries the secret.
	session, closeSession, err := tpm2.HMACSession(t.transport, tpm2.TPMAlgSHA256, sessionNonceSize,
		tpm2.Salted(srk.handle, srk.public),
		tpm2.AESEncryption(128, tpm2.EncryptIn))
	if err != nil {
		return nil, fmt.Errorf("start salted session: %w", err)
	}
	defer t.closeSession(closeSession)

	rsp, err := (tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: session},
		InSensitive: tpm2.TPM2BSensitiveCreate{
			Sensitive: &tpm2.TPMSSensitiveCreate{
				Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
			},
		},
		InPublic: tpm2.New2B(sealedObjectTemplate(authPolicy)),
	}).Execute(t.transport)
	if err != nil {
		return nil, fmt.Errorf("create sealed object: %w", err)
	}

	t.runHook(afterCreate)

	blob := &SealedBlob{
		SRKName:    bytes.Clone(srk.name.Buffer),
		PCRs:       sorted,
		PCRDigests: policy.values,
		Public:     tpm2.Marshal(rsp.OutPublic),
		Private:    tpm2.Marshal(rsp.OutPrivate),
	}
	if err := blob.validate(); err != nil {
		return nil, fmt.Errorf("TPM returned an unexpected sealed object: %w", err)
	}

	// A PCR extended while Seal ran would leave a blob that cannot unseal
	// in the state the caller sees after Seal returns.
	if err := t.comparePCRs(blob); err != nil {
		return nil, fmt.Errorf("PCRs changed while sealing, seal again: %w", err)
	}
	return blob, nil
}

// Unseal returns the secret sealed in blob. It returns *PCRMismatchError
// when the PCRs differ from the blob's values, and an error wrapping
// ErrSRKChanged when the SRK is not the one the blob was sealed under. It
// never modifies blob.
func (t *TPM) Unseal(blob *SealedBlob) ([]byte, error) {
	if err := blob.validate(); err != nil {
		return nil, fmt.Errorf("unseal: invalid sealed blob: %w", err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("unseal: %w", ErrClosed)
	}

	secret, err := t.unseal(blob)
	if err != nil {
		return nil, fmt.Errorf("unseal from PCRs %v: %w", blob.PCRs, err)
	}
	return secret, nil
}

func (t *TPM) unseal(blob *SealedBlob) ([]byte, error) {
	if err := t.comparePCRs(blob); err != nil {
		return nil, err
	}
	t.runHook(afterPCRCheck)

	srk, err := t.createSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(srk.handle, "storage root key")
	if !bytes.Equal(srk.name.Buffer, blob.SRKName) {
		return nil, fmt.Errorf("storage root key name %x, blob sealed under %x: %w", srk.name.Buffer, blob.SRKName, ErrSRKChanged)
	}

	loaded, err := (tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: blob.Private[2:]},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](blob.Public[2:]),
	}).Execute(t.transport)
	if err != nil {
		return nil, fmt.Errorf("load sealed object: %w", err)
	}
	defer t.flush(loaded.ObjectHandle, "sealed object")
	object := tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name}

	policy := blob.policy()
	secret, retry, err := t.unsealWithPolicy(srk, object, policy)
	if !retry {
		return secret, err
	}

	// If the PCRs still hold the blob's values, the TPM failed the session
	// only because its PCR update counter moved, for example when another
	// PCR was extended, and a second session can succeed.
	if checkErr := t.comparePCRs(blob); checkErr != nil {
		return nil, checkErr
	}
	t.logger.Info("PCRs changed during the unseal policy session, retrying once", "pcrs", blob.PCRs, "error", err)
	secret, _, err = t.unsealWithPolicy(srk, object, policy)
	return secret, err
}

// unsealWithPolicy runs policy in a new policy session and unseals object
// with it. The session is salted to the SRK and encrypts the response
// parameter, outData, which carries the secret. retry reports a failure
// caused by PCRs changing after they were checked.
func (t *TPM) unsealWithPolicy(srk *storageRootKey, object tpm2.NamedHandle, policy sealingPolicy) (secret []byte, retry bool, err error) {
	session, closeSession, err := tpm2.PolicySession(t.transport, tpm2.TPMAlgSHA256, sessionNonceSize,
		tpm2.Salted(srk.handle, srk.public),
		tpm2.AESEncryption(128, tpm2.EncryptOut))
	if err != nil {
		return nil, false, fmt.Errorf("start salted policy session: %w", err)
	}
	defer t.closeSession(closeSession)

	if err := policy.apply(t.transport, session); err != nil {
		// TPM2_PolicyPCR checks the given digest against the current PCRs.
		return nil, errors.Is(err, tpm2.TPMRCValue), err
	}
	t.runHook(afterPolicy)

	rsp, err := (tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: object.Handle, Name: object.Name, Auth: session},
	}).Execute(t.transport)
	if err != nil {
		// TPM_RC_PCR_CHANGED: a PCR changed after TPM2_PolicyPCR.
		// TPM_RC_POLICY_FAIL: the policy digest differs from authPolicy.
		retry := errors.Is(err, tpm2.TPMRCPCRChanged) || errors.Is(err, tpm2.TPMRCPolicyFail)
		return nil, retry, fmt.Errorf("run TPM2_Unseal: %w", err)
	}
	// One copy of the secret goes to the caller, and the response buffer
	// that go-tpm decrypted it into is zeroed.
	secret = bytes.Clone(rsp.OutData.Buffer)
	clear(rsp.OutData.Buffer)
	return secret, false, nil
}

// comparePCRs returns *PCRMismatchError naming every PCR whose current
// SHA-256 value differs from the blob's.
func (t *TPM) comparePCRs(blob *SealedBlob) error {
	current, err := t.readPCRs(blob.PCRs)
	if err != nil {
		return err
	}
	var differing []int
	for i, pcr := range blob.PCRs {
		if !bytes.Equal(current[pcr], blob.PCRDigests[i]) {
			differing = append(differing, pcr)
		}
	}
	if len(differing) > 0 {
		return &PCRMismatchError{PCRs: differing}
	}
	return nil
}

// closeSession flushes a session started with tpm2.HMACSession or
// tpm2.PolicySession. Such sessions set continueSession, so the TPM keeps
// them after each command, on success and on failure.
func (t *TPM) closeSession(closeSession func() error) {
	if err := closeSession(); err != nil {
		t.logger.Warn("flush TPM session", "error", err)
	}
}

func (t *TPM) runHook(step hookStep) {
	if t.testHook != nil {
		t.testHook(step)
	}
}
