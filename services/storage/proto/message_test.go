package proto

import (
	"bytes"
	"errors"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/bus/ring"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func testPrincipal(seed byte) principal.Principal {
	var p principal.Principal
	for i := range p {
		p[i] = seed + byte(i)
	}
	return p
}

var sampleCaller = fsapi.Caller{
	UID:       1000,
	GID:       1001,
	Groups:    []uint32{4, 27, 1002},
	PID:       4242,
	Principal: testPrincipal(0x40),
}

// sampleRequests has one request of every op, with every encoded field set
// to a value other than zero.
func sampleRequests() []Request {
	c := sampleCaller
	lock := fsapi.Lock{Start: 100, End: math.MaxUint64, Type: syscall.F_WRLCK, PID: 4242}
	return []Request{
		{Op: OpLookup, ID: 1, Caller: c, Ino: 7, Name: "hosts"},
		{Op: OpGetAttr, ID: 2, Caller: c, Ino: 8},
		{Op: OpSetAttr, ID: 3, Caller: c, Ino: 9, SetAttr: fsapi.SetAttrIn{
			Valid: fsapi.SetMode | fsapi.SetSize | fsapi.SetMtime, Mode: 0o640, UID: 5, GID: 6,
			Size: 1 << 40, Atime: -1, Mtime: 1_700_000_000_123_456_789, Ctime: 3, Handle: 77}},
		{Op: OpAccess, ID: 4, Caller: c, Ino: 10, Mask: 6},
		{Op: OpMknod, ID: 5, Caller: c, Ino: 11, Name: "fifo", Mode: syscall.S_IFIFO | 0o600, Rdev: 0x0801},
		{Op: OpMkdir, ID: 6, Caller: c, Ino: 12, Name: "etc", Mode: 0o755},
		{Op: OpCreate, ID: 7, Caller: c, Ino: 13, Name: "new.txt", Mode: 0o644, Flags: syscall.O_RDWR | syscall.O_EXCL},
		{Op: OpSymlink, ID: 8, Caller: c, Ino: 14, Name: "link", Target: "../target/file"},
		{Op: OpLink, ID: 9, Caller: c, Ino: 15, NewParent: 16, NewName: "hard"},
		{Op: OpUnlink, ID: 10, Caller: c, Ino: 17, Name: "old"},
		{Op: OpRmdir, ID: 11, Caller: c, Ino: 18, Name: "dir"},
		{Op: OpRename, ID: 12, Caller: c, Ino: 19, Name: "a", NewParent: 20, NewName: "b", Flags: fsapi.RenameNoReplace},
		{Op: OpReadlink, ID: 13, Caller: c, Ino: 21},
		{Op: OpOpen, ID: 14, Caller: c, Ino: 22, Flags: syscall.O_RDONLY | syscall.O_NOATIME},
		{Op: OpRead, ID: 15, Caller: c, Ino: 23, Handle: 3, Offset: 4096, Size: fsapi.MaxWrite},
		{Op: OpWrite, ID: 16, Caller: c, Ino: 24, Handle: 4, Offset: -2, Data: []byte("payload\x00\xff")},
		{Op: OpFlush, ID: 17, Caller: c, Ino: 25, Handle: 5, Owner: 0xdeadbeefcafe},
		{Op: OpRelease, ID: 18, Ino: 26, Handle: 6},
		{Op: OpFsync, ID: 19, Caller: c, Ino: 27, Handle: 7, Datasync: true},
		{Op: OpFallocate, ID: 20, Caller: c, Ino: 28, Handle: 8, Mode: 1, Offset: 512, Length: 1 << 20},
		{Op: OpLseek, ID: 21, Caller: c, Ino: 29, Handle: 9, Offset: 1000, Whence: 3},
		{Op: OpCopyFileRange, ID: 22, Caller: c, Ino: 30, Handle: 10, Offset: 11, OutIno: 31, OutHandle: 12, OutOffset: 13, Length: 14, Flags: 15},
		{Op: OpOpenDir, ID: 23, Caller: c, Ino: 32, Flags: syscall.O_DIRECTORY},
		{Op: OpReadDir, ID: 24, Caller: c, Ino: 33, Handle: 16, Cookie: 99, Max: MaxDirEntries},
		{Op: OpReleaseDir, ID: 25, Ino: 34, Handle: 17},
		{Op: OpFsyncDir, ID: 26, Caller: c, Ino: 35, Handle: 18},
		{Op: OpStatFS, ID: 27, Caller: c, Ino: 36},
		{Op: OpSyncFS, ID: 28, Caller: c},
		{Op: OpGetXattr, ID: 29, Caller: c, Ino: 37, Name: "user.mime"},
		{Op: OpSetXattr, ID: 30, Caller: c, Ino: 38, Name: "user.mime", Data: []byte("text/plain"), Flags: fsapi.XattrCreate},
		{Op: OpListXattr, ID: 31, Caller: c, Ino: 39},
		{Op: OpRemoveXattr, ID: 32, Caller: c, Ino: 40, Name: "user.gone"},
		{Op: OpGetLk, ID: 33, Caller: c, Ino: 41, Handle: 19, Owner: 20, Lock: lock},
		{Op: OpSetLk, ID: 34, Caller: c, Ino: 42, Handle: 21, Owner: 22, Lock: lock, Wait: true},
		{Op: OpFlock, ID: 35, Caller: c, Ino: 43, Handle: 23, How: syscall.LOCK_EX, Wait: true},
		{Op: OpInterrupt, ID: 34},
		{Op: OpOpenAttr, ID: 37, Caller: c, Ino: 44, Flags: syscall.O_RDWR | syscall.O_APPEND},
		{Op: OpCreateAttrs, ID: 38, Caller: c, Ino: 45, Name: "new", Mode: 0o640, Flags: syscall.O_WRONLY | syscall.O_EXCL},
		{Op: OpMkdirAttrs, ID: 39, Caller: c, Ino: 46, Name: "newdir", Mode: 0o750},
		{Op: OpUnlinkAttrs, ID: 40, Caller: c, Ino: 47, Name: "gone"},
		{Op: OpRmdirAttrs, ID: 41, Caller: c, Ino: 48, Name: "gonedir"},
	}
}

// sampleResponses has one successful response of every op that has one,
// with every encoded result set to a value other than zero, and one error
// response.
func sampleResponses() []Response {
	attr := fsapi.Attr{Ino: 12, Mode: syscall.S_IFREG | 0o644, Nlink: 2, UID: 1000, GID: 1001, Rdev: 3,
		Size: 1 << 33, Blocks: 1 << 24, Atime: -5, Mtime: 1_700_000_000_000_000_001, Ctime: 1_700_000_000_000_000_002}
	dirAttr := fsapi.Attr{Ino: 13, Mode: syscall.S_IFDIR | 0o755, Nlink: 3, UID: 1002, GID: 1003,
		Size: 4096, Blocks: 8, Atime: 7, Mtime: 1_700_000_000_000_000_003, Ctime: 1_700_000_000_000_000_004}
	return []Response{
		{Op: OpLookup, ID: 1, Attr: attr},
		{Op: OpGetAttr, ID: 2, Attr: attr},
		{Op: OpSetAttr, ID: 3, Attr: attr},
		{Op: OpAccess, ID: 4},
		{Op: OpMknod, ID: 5, Attr: attr},
		{Op: OpMkdir, ID: 6, Attr: attr},
		{Op: OpCreate, ID: 7, Attr: attr, Handle: 88},
		{Op: OpSymlink, ID: 8, Attr: attr},
		{Op: OpLink, ID: 9, Attr: attr},
		{Op: OpUnlink, ID: 10},
		{Op: OpRmdir, ID: 11},
		{Op: OpRename, ID: 12},
		{Op: OpReadlink, ID: 13, Target: "/bt/some/where"},
		{Op: OpOpen, ID: 14, Handle: 89},
		{Op: OpOpenAttr, ID: 37, Attr: attr, Handle: 91},
		{Op: OpCreateAttrs, ID: 38, Attr: attr, Handle: 92, DirAttr: dirAttr},
		{Op: OpMkdirAttrs, ID: 39, Attr: attr, DirAttr: dirAttr},
		{Op: OpUnlinkAttrs, ID: 40, DirAttr: dirAttr},
		{Op: OpRmdirAttrs, ID: 41, DirAttr: dirAttr},
		{Op: OpRead, ID: 15, Data: []byte("file contents")},
		{Op: OpWrite, ID: 16, Count: fsapi.MaxWrite},
		{Op: OpFlush, ID: 17},
		{Op: OpRelease, ID: 18},
		{Op: OpFsync, ID: 19},
		{Op: OpFallocate, ID: 20},
		{Op: OpLseek, ID: 21, Offset: 1 << 35},
		{Op: OpCopyFileRange, ID: 22, Count: 1 << 34},
		{Op: OpOpenDir, ID: 23, Handle: 90},
		{Op: OpReadDir, ID: 24, Entries: []fsapi.DirEntry{
			{Name: "a", Ino: 2, Mode: syscall.S_IFDIR, Cookie: 1},
			{Name: strings.Repeat("n", fsapi.MaxNameLen), Ino: 3, Mode: syscall.S_IFREG, Cookie: 1 << 62},
		}},
		{Op: OpReleaseDir, ID: 25},
		{Op: OpFsyncDir, ID: 26},
		{Op: OpStatFS, ID: 27, StatFS: fsapi.StatFS{Blocks: 1, Bfree: 2, Bavail: 3, Files: 4, Ffree: 5, Bsize: 4096, NameLen: 255, Frsize: 512}},
		{Op: OpSyncFS, ID: 28},
		{Op: OpGetXattr, ID: 29, Data: []byte{0, 1, 2, 0xff}},
		{Op: OpSetXattr, ID: 30},
		{Op: OpListXattr, ID: 31, Names: []string{"user.a", "trusted.b", "security.selinux"}},
		{Op: OpRemoveXattr, ID: 32},
		{Op: OpGetLk, ID: 33, Lock: fsapi.Lock{Start: 1, End: 2, Type: syscall.F_RDLCK, PID: 77}},
		{Op: OpSetLk, ID: 34},
		{Op: OpFlock, ID: 35},
		{Op: OpLookup, ID: 36, Errno: uint32(syscall.ENOENT)},
		{Op: OpRead, ID: 37, Errno: uint32(syscall.EBADF)},
	}
}

func encodeRequest(t testing.TB, r *Request) []byte {
	t.Helper()
	b, err := AppendRequest(nil, r)
	if err != nil {
		t.Fatalf("AppendRequest(%s): %v", r.Op, err)
	}
	return b
}

func encodeResponse(t testing.TB, r *Response) []byte {
	t.Helper()
	b, err := AppendResponse(nil, r)
	if err != nil {
		t.Fatalf("AppendResponse(%s): %v", r.Op, err)
	}
	return b
}

func TestSamplesCoverEveryOp(t *testing.T) {
	requests := make(map[Op]bool)
	for _, r := range sampleRequests() {
		requests[r.Op] = true
	}
	responses := make(map[Op]bool)
	for _, r := range sampleResponses() {
		if r.Errno == 0 {
			responses[r.Op] = true
		}
	}
	for op := Op(1); op < opEnd; op++ {
		if !requests[op] {
			t.Errorf("no sample request of %s", op)
		}
		if op.hasResponse() && !responses[op] {
			t.Errorf("no sample response of %s", op)
		}
		if requestLayout[op] == nil {
			t.Errorf("requestLayout has no entry for %s", op)
		}
		if opNames[op] == "" {
			t.Errorf("op %d has no name", op)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, want := range sampleRequests() {
		t.Run(want.Op.String(), func(t *testing.T) {
			prefix := []byte("prefix")
			encoded, err := AppendRequest(prefix, &want)
			if err != nil {
				t.Fatalf("AppendRequest: %v", err)
			}
			if !bytes.HasPrefix(encoded, []byte("prefix")) {
				t.Fatalf("AppendRequest did not append to dst")
			}
			msg := encoded[len("prefix"):]

			var got Request
			if err := DecodeRequest(msg, &got); err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded request differs\n got %+v\nwant %+v", got, want)
			}
			again := encodeRequest(t, &got)
			if !bytes.Equal(again, msg) {
				t.Errorf("decoded request encodes to different bytes")
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, want := range sampleResponses() {
		t.Run(want.Op.String(), func(t *testing.T) {
			msg := encodeResponse(t, &want)
			var got Response
			if err := DecodeResponse(msg, &got); err != nil {
				t.Fatalf("DecodeResponse: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded response differs\n got %+v\nwant %+v", got, want)
			}
			again := encodeResponse(t, &got)
			if !bytes.Equal(again, msg) {
				t.Errorf("decoded response encodes to different bytes")
			}
		})
	}
}

// TestEncodingMatchesWire checks that the hand-written appenders produce
// the canonical encoding of package wire, field for field.
func TestEncodingMatchesWire(t *testing.T) {
	req := Request{Op: OpSetXattr, ID: 9, Caller: sampleCaller, Ino: 38, Name: "user.k", Data: []byte("v"), Flags: fsapi.XattrReplace}
	e := wire.NewEncoder(KindRequest, Version)
	e.Uint16(uint16(OpSetXattr))
	e.Uint64(9)
	e.Uint32(sampleCaller.UID)
	e.Uint32(sampleCaller.GID)
	e.Uint32(sampleCaller.PID)
	e.Uint32(uint32(len(sampleCaller.Groups)))
	for _, g := range sampleCaller.Groups {
		e.Uint32(g)
	}
	e.Fixed(sampleCaller.Principal[:])
	e.Uint64(38)
	e.String("user.k")
	e.Bytes([]byte("v"))
	e.Uint32(fsapi.XattrReplace)
	if got := encodeRequest(t, &req); !bytes.Equal(got, e.Data()) {
		t.Errorf("request encoding\n got %x\nwant %x", got, e.Data())
	}

	resp := Response{Op: OpLseek, ID: 10, Offset: -7}
	e = wire.NewEncoder(KindResponse, Version)
	e.Uint16(uint16(OpLseek))
	e.Uint64(10)
	e.Uint32(0)
	e.Int64(-7)
	if got := encodeResponse(t, &resp); !bytes.Equal(got, e.Data()) {
		t.Errorf("response encoding\n got %x\nwant %x", got, e.Data())
	}
}

func TestTruncatedMessagesRejected(t *testing.T) {
	for _, r := range sampleRequests() {
		msg := encodeRequest(t, &r)
		for n := range len(msg) {
			var got Request
			if err := DecodeRequest(msg[:n], &got); err == nil {
				t.Errorf("%s request truncated to %d of %d bytes decoded", r.Op, n, len(msg))
			}
		}
	}
	for _, r := range sampleResponses() {
		msg := encodeResponse(t, &r)
		for n := range len(msg) {
			var got Response
			if err := DecodeResponse(msg[:n], &got); err == nil {
				t.Errorf("%s response truncated to %d of %d bytes decoded", r.Op, n, len(msg))
			}
		}
	}
}

// patch returns a copy of msg with b written at offset.
func patch(msg []byte, offset int, b ...byte) []byte {
	out := bytes.Clone(msg)
	copy(out[offset:], b)
	return out
}

// callerSize is the encoded size of sampleCaller.
var callerSize = 4*4 + 4*len(sampleCaller.Groups) + principal.Size

// requestArgsOffset is where the arguments start: kind, version, op, id.
const requestArgsOffset = 2 + 1 + 2 + 8

func TestDecodeRequestRejects(t *testing.T) {
	lookup := encodeRequest(t, &Request{Op: OpLookup, ID: 1, Caller: sampleCaller, Ino: 1, Name: "x"})
	fsync := encodeRequest(t, &Request{Op: OpFsync, ID: 1, Caller: sampleCaller, Ino: 1, Handle: 2})
	read := encodeRequest(t, &Request{Op: OpRead, ID: 1, Caller: sampleCaller, Ino: 1, Handle: 2, Size: 1})
	readDir := encodeRequest(t, &Request{Op: OpReadDir, ID: 1, Caller: sampleCaller, Ino: 1, Handle: 2, Max: 1})
	groupsOffset := requestArgsOffset + 12

	withLongString := func(op Op, field string, n int) []byte {
		r := Request{Op: op, ID: 1, Caller: sampleCaller, Ino: 1, Name: "n", NewName: "m", Target: "t"}
		return buildWithString(t, r, field, strings.Repeat("x", n))
	}

	cases := []struct {
		name  string
		msg   []byte
		field string // expected in the error
		is    error
	}{
		{"empty", nil, "header", wire.ErrTruncated},
		{"wrong kind", patch(lookup, 0, 0x02, 0x01), "header", wire.ErrWrongKind},
		{"version 4", patch(lookup, 2, 4), "header", wire.ErrUnknownVersion},
		{"version 0", patch(lookup, 2, 0), "header", wire.ErrUnknownVersion},
		{"op 0", patch(lookup, 3, 0, 0), "op 0", ErrUnknownOp},
		{"op past the end", patch(lookup, 3, 0, byte(opEnd)), "op 42", ErrUnknownOp},
		{"op 0xffff", patch(lookup, 3, 0xff, 0xff), "op 65535", ErrUnknownOp},
		{"trailing byte", append(bytes.Clone(lookup), 0), "trailing", wire.ErrTrailing},
		{"name too long", withLongString(OpLookup, "name", fsapi.MaxNameLen+1), "field name", wire.ErrTooLong},
		{"new name too long", withLongString(OpLink, "new name", fsapi.MaxNameLen+1), "field new name", wire.ErrTooLong},
		{"symlink target too long", withLongString(OpSymlink, "target", fsapi.MaxSymlinkLen+1), "field target", wire.ErrTooLong},
		{"xattr name too long", withLongString(OpGetXattr, "xattr name", fsapi.MaxXattrNameLen+1), "field xattr name", wire.ErrTooLong},
		{"write data too long", buildWithData(t, OpWrite, fsapi.MaxWrite+1), "field data", wire.ErrTooLong},
		{"xattr value too long", buildWithData(t, OpSetXattr, fsapi.MaxXattrSize+1), "field xattr value", wire.ErrTooLong},
		{"too many groups", patch(lookup, groupsOffset, 0, 0, 0x10, 0x01), "field caller", wire.ErrTooLong},
		{"groups beyond the message", patch(lookup, groupsOffset, 0, 0, 0x10, 0x00), "field caller", wire.ErrTruncated},
		{"read size too large", patch(read, len(read)-4, 0, 0x10, 0, 1), "field size", wire.ErrInvalid},
		{"readdir max too large", patch(readDir, len(readDir)-4, 0, 0, 0x08, 1), "field max", wire.ErrInvalid},
		{"datasync byte 2", patch(fsync, len(fsync)-1, 2), "field datasync", wire.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			err := DecodeRequest(tc.msg, &r)
			if err == nil {
				t.Fatal("DecodeRequest accepted the message")
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q does not match %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

// buildWithString encodes r with the string field replaced by s, bypassing
// the encoder's limit, by encoding a one-byte placeholder and splicing.
func buildWithString(t *testing.T, r Request, field, s string) []byte {
	t.Helper()
	const marker = "\x01"
	switch field {
	case "name", "xattr name":
		r.Name = marker
	case "new name":
		r.NewName = marker
	case "target":
		r.Target = marker
	}
	enc := encodeRequest(t, &r)
	old := []byte{0, 0, 0, 1, 1}
	i := bytes.Index(enc, old)
	if i < 0 {
		t.Fatalf("placeholder not found in %x", enc)
	}
	long := appendString(nil, s)
	return append(append(bytes.Clone(enc[:i]), long...), enc[i+len(old):]...)
}

// buildWithData encodes a Write or SetXattr request with n bytes of data,
// bypassing the encoder's limit.
func buildWithData(t *testing.T, op Op, n int) []byte {
	t.Helper()
	r := Request{Op: op, ID: 1, Caller: sampleCaller, Ino: 1, Handle: 2, Name: "user.x", Data: []byte{1}}
	if op != OpWrite {
		r.Handle = 0
	}
	enc := encodeRequest(t, &r)
	old := []byte{0, 0, 0, 1, 1}
	i := bytes.LastIndex(enc, old)
	if i < 0 {
		t.Fatalf("placeholder not found in %x", enc)
	}
	long := appendBytes(nil, make([]byte, n))
	return append(append(bytes.Clone(enc[:i]), long...), enc[i+len(old):]...)
}

// rawResponse builds a response message from a hand-encoded body, so that
// tests can produce results that AppendResponse would reject.
func rawResponse(op Op, errno uint32, body []byte) []byte {
	b := appendHeader(nil, KindResponse, Version)
	b = append(b, byte(op>>8), byte(op))
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 1)
	b = append(b, byte(errno>>24), byte(errno>>16), byte(errno>>8), byte(errno))
	return append(b, body...)
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func TestDecodeResponseRejects(t *testing.T) {
	entry := func(name string) []byte {
		b := appendString(nil, name)
		return append(b, make([]byte, 8+4+8)...)
	}
	entries := func(count uint32, names ...string) []byte {
		b := appendUint32(nil, count)
		for _, n := range names {
			b = append(b, entry(n)...)
		}
		return b
	}
	var manyNames []byte
	manyNames = appendUint32(manyNames, 300)
	for range 300 {
		manyNames = appendString(manyNames, strings.Repeat("a", fsapi.MaxXattrNameLen))
	}
	attrBytes := make([]byte, 8+4*4+8*3+8*3)

	cases := []struct {
		name  string
		msg   []byte
		field string
		is    error
	}{
		{"interrupt response", rawResponse(OpInterrupt, 0, nil), "op 36", ErrUnknownOp},
		{"unknown op", rawResponse(opEnd, 0, nil), "op 42", ErrUnknownOp},
		{"wrong kind", patch(rawResponse(OpAccess, 0, nil), 1, 0x00), "header", wire.ErrWrongKind},
		{"version 4", patch(rawResponse(OpAccess, 0, nil), 2, 4), "header", wire.ErrUnknownVersion},
		{"read data too long", rawResponse(OpRead, 0, appendBytes(nil, make([]byte, fsapi.MaxWrite+1))), "field data", wire.ErrTooLong},
		{"xattr value too long", rawResponse(OpGetXattr, 0, appendBytes(nil, make([]byte, fsapi.MaxXattrSize+1))), "field xattr value", wire.ErrTooLong},
		{"symlink target too long", rawResponse(OpReadlink, 0, appendString(nil, strings.Repeat("t", fsapi.MaxSymlinkLen+1))), "field target", wire.ErrTooLong},
		{"too many entries", rawResponse(OpReadDir, 0, entries(MaxDirEntries+1, "a")), "field entries", wire.ErrTooLong},
		{"entry count beyond the message", rawResponse(OpReadDir, 0, entries(2, "a")), "field entries", wire.ErrTruncated},
		{"entry name too long", rawResponse(OpReadDir, 0, entries(1, strings.Repeat("e", fsapi.MaxNameLen+1))), "field entries", wire.ErrTooLong},
		{"xattr names above the list size", rawResponse(OpListXattr, 0, manyNames), "field names", wire.ErrTooLong},
		{"xattr name too long", rawResponse(OpListXattr, 0, append(appendUint32(nil, 1), appendString(nil, strings.Repeat("x", 256))...)), "field names", wire.ErrTooLong},
		{"written above MaxWrite", rawResponse(OpWrite, 0, []byte{0, 0, 0, 0, 0, 0x10, 0, 1}), "field written", wire.ErrInvalid},
		{"results after an errno", rawResponse(OpGetAttr, uint32(syscall.ENOENT), attrBytes), "trailing", wire.ErrTrailing},
		{"trailing byte", rawResponse(OpGetAttr, 0, append(bytes.Clone(attrBytes), 0)), "trailing", wire.ErrTrailing},
		{"truncated attr", rawResponse(OpGetAttr, 0, attrBytes[:10]), "field attr", wire.ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			err := DecodeResponse(tc.msg, &r)
			if err == nil {
				t.Fatal("DecodeResponse accepted the message")
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q does not match %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestAppendRequestRejects(t *testing.T) {
	manyGroups := sampleCaller
	manyGroups.Groups = make([]uint32, MaxGroups+1)
	cases := []struct {
		name  string
		req   Request
		field string
		errno syscall.Errno
	}{
		{"unknown op", Request{Op: opEnd}, "op 42", 0},
		{"name too long", Request{Op: OpLookup, Name: strings.Repeat("n", fsapi.MaxNameLen+1)}, "field name", syscall.ENAMETOOLONG},
		{"new name too long", Request{Op: OpRename, Name: "a", NewName: strings.Repeat("n", fsapi.MaxNameLen+1)}, "field new name", syscall.ENAMETOOLONG},
		{"target too long", Request{Op: OpSymlink, Name: "l", Target: strings.Repeat("t", fsapi.MaxSymlinkLen+1)}, "field target", syscall.ENAMETOOLONG},
		{"write data too long", Request{Op: OpWrite, Data: make([]byte, fsapi.MaxWrite+1)}, "field data", syscall.EINVAL},
		{"read size too large", Request{Op: OpRead, Size: fsapi.MaxWrite + 1}, "field size", syscall.EINVAL},
		{"xattr name too long", Request{Op: OpGetXattr, Name: strings.Repeat("x", fsapi.MaxXattrNameLen+1)}, "field xattr name", syscall.ERANGE},
		{"xattr value too long", Request{Op: OpSetXattr, Name: "user.x", Data: make([]byte, fsapi.MaxXattrSize+1)}, "field xattr value", syscall.E2BIG},
		{"readdir max too large", Request{Op: OpReadDir, Max: MaxDirEntries + 1}, "field max", syscall.EINVAL},
		{"too many groups", Request{Op: OpGetAttr, Caller: manyGroups}, "field caller", syscall.EINVAL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := AppendRequest(dst, &tc.req)
			if err == nil {
				t.Fatal("AppendRequest accepted the request")
			}
			if !bytes.Equal(got, []byte("keep")) {
				t.Errorf("AppendRequest returned %q, expected dst unchanged", got)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
			var fe *fieldError
			if tc.errno != 0 && (!errors.As(err, &fe) || fe.errno != tc.errno) {
				t.Errorf("error %q does not carry errno %v", err, tc.errno)
			}
		})
	}
}

func TestAppendResponseRejects(t *testing.T) {
	cases := []struct {
		name  string
		resp  Response
		field string
	}{
		{"interrupt", Response{Op: OpInterrupt}, "op 36"},
		{"read data too long", Response{Op: OpRead, Data: make([]byte, fsapi.MaxWrite+1)}, "field data"},
		{"xattr value too long", Response{Op: OpGetXattr, Data: make([]byte, fsapi.MaxXattrSize+1)}, "field xattr value"},
		{"target too long", Response{Op: OpReadlink, Target: strings.Repeat("t", fsapi.MaxSymlinkLen+1)}, "field target"},
		{"written above MaxWrite", Response{Op: OpWrite, Count: fsapi.MaxWrite + 1}, "field written"},
		{"too many entries", Response{Op: OpReadDir, Entries: make([]fsapi.DirEntry, MaxDirEntries+1)}, "field entries"},
		{"entry name too long", Response{Op: OpReadDir, Entries: []fsapi.DirEntry{{Name: strings.Repeat("e", 256)}}}, "field entries"},
		{"xattr names too long", Response{Op: OpListXattr, Names: []string{strings.Repeat("x", 256)}}, "field names"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendResponse(nil, &tc.resp)
			if err == nil {
				t.Fatal("AppendResponse accepted the response")
			}
			if len(got) != 0 {
				t.Errorf("AppendResponse appended %d bytes on error", len(got))
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

// TestLargestMessagesFit checks the claim of MaxMessageSize: the largest
// message that the encoder accepts fits, and so does MaxMessageSize in a
// bus message on a ring of RingSize.
func TestLargestMessagesFit(t *testing.T) {
	if max := ring.MaxPayload(RingSize); max < MaxMessageSize {
		t.Errorf("a ring of %d bytes carries messages of up to %d bytes, below MaxMessageSize %d", RingSize, max, MaxMessageSize)
	}
	caller := sampleCaller
	caller.Groups = make([]uint32, MaxGroups)
	long := strings.Repeat("n", fsapi.MaxNameLen)
	requests := []Request{
		{Op: OpWrite, Caller: caller, Data: make([]byte, fsapi.MaxWrite)},
		{Op: OpSetXattr, Caller: caller, Name: long, Data: make([]byte, fsapi.MaxXattrSize)},
		{Op: OpRename, Caller: caller, Name: long, NewName: long},
		{Op: OpSymlink, Caller: caller, Name: long, Target: strings.Repeat("t", fsapi.MaxSymlinkLen)},
	}
	for _, r := range requests {
		if n := len(encodeRequest(t, &r)); n > MaxMessageSize {
			t.Errorf("largest %s request takes %d bytes, above MaxMessageSize %d", r.Op, n, MaxMessageSize)
		}
	}

	entries := make([]fsapi.DirEntry, MaxDirEntries)
	for i := range entries {
		entries[i].Name = long
	}
	names := make([]string, fsapi.MaxXattrSize/2)
	for i := range names {
		names[i] = "x" // one-byte names give the largest number of length prefixes
	}
	responses := []Response{
		{Op: OpRead, Data: make([]byte, fsapi.MaxWrite)},
		{Op: OpReadDir, Entries: entries},
		{Op: OpListXattr, Names: names},
	}
	for _, r := range responses {
		if n := len(encodeResponse(t, &r)); n > MaxMessageSize {
			t.Errorf("largest %s response takes %d bytes, above MaxMessageSize %d", r.Op, n, MaxMessageSize)
		}
	}
}

// TestAppendDoesNotAllocate checks that encoding a full Write request and a
// full Read response into a buffer that is large enough allocates nothing.
func TestAppendDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, MaxMessageSize)
	req := Request{Op: OpWrite, ID: 1, Caller: sampleCaller, Ino: 2, Handle: 3, Data: make([]byte, fsapi.MaxWrite)}
	resp := Response{Op: OpRead, ID: 1, Data: make([]byte, fsapi.MaxWrite)}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := AppendRequest(buf[:0], &req); err != nil {
			t.Fatal(err)
		}
		if _, err := AppendResponse(buf[:0], &resp); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendRequest and AppendResponse made %v allocations, expected 0", allocs)
	}
}

// TestDocTableMatchesOps checks that the op table in doc.go gives each op
// its code and name.
func TestDocTableMatchesOps(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatalf("read doc.go: %v", err)
	}
	row := regexp.MustCompile(`(?m)^//\t\s*(\d+)\s+(\S+)`)
	seen := make(map[Op]bool)
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		code, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatalf("code %q: %v", m[1], err)
		}
		op := Op(code)
		if op.String() != m[2] {
			t.Errorf("doc.go lists code %d as %s, but it is %s", code, m[2], op)
		}
		seen[op] = true
	}
	for op := Op(1); op < opEnd; op++ {
		if !seen[op] {
			t.Errorf("doc.go does not list %s", op)
		}
	}
}
