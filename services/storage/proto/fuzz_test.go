package proto

import (
	"bytes"
	"testing"
)

// FuzzDecodeRequest checks that DecodeRequest never panics and that every
// request it accepts encodes back to exactly the bytes it came from.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		msg := encodeRequest(f, &r)
		f.Add(msg)
		f.Add(msg[:len(msg)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x02, 0x00, 0x01})

	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		if err := DecodeRequest(data, &r); err != nil {
			return
		}
		again, err := AppendRequest(nil, &r)
		if err != nil {
			t.Fatalf("AppendRequest of an accepted %s request: %v", r.Op, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted %s request of %d bytes encodes to %d different bytes", r.Op, len(data), len(again))
		}
	})
}

// FuzzDecodeResponse checks the same for DecodeResponse.
func FuzzDecodeResponse(f *testing.F) {
	for _, r := range sampleResponses() {
		msg := encodeResponse(f, &r)
		f.Add(msg)
		f.Add(msg[:len(msg)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x02, 0x01, 0x01})

	f.Fuzz(func(t *testing.T, data []byte) {
		var r Response
		if err := DecodeResponse(data, &r); err != nil {
			return
		}
		again, err := AppendResponse(nil, &r)
		if err != nil {
			t.Fatalf("AppendResponse of an accepted %s response: %v", r.Op, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted %s response of %d bytes encodes to %d different bytes", r.Op, len(data), len(again))
		}
	})
}
