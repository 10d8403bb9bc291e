package proto

import (
	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Kinds of the storage protocol's messages, allocated from 0x0200 up.
const (
	KindRequest  wire.Kind = 0x0200
	KindResponse wire.Kind = 0x0201
)

// Version is the only version of both message kinds that this package
// encodes and decodes.
const Version = 3

// Limits of the encoding beyond those of fsapi.
const (
	// MaxGroups is the largest number of supplementary groups in a Caller.
	// Linux allows 65536 (NGROUPS_MAX), but a request with that many would
	// not fit in MaxMessageSize next to a full Write.
	MaxGroups = 4096

	// MaxDirEntries is the largest number of entries in one ReadDir
	// response. 2048 entries with names of fsapi.MaxNameLen bytes take
	// about 560 KiB, well inside MaxMessageSize.
	MaxDirEntries = 2048

	// MaxMessageSize is the largest message: a Write request or Read
	// response of fsapi.MaxWrite bytes plus room for the other fields.
	// Every message that the encoder accepts fits.
	MaxMessageSize = fsapi.MaxWrite + 64<<10
)

// Request is one request message. Op selects which fields are encoded; the
// others must be zero so that a decoded request encodes back to the same
// bytes. The field comments list the operations that use each field.
type Request struct {
	Op Op
	// ID matches the response to the request. For OpInterrupt it is the id
	// of the request to cancel.
	ID uint64
	// Caller is encoded for every operation except Release, ReleaseDir and
	// Interrupt.
	Caller fsapi.Caller

	// Ino is the inode that the operation acts on: the parent directory for
	// Lookup, Mknod, Mkdir, Create, Symlink, Unlink and Rmdir, the old
	// parent for Rename, the source file for Link and CopyFileRange.
	Ino fsapi.Ino
	// Handle is the open handle of Ino, the source handle of CopyFileRange.
	Handle fsapi.HandleID
	// Name is the entry name (Lookup, Mknod, Mkdir, Create, Symlink, Unlink,
	// Rmdir), the old name of Rename, or the attribute name (GetXattr,
	// SetXattr, RemoveXattr).
	Name string
	// NewParent and NewName are the new directory and name of Link and
	// Rename.
	NewParent fsapi.Ino
	NewName   string
	// Target is the content of a new symbolic link (Symlink).
	Target string

	Mode      uint32          // Mknod, Mkdir, Create; the fallocate(2) mode of Fallocate
	Rdev      uint64          // Mknod
	Flags     uint32          // Create, Rename, Open, OpenDir, SetXattr, CopyFileRange
	Mask      uint32          // Access
	SetAttr   fsapi.SetAttrIn // SetAttr
	Offset    int64           // Read, Write, Fallocate, Lseek; the source offset of CopyFileRange
	Size      uint32          // Read: bytes requested, at most fsapi.MaxWrite
	Data      []byte          // Write data (at most fsapi.MaxWrite), SetXattr value (at most fsapi.MaxXattrSize)
	Length    uint64          // Fallocate (an int64 stored bit for bit), CopyFileRange
	Whence    uint32          // Lseek
	Cookie    uint64          // ReadDir
	Max       uint32          // ReadDir: entries requested, at most MaxDirEntries
	Owner     uint64          // lock owner of Flush, GetLk, SetLk
	Lock      fsapi.Lock      // GetLk, SetLk
	Wait      bool            // SetLk, Flock
	How       uint32          // Flock
	Datasync  bool            // Fsync: true for fdatasync(2)
	OutIno    fsapi.Ino       // CopyFileRange destination inode
	OutHandle fsapi.HandleID  // CopyFileRange destination handle
	OutOffset int64           // CopyFileRange destination offset
}

// Response is one response message. Errno is 0 on success, and only then
// are the results of Op encoded; the other fields must be zero.
type Response struct {
	Op    Op
	ID    uint64
	Errno uint32

	Attr    fsapi.Attr       // Lookup, GetAttr, SetAttr, Mknod, Mkdir, Create, Symlink, Link, OpenAttr, CreateAttrs, MkdirAttrs
	DirAttr fsapi.Attr       // the changed directory of CreateAttrs, MkdirAttrs, UnlinkAttrs, RmdirAttrs
	Handle  fsapi.HandleID   // Create, Open, OpenDir, OpenAttr, CreateAttrs
	Target  string           // Readlink
	Data    []byte           // Read data (at most fsapi.MaxWrite), GetXattr value (at most fsapi.MaxXattrSize)
	Count   uint64           // bytes written by Write (at most fsapi.MaxWrite) or copied by CopyFileRange
	Offset  int64            // Lseek
	Entries []fsapi.DirEntry // ReadDir, at most MaxDirEntries
	StatFS  fsapi.StatFS     // StatFS
	Names   []string         // ListXattr
	Lock    fsapi.Lock       // GetLk
}
