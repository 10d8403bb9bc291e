package endpoint

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Bus message kinds of the first messages on a connection.
const (
	KindHello      uint32 = 0x62746865 // "bthe": the dialer's hello
	KindOpen       uint32 = 0x62746f70 // "btop": open request to netd
	KindOpened     uint32 = 0x62746f6b // "btok": netd opened the circuit
	KindOpenFailed uint32 = 0x62746572 // "bter": netd could not open it
)

// WireVersion is the version byte of the hello and of the open request.
const WireVersion = 1

// ErrMalformed is wrapped by the errors of the decoders.
var ErrMalformed = errors.New("malformed endpoint message")

// Origin is the principal that a connection speaks for, with the writecap
// chain that lets it reach the address. A connection from a process of
// this node speaks for the node, with an empty chain.
type Origin struct {
	Principal principal.Principal
	Chain     capability.Chain
	// Remote is true when the origin was claimed by netd for a principal
	// on another node.
	Remote bool
}

const (
	claimNone   = 0
	claimRemote = 1
)

// encodeHello returns the hello payload: claim 0 for a nil origin and
// claim 1 with the principal and chain otherwise.
func encodeHello(origin *Origin) ([]byte, error) {
	if origin == nil {
		return []byte{WireVersion, claimNone}, nil
	}
	chain, err := origin.Chain.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode hello: %w", err)
	}
	b := make([]byte, 0, 2+principal.Size+len(chain))
	b = append(b, WireVersion, claimRemote)
	b = append(b, origin.Principal[:]...)
	return append(b, chain...), nil
}

// decodeHello decodes a hello payload. It returns a nil origin for claim
// 0. It copies what it keeps, so b may be shared memory.
func decodeHello(b []byte) (*Origin, error) {
	b = append([]byte(nil), b...)
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: hello of %d bytes, shorter than 2", ErrMalformed, len(b))
	}
	if b[0] != WireVersion {
		return nil, fmt.Errorf("%w: hello version %d, expected %d", ErrMalformed, b[0], WireVersion)
	}
	switch b[1] {
	case claimNone:
		if len(b) != 2 {
			return nil, fmt.Errorf("%w: hello without a claim has %d trailing bytes", ErrMalformed, len(b)-2)
		}
		return nil, nil
	case claimRemote:
	default:
		return nil, fmt.Errorf("%w: hello claim %d, expected 0 or 1", ErrMalformed, b[1])
	}
	if len(b) < 2+principal.Size {
		return nil, fmt.Errorf("%w: hello of %d bytes is too short for a principal", ErrMalformed, len(b))
	}
	o := &Origin{Remote: true}
	copy(o.Principal[:], b[2:2+principal.Size])
	if o.Principal.IsZero() {
		return nil, fmt.Errorf("%w: hello claims the zero principal", ErrMalformed)
	}
	chain, err := capability.ParseChain(b[2+principal.Size:])
	if err != nil {
		return nil, fmt.Errorf("%w: hello chain: %w", ErrMalformed, err)
	}
	o.Chain = chain
	return o, nil
}

// openRequest is the payload of KindOpen.
type openRequest struct {
	deadline int64 // Unix nanoseconds, 0 for none
	address  string
}

const openHeaderSize = 9

// EncodeOpen returns the payload of a KindOpen message for the
// destination address and the deadline (Unix nanoseconds, 0 for none).
func EncodeOpen(address string, deadline int64) []byte {
	return encodeOpen(openRequest{deadline: deadline, address: address})
}

func encodeOpen(r openRequest) []byte {
	b := make([]byte, openHeaderSize, openHeaderSize+len(r.address))
	b[0] = WireVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(r.deadline))
	return append(b, r.address...)
}

// DecodeOpen decodes the payload of a KindOpen message into the
// destination address and the deadline (Unix nanoseconds, 0 for none).
func DecodeOpen(b []byte) (Address, int64, error) {
	b = append([]byte(nil), b...)
	if len(b) < openHeaderSize {
		return Address{}, 0, fmt.Errorf("%w: open request of %d bytes, shorter than %d", ErrMalformed, len(b), openHeaderSize)
	}
	if b[0] != WireVersion {
		return Address{}, 0, fmt.Errorf("%w: open request version %d, expected %d", ErrMalformed, b[0], WireVersion)
	}
	deadline := int64(binary.BigEndian.Uint64(b[1:9]))
	if deadline < 0 {
		return Address{}, 0, fmt.Errorf("%w: open request deadline %d is negative", ErrMalformed, deadline)
	}
	a, err := Parse(string(b[openHeaderSize:]))
	if err != nil {
		return Address{}, 0, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return a, deadline, nil
}

// maxReason bounds the explanation in an open failure in bytes.
const maxReason = 1024

// EncodeOpenFailed returns the payload of KindOpenFailed for err.
func EncodeOpenFailed(code Code, reason string) []byte {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	return append([]byte{byte(code)}, reason...)
}

// decodeOpenFailed decodes the payload of KindOpenFailed.
func decodeOpenFailed(b []byte) (*RemoteError, error) {
	b = append([]byte(nil), b...)
	if len(b) < 1 || len(b) > 1+maxReason {
		return nil, fmt.Errorf("%w: open failure of %d bytes, expected 1 to %d", ErrMalformed, len(b), 1+maxReason)
	}
	code := Code(b[0])
	if !code.Valid() {
		return nil, fmt.Errorf("%w: open failure code %d", ErrMalformed, b[0])
	}
	return &RemoteError{Code: code, Reason: string(b[1:])}, nil
}
