package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/blocktree/blocktree/services/crypto/capability"
)

// maxChainFrame bounds the body of a chain frame in bytes. The largest
// chain that capability.ParseChain accepts (8 links, each with a 4096-byte
// prefix) encodes to 34279 bytes, and TestLargestChainFitsFrame checks that
// it fits.
const maxChainFrame = 64 << 10

// frameHeaderSize is the size of the frame's length prefix.
const frameHeaderSize = 4

// encodeChainFrame returns chain's canonical encoding after its length as a
// big-endian uint32.
func encodeChainFrame(chain capability.Chain) ([]byte, error) {
	body, err := chain.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(body) > maxChainFrame {
		return nil, fmt.Errorf("encode chain frame: %d bytes, limit %d", len(body), maxChainFrame)
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, frameHeaderSize+len(body)), uint32(len(body)))
	return append(frame, body...), nil
}

// readChainFrame reads one chain frame from r and decodes the chain. It
// reads no byte past the frame. The chain is decoded, not verified. Errors
// about the frame's content wrap ErrFrame, and a peer that closes the
// connection before the first byte gives io.EOF.
func readChainFrame(r io.Reader) (capability.Chain, error) {
	var header [frameHeaderSize]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: connection closed inside the length prefix", ErrFrame)
		}
		return nil, err
	}
	size := binary.BigEndian.Uint32(header[:])
	if size > maxChainFrame {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrame, size, maxChainFrame)
	}

	body := make([]byte, size)
	if n, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: connection closed after %d of %d bytes", ErrFrame, n, size)
		}
		return nil, err
	}
	chain, err := capability.ParseChain(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return chain, nil
}

// acceptFrame is the listener's reply to a chain that verified: a frame
// of length 0, which no chain frame has because an empty chain still
// encodes to a few bytes.
var acceptFrame = [frameHeaderSize]byte{}

// readAcceptFrame reads the listener's acceptance. A peer that closes the
// connection before the first byte gives io.EOF.
func readAcceptFrame(r io.Reader) error {
	var header [frameHeaderSize]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: connection closed inside the acceptance", ErrFrame)
		}
		return err
	}
	if header != acceptFrame {
		return fmt.Errorf("%w: acceptance is %x, expected %x", ErrFrame, header, acceptFrame)
	}
	return nil
}
