package proto

import (
	"fmt"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Smallest encodings of list elements, used to reject a count that the
// remaining bytes cannot hold before allocating for it.
const (
	minDirEntrySize  = 4 + 8 + 4 + 8 // empty name, ino, mode, cookie
	minXattrNameSize = 4             // empty name
	groupSize        = 4
)

// DecodeRequest decodes one request message into r, which it overwrites.
// It rejects other kinds, other versions, unknown operations, arguments
// above their limits and trailing bytes; errors name the field. r.Data
// aliases data, so it is valid only as long as data is.
func DecodeRequest(data []byte, r *Request) error {
	*r = Request{}
	d := wire.NewDecoder(data, KindRequest, Version)
	op := Op(d.Uint16())
	r.ID = d.Uint64()
	if err := d.Err(); err != nil {
		return fmt.Errorf("decode request header: %w", err)
	}
	if !op.Valid() {
		return fmt.Errorf("decode request %d: op %d: %w", r.ID, uint16(op), ErrUnknownOp)
	}
	r.Op = op
	for _, a := range requestLayout[op] {
		decodeArgument(d, a, r)
		if err := d.Err(); err != nil {
			return &fieldError{action: "decode", message: "request", op: op, field: a.String(), err: err}
		}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode %s request: %w", op, err)
	}
	return nil
}

// DecodeResponse decodes one response message into r, which it overwrites,
// with the same strictness as DecodeRequest. A response to OpInterrupt is
// rejected, because none exists. r.Data aliases data.
func DecodeResponse(data []byte, r *Response) error {
	*r = Response{}
	d := wire.NewDecoder(data, KindResponse, Version)
	op := Op(d.Uint16())
	r.ID = d.Uint64()
	r.Errno = d.Uint32()
	if err := d.Err(); err != nil {
		return fmt.Errorf("decode response header: %w", err)
	}
	if !op.hasResponse() {
		return fmt.Errorf("decode response %d: op %d: %w", r.ID, uint16(op), ErrUnknownOp)
	}
	r.Op = op
	if r.Errno == 0 {
		for _, res := range responseLayout[op] {
			decodeResult(d, res, r)
			if err := d.Err(); err != nil {
				return &fieldError{action: "decode", message: "response", op: op, field: res.String(), err: err}
			}
		}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode %s response: %w", op, err)
	}
	return nil
}

// bytesOrNil reads a length-prefixed byte string and returns nil for an
// empty one, so that decoded messages compare equal to the ones encoded.
func bytesOrNil(d *wire.Decoder, limit int) []byte {
	b := d.Bytes(limit)
	if len(b) == 0 {
		return nil
	}
	return b
}

// checkCount fails d if n elements of at least size bytes each cannot fit
// in the bytes left.
func checkCount(d *wire.Decoder, n, size int) {
	if d.Err() == nil && n > d.Remaining()/size {
		d.Fail(fmt.Errorf("count %d needs at least %d bytes, %d left: %w", n, n*size, d.Remaining(), wire.ErrTruncated))
	}
}

func decodeLock(d *wire.Decoder) fsapi.Lock {
	return fsapi.Lock{Start: d.Uint64(), End: d.Uint64(), Type: d.Uint32(), PID: d.Uint32()}
}

func decodeCaller(d *wire.Decoder, c *fsapi.Caller) {
	c.UID = d.Uint32()
	c.GID = d.Uint32()
	c.PID = d.Uint32()
	n := d.Count(MaxGroups)
	checkCount(d, n, groupSize)
	if d.Err() != nil {
		return
	}
	if n > 0 {
		c.Groups = make([]uint32, n)
		for i := range c.Groups {
			c.Groups[i] = d.Uint32()
		}
	}
	copy(c.Principal[:], d.Fixed(principal.Size))
}

func decodeArgument(d *wire.Decoder, a argument, r *Request) {
	switch a {
	case argCaller:
		decodeCaller(d, &r.Caller)
	case argIno:
		r.Ino = fsapi.Ino(d.Uint64())
	case argHandle:
		r.Handle = fsapi.HandleID(d.Uint64())
	case argName, argXattrName:
		r.Name = d.String(a.limit())
	case argNewParent:
		r.NewParent = fsapi.Ino(d.Uint64())
	case argNewName:
		r.NewName = d.String(a.limit())
	case argTarget:
		r.Target = d.String(a.limit())
	case argMode:
		r.Mode = d.Uint32()
	case argRdev:
		r.Rdev = d.Uint64()
	case argFlags:
		r.Flags = d.Uint32()
	case argMask:
		r.Mask = d.Uint32()
	case argSetAttr:
		r.SetAttr = fsapi.SetAttrIn{
			Valid:  d.Uint32(),
			Mode:   d.Uint32(),
			UID:    d.Uint32(),
			GID:    d.Uint32(),
			Size:   d.Uint64(),
			Atime:  d.Int64(),
			Mtime:  d.Int64(),
			Ctime:  d.Int64(),
			Handle: fsapi.HandleID(d.Uint64()),
		}
	case argOffset:
		r.Offset = d.Int64()
	case argSize, argMax:
		v := d.Uint32()
		if d.Err() == nil && v > uint32(a.limit()) {
			d.Fail(fmt.Errorf("value %d, limit %d: %w", v, a.limit(), wire.ErrInvalid))
		}
		if a == argSize {
			r.Size = v
		} else {
			r.Max = v
		}
	case argData, argXattrValue:
		r.Data = bytesOrNil(d, a.limit())
	case argLength:
		r.Length = d.Uint64()
	case argWhence:
		r.Whence = d.Uint32()
	case argCookie:
		r.Cookie = d.Uint64()
	case argOwner:
		r.Owner = d.Uint64()
	case argLock:
		r.Lock = decodeLock(d)
	case argWait:
		r.Wait = d.Bool()
	case argHow:
		r.How = d.Uint32()
	case argDatasync:
		r.Datasync = d.Bool()
	case argOutIno:
		r.OutIno = fsapi.Ino(d.Uint64())
	case argOutHandle:
		r.OutHandle = fsapi.HandleID(d.Uint64())
	case argOutOffset:
		r.OutOffset = d.Int64()
	default:
		panic(fmt.Sprintf("proto: request argument %d has no decoder", a))
	}
}

func decodeResult(d *wire.Decoder, res result, r *Response) {
	switch res {
	case resAttr:
		r.Attr = decodeAttr(d)
	case resDirAttr:
		r.DirAttr = decodeAttr(d)
	case resHandle:
		r.Handle = fsapi.HandleID(d.Uint64())
	case resTarget:
		r.Target = d.String(fsapi.MaxSymlinkLen)
	case resData:
		r.Data = bytesOrNil(d, fsapi.MaxWrite)
	case resXattrValue:
		r.Data = bytesOrNil(d, fsapi.MaxXattrSize)
	case resWritten:
		r.Count = d.Uint64()
		if d.Err() == nil && r.Count > fsapi.MaxWrite {
			d.Fail(fmt.Errorf("count %d, limit %d: %w", r.Count, fsapi.MaxWrite, wire.ErrInvalid))
		}
	case resCopied:
		r.Count = d.Uint64()
	case resOffset:
		r.Offset = d.Int64()
	case resEntries:
		r.Entries = decodeEntries(d)
	case resStatFS:
		r.StatFS = fsapi.StatFS{
			Blocks:  d.Uint64(),
			Bfree:   d.Uint64(),
			Bavail:  d.Uint64(),
			Files:   d.Uint64(),
			Ffree:   d.Uint64(),
			Bsize:   d.Uint32(),
			NameLen: d.Uint32(),
			Frsize:  d.Uint32(),
		}
	case resNames:
		r.Names = decodeXattrNames(d)
	case resLock:
		r.Lock = decodeLock(d)
	default:
		panic(fmt.Sprintf("proto: response result %d has no decoder", res))
	}
}

func decodeEntries(d *wire.Decoder) []fsapi.DirEntry {
	n := d.Count(MaxDirEntries)
	checkCount(d, n, minDirEntrySize)
	if d.Err() != nil || n == 0 {
		return nil
	}
	entries := make([]fsapi.DirEntry, n)
	for i := range entries {
		entries[i] = fsapi.DirEntry{
			Name:   d.String(fsapi.MaxNameLen),
			Ino:    fsapi.Ino(d.Uint64()),
			Mode:   d.Uint32(),
			Cookie: d.Uint64(),
		}
		if d.Err() != nil {
			return nil
		}
	}
	return entries
}

func decodeXattrNames(d *wire.Decoder) []string {
	n := d.Count(fsapi.MaxXattrSize)
	checkCount(d, n, minXattrNameSize)
	if d.Err() != nil || n == 0 {
		return nil
	}
	names := make([]string, n)
	for i := range names {
		names[i] = d.String(fsapi.MaxXattrNameLen)
	}
	if d.Err() != nil {
		return nil
	}
	if err := checkXattrNames(names); err != nil {
		d.Fail(err)
		return nil
	}
	return names
}

// decodeAttr decodes resAttr and resDirAttr.
func decodeAttr(d *wire.Decoder) fsapi.Attr {
	return fsapi.Attr{
		Ino:    fsapi.Ino(d.Uint64()),
		Mode:   d.Uint32(),
		Nlink:  d.Uint32(),
		UID:    d.Uint32(),
		GID:    d.Uint32(),
		Rdev:   d.Uint64(),
		Size:   d.Uint64(),
		Blocks: d.Uint64(),
		Atime:  d.Int64(),
		Mtime:  d.Int64(),
		Ctime:  d.Int64(),
	}
}
