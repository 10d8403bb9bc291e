package shell

import (
	"errors"
	"testing"

	"github.com/blocktree/blocktree/services/bus"
)

// rawMessage is one message that a misbehaving client sends.
type rawMessage struct {
	kind    uint32
	payload []byte
}

func TestMalformedClientMessages(t *testing.T) {
	open := rawMessage{KindOpen, encodeOpen(Open{Argv: []string{"sh", "-c", "echo ready; cat"}})}
	tests := map[string][]rawMessage{
		"stdin first":            {{KindStdin, encodeData([]byte("x"))}},
		"unknown kind first":     {{0x12345678, []byte{Version}}},
		"empty open":             {{KindOpen, nil}},
		"open of version 2":      {{KindOpen, append([]byte{2}, open.payload[1:]...)}},
		"open with LD_PRELOAD":   {{KindOpen, encodeOpen(Open{Argv: []string{"sh"}, Env: []string{"LD_PRELOAD=/x.so"}})}},
		"second open":            {open, open},
		"server kind":            {open, {KindStdout, encodeData([]byte("x"))}},
		"signal STOP":            {open, {KindSignal, encodeSignal(19)}},
		"short resize":           {open, {KindResize, []byte{Version, 0}}},
		"stdin without version":  {open, {KindStdin, nil}},
		"stdin after close":      {open, {KindStdinClose, []byte{Version}}, {KindStdin, encodeData([]byte("x"))}},
		"stdin close with bytes": {open, {KindStdinClose, []byte{Version, 0}}},
	}
	for name, messages := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			client, wait := startServer(t, ServerOptions{})
			for _, m := range messages {
				if err := client.Send(ctx, m.kind, m.payload); err != nil {
					t.Fatal(err)
				}
			}

			var code ErrorCode
			for code == 0 {
				msg, err := client.Recv(ctx)
				if errors.Is(err, bus.ErrPeerGone) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if msg.Kind == KindError {
					code, _, err = decodeError(msg.Data)
					if err != nil {
						t.Fatal(err)
					}
				}
				msg.Release()
			}
			if code != CodeInvalid {
				t.Errorf("error code = %v, want %v", code, CodeInvalid)
			}
			if err := wait(); !errors.Is(err, ErrMalformed) {
				t.Errorf("Serve error = %v, want ErrMalformed", err)
			}
		})
	}
}
