package rpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	want := Frame{Type: TypeError, ID: 1<<63 + 5, Deadline: 1_700_000_000_123_456_789, Method: 0xdeadbeef, Body: []byte("body")}
	b := AppendFrame([]byte("prefix"), want)
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatalf("AppendFrame dropped the existing bytes: %x", b)
	}
	if len(b) != len("prefix")+HeaderSize+len(want.Body) {
		t.Fatalf("encoded length %d, want %d", len(b), len("prefix")+HeaderSize+len(want.Body))
	}

	got, err := DecodeFrame(b[len("prefix"):])
	if err != nil {
		t.Fatalf("DecodeFrame: %v", err)
	}
	if got.Type != want.Type || got.ID != want.ID || got.Deadline != want.Deadline || got.Method != want.Method {
		t.Errorf("header = %+v, want %+v", got, want)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("body = %q, want %q", got.Body, want.Body)
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	valid := AppendFrame(nil, Frame{Type: TypeRequest, ID: 1, Method: 2})
	modified := func(change func(b []byte)) []byte {
		b := bytes.Clone(valid)
		change(b)
		return b
	}
	cases := map[string][]byte{
		"empty":             nil,
		"short header":      valid[:HeaderSize-1],
		"version 0":         modified(func(b []byte) { b[0] = 0 }),
		"version 2":         modified(func(b []byte) { b[0] = 2 }),
		"type 0":            modified(func(b []byte) { b[1] = 0 }),
		"type 4":            modified(func(b []byte) { b[1] = 4 }),
		"reserved set":      modified(func(b []byte) { b[3] = 1 }),
		"negative deadline": modified(func(b []byte) { binary.BigEndian.PutUint64(b[12:20], 1<<63) }),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeFrame(b)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeFrame(%x) = %v, want an error wrapping ErrMalformed", b, err)
			}
		})
	}
}

// FuzzDecodeFrame checks that DecodeFrame never panics and that every frame
// it accepts encodes back to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, HeaderSize-1))
	f.Add(make([]byte, HeaderSize))
	f.Add(AppendFrame(nil, Frame{Type: TypeRequest, ID: 1, Deadline: 1_700_000_000_000_000_000, Method: 7, Body: []byte("hello")}))
	f.Add(AppendFrame(nil, Frame{Type: TypeReply, ID: 1<<64 - 1, Method: 1<<32 - 1}))
	f.Add(AppendFrame(nil, Frame{Type: TypeError, ID: 2, Body: []byte("no such file")}))
	f.Add(AppendFrame(nil, Frame{Type: 9, ID: 2}))
	f.Add(AppendFrame(nil, Frame{Type: TypeRequest, Deadline: -1}))

	f.Fuzz(func(t *testing.T, b []byte) {
		frame, err := DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeFrame error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if again := AppendFrame(nil, frame); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %+v gives %x, want the input %x", frame, again, b)
		}
	})
}
