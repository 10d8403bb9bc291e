package proto

import (
	"encoding/binary"
	"fmt"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// The encoders below write the canonical encoding of package wire (fixed
// width big-endian integers, u32 length prefixes, a kind and version
// header) with encoding/binary, because wire.Encoder allocates its own
// buffer and the data path must append into a pooled one.

// AppendRequest appends the encoding of r to dst and returns the extended
// slice. It rejects what DecodeRequest would reject (an unknown Op, an
// argument above its limit), so every message it produces decodes. On error
// it returns dst unchanged.
func AppendRequest(dst []byte, r *Request) ([]byte, error) {
	if !r.Op.Valid() {
		return dst, fmt.Errorf("encode request %d: op %d: %w", r.ID, uint16(r.Op), ErrUnknownOp)
	}
	b := appendHeader(dst, KindRequest, Version)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Op))
	b = binary.BigEndian.AppendUint64(b, r.ID)
	for _, a := range requestLayout[r.Op] {
		if err := checkArgument(a, r); err != nil {
			return dst, &fieldError{action: "encode", message: "request", op: r.Op, field: a.String(), errno: a.errno(), err: err}
		}
		b = appendArgument(b, a, r)
	}
	return b, nil
}

// AppendResponse appends the encoding of r to dst and returns the extended
// slice. It rejects what DecodeResponse would reject: an Op without a
// response and results above their limits. On error it returns dst
// unchanged.
func AppendResponse(dst []byte, r *Response) ([]byte, error) {
	if !r.Op.hasResponse() {
		return dst, fmt.Errorf("encode response %d: op %d: %w", r.ID, uint16(r.Op), ErrUnknownOp)
	}
	b := appendHeader(dst, KindResponse, Version)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Op))
	b = binary.BigEndian.AppendUint64(b, r.ID)
	b = binary.BigEndian.AppendUint32(b, r.Errno)
	if r.Errno != 0 {
		return b, nil
	}
	for _, res := range responseLayout[r.Op] {
		if err := checkResult(res, r); err != nil {
			return dst, &fieldError{action: "encode", message: "response", op: r.Op, field: res.String(), err: err}
		}
		b = appendResult(b, res, r)
	}
	return b, nil
}

func appendHeader(b []byte, kind wire.Kind, version uint8) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(kind))
	return append(b, version)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendLock(b []byte, lk *fsapi.Lock) []byte {
	b = binary.BigEndian.AppendUint64(b, lk.Start)
	b = binary.BigEndian.AppendUint64(b, lk.End)
	b = binary.BigEndian.AppendUint32(b, lk.Type)
	return binary.BigEndian.AppendUint32(b, lk.PID)
}

func tooLong(n, limit int) error {
	return fmt.Errorf("length %d, limit %d: %w", n, limit, wire.ErrTooLong)
}

// checkArgument returns an error if the argument a of r is above its limit.
func checkArgument(a argument, r *Request) error {
	limit := a.limit()
	var n int
	switch a {
	case argCaller:
		n = len(r.Caller.Groups)
	case argName, argXattrName:
		n = len(r.Name)
	case argNewName:
		n = len(r.NewName)
	case argTarget:
		n = len(r.Target)
	case argData, argXattrValue:
		n = len(r.Data)
	case argSize:
		n = int(r.Size)
	case argMax:
		n = int(r.Max)
	default:
		return nil
	}
	if n > limit {
		return tooLong(n, limit)
	}
	return nil
}

func appendArgument(b []byte, a argument, r *Request) []byte {
	be := binary.BigEndian
	switch a {
	case argCaller:
		c := &r.Caller
		b = be.AppendUint32(b, c.UID)
		b = be.AppendUint32(b, c.GID)
		b = be.AppendUint32(b, c.PID)
		b = be.AppendUint32(b, uint32(len(c.Groups)))
		for _, g := range c.Groups {
			b = be.AppendUint32(b, g)
		}
		return append(b, c.Principal[:]...)
	case argIno:
		return be.AppendUint64(b, uint64(r.Ino))
	case argHandle:
		return be.AppendUint64(b, uint64(r.Handle))
	case argName, argXattrName:
		return appendString(b, r.Name)
	case argNewParent:
		return be.AppendUint64(b, uint64(r.NewParent))
	case argNewName:
		return appendString(b, r.NewName)
	case argTarget:
		return appendString(b, r.Target)
	case argMode:
		return be.AppendUint32(b, r.Mode)
	case argRdev:
		return be.AppendUint64(b, r.Rdev)
	case argFlags:
		return be.AppendUint32(b, r.Flags)
	case argMask:
		return be.AppendUint32(b, r.Mask)
	case argSetAttr:
		in := &r.SetAttr
		b = be.AppendUint32(b, in.Valid)
		b = be.AppendUint32(b, in.Mode)
		b = be.AppendUint32(b, in.UID)
		b = be.AppendUint32(b, in.GID)
		b = be.AppendUint64(b, in.Size)
		b = be.AppendUint64(b, uint64(in.Atime))
		b = be.AppendUint64(b, uint64(in.Mtime))
		b = be.AppendUint64(b, uint64(in.Ctime))
		return be.AppendUint64(b, uint64(in.Handle))
	case argOffset:
		return be.AppendUint64(b, uint64(r.Offset))
	case argSize:
		return be.AppendUint32(b, r.Size)
	case argData, argXattrValue:
		return appendBytes(b, r.Data)
	case argLength:
		return be.AppendUint64(b, r.Length)
	case argWhence:
		return be.AppendUint32(b, r.Whence)
	case argCookie:
		return be.AppendUint64(b, r.Cookie)
	case argMax:
		return be.AppendUint32(b, r.Max)
	case argOwner:
		return be.AppendUint64(b, r.Owner)
	case argLock:
		return appendLock(b, &r.Lock)
	case argWait:
		return appendBool(b, r.Wait)
	case argHow:
		return be.AppendUint32(b, r.How)
	case argDatasync:
		return appendBool(b, r.Datasync)
	case argOutIno:
		return be.AppendUint64(b, uint64(r.OutIno))
	case argOutHandle:
		return be.AppendUint64(b, uint64(r.OutHandle))
	case argOutOffset:
		return be.AppendUint64(b, uint64(r.OutOffset))
	}
	panic(fmt.Sprintf("proto: request argument %d has no encoder", a))
}

// checkResult returns an error if the result res of r is above its limit.
func checkResult(res result, r *Response) error {
	switch res {
	case resTarget:
		if len(r.Target) > fsapi.MaxSymlinkLen {
			return tooLong(len(r.Target), fsapi.MaxSymlinkLen)
		}
	case resData:
		if len(r.Data) > fsapi.MaxWrite {
			return tooLong(len(r.Data), fsapi.MaxWrite)
		}
	case resXattrValue:
		if len(r.Data) > fsapi.MaxXattrSize {
			return tooLong(len(r.Data), fsapi.MaxXattrSize)
		}
	case resWritten:
		if r.Count > fsapi.MaxWrite {
			return fmt.Errorf("count %d, limit %d: %w", r.Count, fsapi.MaxWrite, wire.ErrInvalid)
		}
	case resEntries:
		if len(r.Entries) > MaxDirEntries {
			return fmt.Errorf("count %d, limit %d: %w", len(r.Entries), MaxDirEntries, wire.ErrTooLong)
		}
		for i := range r.Entries {
			if n := len(r.Entries[i].Name); n > fsapi.MaxNameLen {
				return fmt.Errorf("entry %d name: %w", i, tooLong(n, fsapi.MaxNameLen))
			}
		}
	case resNames:
		return checkXattrNames(r.Names)
	}
	return nil
}

// checkXattrNames applies the limits of listxattr(2): each name is at most
// fsapi.MaxXattrNameLen bytes, and the list, with a NUL after each name,
// fits in fsapi.MaxXattrSize bytes.
func checkXattrNames(names []string) error {
	total := 0
	for i, name := range names {
		if len(name) > fsapi.MaxXattrNameLen {
			return fmt.Errorf("name %d: %w", i, tooLong(len(name), fsapi.MaxXattrNameLen))
		}
		total += len(name) + 1
		if total > fsapi.MaxXattrSize {
			return fmt.Errorf("list size %d at name %d, limit %d: %w", total, i, fsapi.MaxXattrSize, wire.ErrTooLong)
		}
	}
	return nil
}

func appendResult(b []byte, res result, r *Response) []byte {
	be := binary.BigEndian
	switch res {
	case resAttr:
		return appendAttr(b, &r.Attr)
	case resDirAttr:
		return appendAttr(b, &r.DirAttr)
	case resHandle:
		return be.AppendUint64(b, uint64(r.Handle))
	case resTarget:
		return appendString(b, r.Target)
	case resData, resXattrValue:
		return appendBytes(b, r.Data)
	case resWritten, resCopied:
		return be.AppendUint64(b, r.Count)
	case resOffset:
		return be.AppendUint64(b, uint64(r.Offset))
	case resEntries:
		b = be.AppendUint32(b, uint32(len(r.Entries)))
		for i := range r.Entries {
			e := &r.Entries[i]
			b = appendString(b, e.Name)
			b = be.AppendUint64(b, uint64(e.Ino))
			b = be.AppendUint32(b, e.Mode)
			b = be.AppendUint64(b, e.Cookie)
		}
		return b
	case resStatFS:
		s := &r.StatFS
		b = be.AppendUint64(b, s.Blocks)
		b = be.AppendUint64(b, s.Bfree)
		b = be.AppendUint64(b, s.Bavail)
		b = be.AppendUint64(b, s.Files)
		b = be.AppendUint64(b, s.Ffree)
		b = be.AppendUint32(b, s.Bsize)
		b = be.AppendUint32(b, s.NameLen)
		return be.AppendUint32(b, s.Frsize)
	case resNames:
		b = be.AppendUint32(b, uint32(len(r.Names)))
		for _, name := range r.Names {
			b = appendString(b, name)
		}
		return b
	case resLock:
		return appendLock(b, &r.Lock)
	}
	panic(fmt.Sprintf("proto: response result %d has no encoder", res))
}

// appendAttr appends the encoding of resAttr and resDirAttr.
func appendAttr(b []byte, a *fsapi.Attr) []byte {
	be := binary.BigEndian
	b = be.AppendUint64(b, uint64(a.Ino))
	b = be.AppendUint32(b, a.Mode)
	b = be.AppendUint32(b, a.Nlink)
	b = be.AppendUint32(b, a.UID)
	b = be.AppendUint32(b, a.GID)
	b = be.AppendUint64(b, a.Rdev)
	b = be.AppendUint64(b, a.Size)
	b = be.AppendUint64(b, a.Blocks)
	b = be.AppendUint64(b, uint64(a.Atime))
	b = be.AppendUint64(b, uint64(a.Mtime))
	return be.AppendUint64(b, uint64(a.Ctime))
}
