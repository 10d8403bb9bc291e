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
