package capability

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// MaxChainDepth bounds the number of links in a chain. Each link costs one
// signature verification per block read, and real delegations (user, device,
// service, process) are a handful deep.
const MaxChainDepth = 8

// Sentinel errors of chain verification, wrapped in *ChainError.
var (
	ErrExpired      = errors.New("writecap expired")
	ErrNotYetValid  = errors.New("writecap not yet valid")
	ErrOutOfScope   = errors.New("path outside the writecap's prefix")
	ErrBadSignature = errors.New("writecap signature does not verify")
	ErrLoop         = errors.New("principal appears twice in the chain")
	ErrTooDeep      = errors.New("chain longer than the maximum depth")
	ErrBrokenChain  = errors.New("issuer is not the previous link's subject")
	ErrWrongRoot    = errors.New("chain does not start at the tree's root principal")
	ErrWrongWriter  = errors.New("chain does not end at the writer")
)

// ChainError reports which link of a chain failed and why.
type ChainError struct {
	Index int // link index, 0 for the root's grant; -1 for the chain as a whole
	Err   error
}

func (e *ChainError) Error() string {
	if e.Index < 0 {
		return "writecap chain: " + e.Err.Error()
	}
	return fmt.Sprintf("writecap chain link %d: %v", e.Index, e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

// Writecap grants Subject the right to write under Prefix from NotBefore until
// Expires. Times have one-second resolution because they are encoded as Unix
// seconds.
type Writecap struct {
	Issuer    principal.PublicKey
	Subject   principal.Principal
	Prefix    string
	NotBefore time.Time
	Expires   time.Time
	Signature []byte
}

const (
	writecapVersion = 1
	chainVersion    = 1

	// writecapContext separates writecap signatures from every other signature.
	writecapContext = "blocktree writecap v1"

	// maxWritecapSize bounds one encoded writecap: header, key, subject,
	// prefix, times and signature.
	maxWritecapSize = wire.HeaderSize + principal.PublicKeySize + principal.Size + 4 + MaxPathLen + 16 + principal.SignatureSize
)

// Issue creates and signs a writecap from issuer to subject.
func Issue(issuer principal.SigningKey, subject principal.Principal, prefix string, notBefore, expires time.Time) (*Writecap, error) {
	if err := ValidatePath(prefix); err != nil {
		return nil, fmt.Errorf("issue writecap: %w", err)
	}
	// Compare the Unix seconds that get signed, because time.Time comparisons
	// wrap around near the int64 limits and see sub-second parts that are dropped.
	if expires.Unix() <= notBefore.Unix() {
		return nil, fmt.Errorf("issue writecap: expiry %s is not after start %s", expires.UTC().Format(time.RFC3339), notBefore.UTC().Format(time.RFC3339))
	}
	w := &Writecap{
		Issuer:    issuer.Public(),
		Subject:   subject,
		Prefix:    prefix,
		NotBefore: time.Unix(notBefore.Unix(), 0),
		Expires:   time.Unix(expires.Unix(), 0),
	}
	sig, err := issuer.Sign(writecapContext, w.signedBytes())
	if err != nil {
		return nil, err
	}
	w.Signature = sig
	return w, nil
}

// signedBytes is the encoding without the signature; the signature covers it.
func (w *Writecap) signedBytes() []byte {
	e := wire.NewEncoder(wire.KindWritecap, writecapVersion)
	e.Fixed(w.Issuer.Bytes())
	e.Fixed(w.Subject[:])
	e.String(w.Prefix)
	e.Int64(w.NotBefore.Unix())
	e.Int64(w.Expires.Unix())
	return e.Data()
}

// MarshalBinary returns the canonical encoding, signature last.
func (w *Writecap) MarshalBinary() ([]byte, error) {
	if w.Issuer.IsZero() || len(w.Signature) != principal.SignatureSize {
		return nil, errors.New("encode writecap: unsigned")
	}
	return append(w.signedBytes(), w.Signature...), nil
}

// ParseWritecap decodes a writecap. It checks the form of every field but not
// the signature, which Verify checks in the context of a chain.
func ParseWritecap(data []byte) (*Writecap, error) {
	d := wire.NewDecoder(data, wire.KindWritecap, writecapVersion)
	issuer := d.Fixed(principal.PublicKeySize)
	subject := d.Fixed(principal.Size)
	prefix := d.String(MaxPathLen)
	notBefore := d.Int64()
	expires := d.Int64()
	sig := d.Fixed(principal.SignatureSize)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode writecap: %w", err)
	}

	w := &Writecap{Prefix: prefix, NotBefore: time.Unix(notBefore, 0), Expires: time.Unix(expires, 0)}
	var err error
	if w.Issuer, err = principal.ParsePublicKey(issuer); err != nil {
		return nil, fmt.Errorf("decode writecap: %w", err)
	}
	copy(w.Subject[:], subject)
	if err := ValidatePath(prefix); err != nil {
		return nil, fmt.Errorf("decode writecap: %w", err)
	}
	w.Signature = append([]byte(nil), sig...)
	return w, nil
}

// Chain is a sequence of writecaps: the root's grant first, the writer's last.
type Chain []*Writecap

// MarshalBinary returns the canonical encoding of the chain.
func (c Chain) MarshalBinary() ([]byte, error) {
	if len(c) > MaxChainDepth {
		return nil, fmt.Errorf("encode chain: %d links, limit %d", len(c), MaxChainDepth)
	}
	e := wire.NewEncoder(wire.KindChain, chainVersion)
	e.Uint32(uint32(len(c)))
	for i, w := range c {
		b, err := w.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode chain link %d: %w", i, err)
		}
		e.Bytes(b)
	}
	return e.Data(), nil
}

// ParseChain decodes a chain of at most MaxChainDepth links.
func ParseChain(data []byte) (Chain, error) {
	d := wire.NewDecoder(data, wire.KindChain, chainVersion)
	n := d.Count(MaxChainDepth)
	links := make([][]byte, 0, n)
	for range n {
		links = append(links, d.Bytes(maxWritecapSize))
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode chain: %w", err)
	}
	chain := make(Chain, 0, n)
	for i, b := range links {
		w, err := ParseWritecap(b)
		if err != nil {
			return nil, fmt.Errorf("decode chain link %d: %w", i, err)
		}
		chain = append(chain, w)
	}
	return chain, nil
}

// ChainTextPrefix starts the text form of a chain, which fits a terminal
// and a serial console where the binary form does not.
const ChainTextPrefix = "blocktree-chain:"

// MarshalText returns the text form of the chain: ChainTextPrefix and the
// canonical encoding in standard base64.
func (c Chain) MarshalText() ([]byte, error) {
	b, err := c.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return []byte(ChainTextPrefix + base64.StdEncoding.EncodeToString(b)), nil
}

// ParseChainFile decodes a chain file in either form: the canonical
// encoding, or the text form with surrounding white space.
func ParseChainFile(data []byte) (Chain, error) {
	text := bytes.TrimSpace(data)
	if !bytes.HasPrefix(text, []byte(ChainTextPrefix)) {
		return ParseChain(data)
	}
	encoded := text[len(ChainTextPrefix):]
	if base64.StdEncoding.DecodedLen(len(encoded)) > MaxChainDepth*maxWritecapSize+64 {
		return nil, fmt.Errorf("decode chain text: %d characters, more than a chain of %d links needs", len(encoded), MaxChainDepth)
	}
	binary := make([]byte, base64.StdEncoding.DecodedLen(len(encoded)))
	n, err := base64.StdEncoding.Decode(binary, encoded)
	if err != nil {
		return nil, fmt.Errorf("decode chain text: %w: copy the whole line that bt keys issue printed", err)
	}
	return ParseChain(binary[:n])
}

// Verify checks that the chain lets writer write path in root's tree at time
// now. It checks every link: depth, linkage, loops, signature, validity
// period and scope, and returns the first failure as a *ChainError.
func (c Chain) Verify(root, writer principal.Principal, path string, now time.Time) error {
	pathRoot, err := PathRoot(path)
	if err != nil {
		return &ChainError{Index: -1, Err: err}
	}
	if pathRoot != root {
		return &ChainError{Index: -1, Err: fmt.Errorf("%w: path %q is in the tree of %s, expected %s", ErrOutOfScope, path, pathRoot, root)}
	}
	if len(c) > MaxChainDepth {
		return &ChainError{Index: -1, Err: fmt.Errorf("%w: %d links, limit %d", ErrTooDeep, len(c), MaxChainDepth)}
	}

	// The root writes in its own tree with no chain at all.
	if len(c) == 0 {
		if writer != root {
			return &ChainError{Index: -1, Err: fmt.Errorf("%w: empty chain, writer %s is not the root %s", ErrWrongWriter, writer, root)}
		}
		return nil
	}

	seen := make(map[principal.Principal]bool, len(c)+1)
	scope := RootPath(root)
	expectedIssuer := root
	for i, w := range c {
		if w == nil || w.Issuer.IsZero() {
			return &ChainError{Index: i, Err: fmt.Errorf("%w: link has no issuer key", ErrBadSignature)}
		}
		issuer := w.Issuer.Principal()
		switch {
		case seen[issuer]:
			return &ChainError{Index: i, Err: fmt.Errorf("%w: %s", ErrLoop, issuer)}
		case issuer != expectedIssuer && i == 0:
			return &ChainError{Index: i, Err: fmt.Errorf("%w: issuer %s, root %s", ErrWrongRoot, issuer, root)}
		case issuer != expectedIssuer:
			return &ChainError{Index: i, Err: fmt.Errorf("%w: issuer %s, expected %s", ErrBrokenChain, issuer, expectedIssuer)}
		}
		seen[issuer] = true

		if err := w.Issuer.Verify(writecapContext, w.signedBytes(), w.Signature); err != nil {
			return &ChainError{Index: i, Err: fmt.Errorf("%w: issuer %s", ErrBadSignature, issuer)}
		}
		// Compare Unix seconds, as encoded, because time.Time comparisons wrap
		// around near the int64 limits. A NotBefore of math.MaxInt64 would
		// otherwise look like the distant past.
		if now.Unix() < w.NotBefore.Unix() {
			return &ChainError{Index: i, Err: fmt.Errorf("%w: valid from %s", ErrNotYetValid, w.NotBefore.UTC().Format(time.RFC3339))}
		}
		if now.Unix() >= w.Expires.Unix() {
			return &ChainError{Index: i, Err: fmt.Errorf("%w at %s", ErrExpired, w.Expires.UTC().Format(time.RFC3339))}
		}
		if !Covers(scope, w.Prefix) {
			return &ChainError{Index: i, Err: fmt.Errorf("%w: prefix %q is outside %q", ErrOutOfScope, w.Prefix, scope)}
		}
		scope = w.Prefix
		expectedIssuer = w.Subject
	}

	if seen[expectedIssuer] {
		return &ChainError{Index: len(c) - 1, Err: fmt.Errorf("%w: subject %s", ErrLoop, expectedIssuer)}
	}
	if expectedIssuer != writer {
		return &ChainError{Index: len(c) - 1, Err: fmt.Errorf("%w: last subject %s, writer %s", ErrWrongWriter, expectedIssuer, writer)}
	}
	if !Covers(scope, path) {
		return &ChainError{Index: len(c) - 1, Err: fmt.Errorf("%w: path %q is outside %q", ErrOutOfScope, path, scope)}
	}
	return nil
}
