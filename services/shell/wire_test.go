package shell

import (
	"errors"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

func TestOpenRoundTrip(t *testing.T) {
	tests := []Open{
		{},
		{Argv: []string{"sh", "-c", "echo ''"}, TTY: true, Size: WindowSize{Rows: 24, Cols: 80}},
		{Argv: []string{"ls", ""}, Env: []string{"TERM=xterm-256color", "LANG=C.UTF-8"}},
	}
	for _, want := range tests {
		got, err := decodeOpen(encodeOpen(want))
		if err != nil {
			t.Errorf("decodeOpen(encodeOpen(%+v)): %v", want, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeOpen(encodeOpen(%+v)) = %+v", want, got)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	valid := encodeOpen(Open{Argv: []string{"sh"}})
	tests := map[string][]byte{
		"empty":          nil,
		"other version":  append([]byte{2}, valid[1:]...),
		"unknown flag":   append([]byte{Version, 2}, valid[2:]...),
		"truncated":      valid[:len(valid)-1],
		"trailing bytes": append(append([]byte(nil), valid...), 0),
		"empty command":  encodeOpen(Open{Argv: []string{""}}),
		"NUL in arg":     encodeOpen(Open{Argv: []string{"sh", "a\x00b"}}),
		"other env":      encodeOpen(Open{Argv: []string{"sh"}, Env: []string{"LD_PRELOAD=/tmp/x.so"}}),
		"env without =":  encodeOpen(Open{Argv: []string{"sh"}, Env: []string{"TERM"}}),
		"too many env":   encodeOpen(Open{Env: strings.Split(strings.Repeat("TERM=x,", MaxEnv+1)[:len("TERM=x,")*(MaxEnv+1)-1], ",")}),
		"huge length":    {Version, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff},
	}
	for name, payload := range tests {
		if _, err := decodeOpen(payload); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decodeOpen error = %v, want ErrMalformed", name, err)
		}
	}
}

func TestSignalDecoding(t *testing.T) {
	for _, sig := range allowedSignals {
		got, err := decodeSignal(encodeSignal(sig))
		if err != nil || got != sig {
			t.Errorf("decodeSignal(encodeSignal(%v)) = %v, %v", sig, got, err)
		}
	}
	for _, sig := range []syscall.Signal{0, syscall.SIGSTOP, syscall.SIGUSR1, syscall.SIGSEGV, 255} {
		if _, err := decodeSignal(encodeSignal(sig)); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeSignal(%d) error = %v, want ErrMalformed", int(sig), err)
		}
	}
}

func TestErrorTextPrintable(t *testing.T) {
	code, text, err := decodeError(encodeError(CodeStart, "start x: \x1b[2Jcleared\xff\n"))
	if err != nil {
		t.Fatal(err)
	}
	if code != CodeStart {
		t.Errorf("code = %v, want %v", code, CodeStart)
	}
	if strings.ContainsAny(text, "\x1b\n") || !utf8.ValidString(text) {
		t.Errorf("text = %q, want control characters and invalid UTF-8 replaced", text)
	}
	long := encodeError(CodeInternal, strings.Repeat("é", MaxErrorText))
	if _, text, err := decodeError(long); err != nil || !utf8.ValidString(text) {
		t.Errorf("long error text: %v, valid UTF-8 %v; want it cut at a character boundary", err, utf8.ValidString(text))
	}
}

func TestExitDecoding(t *testing.T) {
	for _, want := range []Exit{{}, {Code: 7}, {Signal: 9}} {
		got, err := decodeExit(encodeExit(want))
		if err != nil || got != want {
			t.Errorf("decodeExit(encodeExit(%+v)) = %+v, %v", want, got, err)
		}
	}
	if _, err := decodeExit([]byte{Version, 1, 9}); !errors.Is(err, ErrMalformed) {
		t.Errorf("exit with both code and signal: error = %v, want ErrMalformed", err)
	}
}

// decodeAny runs the decoder of kind on payload, as the server and client
// do for the messages they receive.
func decodeAny(kind uint32, payload []byte) error {
	var err error
	switch kind {
	case KindOpen:
		_, err = decodeOpen(payload)
	case KindStdin, KindStdout, KindStderr:
		_, err = decodeData(payload)
	case KindStdinClose:
		err = decodeEmpty(payload)
	case KindResize:
		_, err = decodeResize(payload)
	case KindSignal:
		_, err = decodeSignal(payload)
	case KindStarted:
		_, err = decodeStarted(payload)
	case KindExit:
		_, err = decodeExit(payload)
	case KindError:
		_, _, err = decodeError(payload)
	}
	return err
}

var fuzzKinds = []uint32{KindOpen, KindStdin, KindStdinClose, KindResize, KindSignal, KindStarted, KindStdout, KindStderr, KindExit, KindError}

func FuzzDecode(f *testing.F) {
	f.Add(uint8(0), encodeOpen(Open{Argv: []string{"sh", "-c", "exit 7"}, Env: []string{"TERM=xterm"}, TTY: true, Size: WindowSize{Rows: 24, Cols: 80}}))
	f.Add(uint8(0), []byte{Version, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 'x', 0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(1), encodeData([]byte("input")))
	f.Add(uint8(2), []byte{Version})
	f.Add(uint8(3), encodeResize(WindowSize{Rows: 50, Cols: 132}))
	f.Add(uint8(4), encodeSignal(syscall.SIGINT))
	f.Add(uint8(5), encodeStarted(4242))
	f.Add(uint8(8), encodeExit(Exit{Signal: 2}))
	f.Add(uint8(9), encodeError(CodeUnauthorized, "unauthorized: no writecap"))
	f.Add(uint8(9), []byte{Version, 3, 0x1b, '[', 0xc3})
	f.Fuzz(func(t *testing.T, kindIndex uint8, payload []byte) {
		kind := fuzzKinds[int(kindIndex)%len(fuzzKinds)]
		err := decodeAny(kind, payload)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("kind %#x: error %v does not wrap ErrMalformed", kind, err)
		}
		if err != nil {
			return
		}
		// What decodes must encode back to the same bytes, except the
		// text of an Error, whose control characters are replaced.
		var again []byte
		switch kind {
		case KindOpen:
			open, _ := decodeOpen(payload)
			again = encodeOpen(open)
		case KindResize:
			size, _ := decodeResize(payload)
			again = encodeResize(size)
		case KindSignal:
			sig, _ := decodeSignal(payload)
			again = encodeSignal(sig)
		case KindExit:
			exit, _ := decodeExit(payload)
			again = encodeExit(exit)
		case KindError:
			_, text, _ := decodeError(payload)
			if !utf8.ValidString(text) || strings.ContainsAny(text, "\x00\x1b\r\n") {
				t.Errorf("error text %q is not safe to print", text)
			}
			return
		default:
			return
		}
		if string(again) != string(payload) {
			t.Errorf("kind %#x: payload %x decodes and encodes to %x", kind, payload, again)
		}
	})
}
