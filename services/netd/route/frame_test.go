package route

import (
	"bytes"
	"testing"
)

func TestMsgHeaderMatchesFrame(t *testing.T) {
	for _, size := range []int{0, 1, copyLimit - 1, copyLimit, MaxMessage} {
		payload := bytes.Repeat([]byte{0xa5}, size)
		got := append(appendMsgHeader(nil, 9, 0x70696e67, size), payload...)
		want := appendFrame(nil, Frame{Type: FrameMsg, Circuit: 9, Body: msgBody(0x70696e67, payload)})
		if !bytes.Equal(got, want) {
			t.Errorf("MSG frame of a %d-byte payload: header and payload differ from appendFrame's encoding", size)
			continue
		}
		f, err := readFrame(bytes.NewReader(got))
		if err != nil {
			t.Errorf("readFrame of a %d-byte MSG frame: %v", size, err)
			continue
		}
		if f.Type != FrameMsg || f.Circuit != 9 || !bytes.Equal(f.Body[4:], payload) {
			t.Errorf("readFrame of a %d-byte MSG frame = type %d, circuit %d, %d payload bytes; want MSG on circuit 9 with the payload", size, f.Type, f.Circuit, len(f.Body)-4)
		}
	}
}

func TestBodyPoolSizes(t *testing.T) {
	if 1<<maxPooledShift < maxBody || 1<<(maxPooledShift-1) >= maxBody {
		t.Fatalf("maxPooledShift %d: 1<<%d is not the smallest power of two that fits maxBody (%d bytes)", maxPooledShift, maxPooledShift, maxBody)
	}
	if 1<<minPooledShift != copyLimit {
		t.Fatalf("minPooledShift %d: 1<<%d is not copyLimit (%d bytes)", minPooledShift, minPooledShift, copyLimit)
	}
	for _, n := range []int{0, 100, copyLimit - 1, copyLimit, copyLimit + 1, 1 << 15, 1<<15 + 1, 300 << 10, maxBody} {
		b := getBody(n)
		if len(b) != n {
			t.Errorf("getBody(%d) has length %d", n, len(b))
		}
		if n >= copyLimit && (cap(b) < n || cap(b)&(cap(b)-1) != 0 || cap(b) > 1<<maxPooledShift) {
			t.Errorf("getBody(%d) has capacity %d, want the power of two that fits it", n, cap(b))
		}
		putBody(b)
		if again := getBody(n); len(again) != n {
			t.Errorf("getBody(%d) after putBody has length %d", n, len(again))
		}
	}
}
