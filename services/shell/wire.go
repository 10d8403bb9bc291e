package shell

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Bus message kinds of the shell protocol. The range 0x73680000 to
// 0x7368ffff ("sh" in the two high bytes) is reserved for it: kinds from
// 0x73680001 go from client to server, kinds from 0x73680081 from server to
// client.
const (
	KindOpen       uint32 = 0x73680001
	KindStdin      uint32 = 0x73680002
	KindStdinClose uint32 = 0x73680003
	KindResize     uint32 = 0x73680004
	KindSignal     uint32 = 0x73680005

	KindStarted uint32 = 0x73680081
	KindStdout  uint32 = 0x73680082
	KindStderr  uint32 = 0x73680083
	KindExit    uint32 = 0x73680084
	KindError   uint32 = 0x73680085
)

// Version is the payload format version. Every payload starts with it in
// one byte.
const Version = 1

// Limits that the decoders enforce on top of the connection's MaxPayload.
const (
	MaxArgs         = 4096 // arguments in an Open
	MaxEnv          = 16   // environment entries in an Open
	MaxErrorText    = 4096 // bytes of text in an Error
	maxStringLength = 1 << 20
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed shell message")

// allowedEnv lists the environment variables that a client may set: the
// ones that describe its terminal. Everything else comes from the server.
var allowedEnv = []string{"TERM", "LANG"}

// allowedSignals lists the signals that a client may send to the command.
var allowedSignals = []syscall.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGKILL, syscall.SIGWINCH,
}

// WindowSize is a terminal's size in character cells.
type WindowSize struct {
	Rows uint16
	Cols uint16
}

// Open starts a session. On the wire, after the version byte:
//
//	flags u8   bit 0: allocate a terminal
//	rows  u16  window size, 0 when unknown
//	cols  u16
//	argc  u16  then argc strings; argc 0 runs the login shell
//	envc  u16  then envc strings "NAME=value"
//
// A string is a u32 length and that many bytes without NUL. Integers are
// big-endian.
type Open struct {
	Argv []string
	Env  []string
	TTY  bool
	Size WindowSize
}

// ErrorCode is the reason why the server rejected or ended a session.
type ErrorCode uint8

// Error codes.
const (
	CodeInternal     ErrorCode = 1 // the server failed
	CodeInvalid      ErrorCode = 2 // the client sent a malformed or unexpected message
	CodeUnauthorized ErrorCode = 3 // the caller may not open a shell here
	CodeStart        ErrorCode = 4 // the command could not be started, such as not found
	CodeBusy         ErrorCode = 5 // the server runs its maximum number of sessions
	// CodeNotFound and CodeNotExecutable are start failures that a shell
	// reports with exit status 127 and 126.
	CodeNotFound      ErrorCode = 6 // the command was not found
	CodeNotExecutable ErrorCode = 7 // the command was found but could not be executed
)

func (c ErrorCode) String() string {
	switch c {
	case CodeInternal:
		return "internal error"
	case CodeInvalid:
		return "invalid request"
	case CodeUnauthorized:
		return "unauthorized"
	case CodeStart:
		return "start failed"
	case CodeBusy:
		return "busy"
	case CodeNotFound:
		return "command not found"
	case CodeNotExecutable:
		return "command not executable"
	}
	return fmt.Sprintf("error code %d", uint8(c))
}

// Exit reports how the command ended: Signal is 0 when it exited with
// Code, and otherwise the signal that killed it.
type Exit struct {
	Code   uint8
	Signal uint8
}

func encodeOpen(o Open) []byte {
	b := []byte{Version, 0}
	if o.TTY {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint16(b, o.Size.Rows)
	b = binary.BigEndian.AppendUint16(b, o.Size.Cols)
	b = appendStrings(b, o.Argv)
	return appendStrings(b, o.Env)
}

func appendStrings(b []byte, list []string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(list)))
	for _, s := range list {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeOpen parses and validates an Open payload. The strings are copies,
// so the payload may be a view into shared memory.
func decodeOpen(p []byte) (Open, error) {
	r := reader{b: p}
	r.version()
	flags := r.u8()
	o := Open{TTY: flags&1 != 0}
	o.Size.Rows = r.u16()
	o.Size.Cols = r.u16()
	o.Argv = r.strings(MaxArgs, "argument")
	o.Env = r.strings(MaxEnv, "environment entry")
	r.end()
	if r.err != nil {
		return Open{}, fmt.Errorf("open: %w", r.err)
	}
	if flags&^1 != 0 {
		return Open{}, fmt.Errorf("open: %w: unknown flags %#x", ErrMalformed, flags)
	}
	if len(o.Argv) > 0 && o.Argv[0] == "" {
		return Open{}, fmt.Errorf("open: %w: empty command name", ErrMalformed)
	}
	for _, e := range o.Env {
		if err := checkEnv(e); err != nil {
			return Open{}, fmt.Errorf("open: %w", err)
		}
	}
	return o, nil
}

func checkEnv(entry string) error {
	name, _, ok := strings.Cut(entry, "=")
	if !ok {
		return fmt.Errorf("%w: environment entry %q has no '='", ErrMalformed, entry)
	}
	for _, allowed := range allowedEnv {
		if name == allowed {
			return nil
		}
	}
	return fmt.Errorf("%w: environment variable %q is not accepted, only %s", ErrMalformed, name, strings.Join(allowedEnv, " and "))
}

func encodeData(b []byte) []byte { return append([]byte{Version}, b...) }

// decodeData returns the bytes of a Stdin, Stdout or Stderr payload. The
// result aliases p.
func decodeData(p []byte) ([]byte, error) {
	r := reader{b: p}
	r.version()
	if r.err != nil {
		return nil, fmt.Errorf("data: %w", r.err)
	}
	return p[1:], nil
}

// decodeEmpty checks a payload that carries only the version, such as
// StdinClose.
func decodeEmpty(p []byte) error {
	r := reader{b: p}
	r.version()
	r.end()
	return r.err
}

func encodeResize(s WindowSize) []byte {
	b := []byte{Version}
	b = binary.BigEndian.AppendUint16(b, s.Rows)
	return binary.BigEndian.AppendUint16(b, s.Cols)
}

func decodeResize(p []byte) (WindowSize, error) {
	r := reader{b: p}
	r.version()
	s := WindowSize{Rows: r.u16(), Cols: r.u16()}
	r.end()
	if r.err != nil {
		return WindowSize{}, fmt.Errorf("resize: %w", r.err)
	}
	return s, nil
}

func encodeSignal(sig syscall.Signal) []byte { return []byte{Version, uint8(sig)} }

func decodeSignal(p []byte) (syscall.Signal, error) {
	r := reader{b: p}
	r.version()
	sig := syscall.Signal(r.u8())
	r.end()
	if r.err != nil {
		return 0, fmt.Errorf("signal: %w", r.err)
	}
	if !signalAllowed(sig) {
		return 0, fmt.Errorf("signal: %w: signal %d is not one of INT, TERM, HUP, QUIT, KILL, WINCH", ErrMalformed, int(sig))
	}
	return sig, nil
}

func signalAllowed(sig syscall.Signal) bool {
	for _, allowed := range allowedSignals {
		if sig == allowed {
			return true
		}
	}
	return false
}

func encodeStarted(pid int) []byte {
	return binary.BigEndian.AppendUint32([]byte{Version}, uint32(pid))
}

func decodeStarted(p []byte) (int, error) {
	r := reader{b: p}
	r.version()
	pid := r.u32()
	r.end()
	if r.err != nil {
		return 0, fmt.Errorf("started: %w", r.err)
	}
	return int(pid), nil
}

func encodeExit(e Exit) []byte { return []byte{Version, e.Code, e.Signal} }

func decodeExit(p []byte) (Exit, error) {
	r := reader{b: p}
	r.version()
	e := Exit{Code: r.u8(), Signal: r.u8()}
	r.end()
	if r.err != nil {
		return Exit{}, fmt.Errorf("exit: %w", r.err)
	}
	if e.Signal != 0 && e.Code != 0 {
		return Exit{}, fmt.Errorf("exit: %w: both code %d and signal %d", ErrMalformed, e.Code, e.Signal)
	}
	return e, nil
}

// encodeError cuts text to MaxErrorText bytes at a character boundary.
func encodeError(code ErrorCode, text string) []byte {
	if len(text) > MaxErrorText {
		cut := MaxErrorText
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	return append([]byte{Version, uint8(code)}, text...)
}

// decodeError returns the code and the text of an Error payload, with
// control characters replaced so that the text is safe to print on a
// terminal.
func decodeError(p []byte) (ErrorCode, string, error) {
	r := reader{b: p}
	r.version()
	code := ErrorCode(r.u8())
	if r.err != nil {
		return 0, "", fmt.Errorf("error: %w", r.err)
	}
	text := p[2:]
	if len(text) > MaxErrorText {
		return 0, "", fmt.Errorf("error: %w: text of %d bytes, limit %d", ErrMalformed, len(text), MaxErrorText)
	}
	return code, printable(string(text)), nil
}

// printable replaces invalid UTF-8 and control characters in s with U+FFFD.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

// reader decodes big-endian values from b. The first failure is kept in
// err, and every later read returns zero.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("%w: %d bytes missing", ErrMalformed, n-len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) version() {
	v := r.u8()
	if r.err == nil && v != Version {
		r.err = fmt.Errorf("%w: version %d, this side speaks %d", ErrMalformed, v, Version)
	}
}

// strings reads a count and that many strings, at most max of them.
func (r *reader) strings(max int, what string) []string {
	n := int(r.u16())
	if r.err == nil && n > max {
		r.err = fmt.Errorf("%w: %d of %s, limit %d", ErrMalformed, n, what, max)
	}
	var list []string
	for i := 0; i < n && r.err == nil; i++ {
		length := r.u32()
		if r.err == nil && length > maxStringLength {
			r.err = fmt.Errorf("%w: %s %d is %d bytes long, limit %d", ErrMalformed, what, i, length, maxStringLength)
			break
		}
		s := string(r.take(int(length)))
		if r.err == nil && strings.IndexByte(s, 0) >= 0 {
			r.err = fmt.Errorf("%w: %s %d contains a NUL byte", ErrMalformed, what, i)
		}
		list = append(list, s)
	}
	return list
}

// end fails unless every byte was read.
func (r *reader) end() {
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%w: %d unexpected bytes at the end", ErrMalformed, len(r.b))
	}
}
