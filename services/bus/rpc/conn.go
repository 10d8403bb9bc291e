package rpc

import (
	"bytes"
	"context"
	"fmt"

	"github.com/blocktree/blocktree/services/bus"
)

// sendFrame writes f straight into the send ring, waiting for space until
// ctx is done.
func sendFrame(ctx context.Context, conn *bus.Conn, f Frame) error {
	r, err := conn.Reserve(ctx, Kind, HeaderSize+len(f.Body))
	if err != nil {
		return err
	}
	b := r.Bytes()
	putHeader(b, f)
	copy(b[HeaderSize:], f.Body)
	return r.Commit()
}

// decodeMessage decodes a received message and releases it. The returned
// Body is private memory, because the peer can still write to a payload
// that is a view into the shared memory.
func decodeMessage(msg bus.Message) (Frame, error) {
	defer msg.Release()
	if msg.Kind != Kind {
		return Frame{}, fmt.Errorf("%w: bus message kind %#x, want %#x", ErrMalformed, msg.Kind, Kind)
	}
	f, err := DecodeFrame(msg.Data)
	if err != nil {
		return Frame{}, err
	}
	if msg.InPlace() {
		f.Body = bytes.Clone(f.Body)
	}
	return f, nil
}
