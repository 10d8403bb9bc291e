// Package fsapi is the file-system protocol of Blocktree: the operations the
// storage daemon serves and every client (the FUSE server, Wasm programs,
// remote nodes) calls.
//
// The protocol is inode-based, like the kernel's FUSE protocol, so that the
// FUSE server maps requests one to one. Inode numbers are assigned by the
// storage daemon, are never reused within a tree, and the root directory is
// RootIno. Handles (HandleID) name open files and directories; they belong
// to the connection that opened them.
//
// Every method returns a syscall.Errno on failure (possibly wrapped), so
// that clients can hand the exact POSIX error code to the kernel or to a
// program. Callers identify themselves with a Caller: the POSIX credentials
// of the process and the principal it acts for. The daemon authorizes every
// mutation with the principal's writecap over the path and with POSIX mode,
// owner and group checks.
//
// The concurrency and durability semantics of each operation are specified
// in docs/fs.md.
package fsapi

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Ino is an inode number.
type Ino uint64

// RootIno is the inode number of a tree's root directory, as FUSE requires.
const RootIno Ino = 1

// HandleID names an open file or directory within one connection.
type HandleID uint64

// Caller identifies the process that makes a request.
type Caller struct {
	UID       uint32
	GID       uint32
	Groups    []uint32 // supplementary groups
	PID       uint32
	Principal principal.Principal
}

// InGroup reports whether gid is the caller's primary or a supplementary group.
func (c *Caller) InGroup(gid uint32) bool {
	if c.GID == gid {
		return true
	}
	for _, g := range c.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// Attr is an inode's attributes, as stat(2) reports them. Times are
// nanoseconds since the Unix epoch.
type Attr struct {
	Ino    Ino
	Mode   uint32 // file type (syscall.S_IFMT bits) and permission bits
	Nlink  uint32
	UID    uint32
	GID    uint32
	Rdev   uint64
	Size   uint64
	Blocks uint64 // 512-byte units of data actually stored (holes excluded)
	Atime  int64
	Mtime  int64
	Ctime  int64
}

// Bits of SetAttrIn.Valid, which select the fields SetAttr changes.
const (
	SetMode uint32 = 1 << iota
	SetUID
	SetGID
	SetSize
	SetAtime    // set Atime to SetAttrIn.Atime
	SetMtime    // set Mtime to SetAttrIn.Mtime
	SetAtimeNow // set Atime to the time of the request
	SetMtimeNow // set Mtime to the time of the request
	SetCtime    // set Ctime to SetAttrIn.Ctime
)

// SetAttrIn is the request of SetAttr.
type SetAttrIn struct {
	Valid  uint32
	Mode   uint32 // permission bits only; the file type cannot change
	UID    uint32
	GID    uint32
	Size   uint64
	Atime  int64
	Mtime  int64
	Ctime  int64
	Handle HandleID // the handle of ftruncate or futimens, or 0
}

// DirEntry is one entry of ReadDir. Cookie is the offset to pass to ReadDir
// to continue after this entry. Cookies of an entry never change while it
// exists, and new entries get larger cookies than every existing one, so a
// reader that continues from a cookie gets each entry that existed
// throughout its reading exactly once.
type DirEntry struct {
	Name   string
	Ino    Ino
	Mode   uint32 // file type bits only
	Cookie uint64
}

// StatFS is the result of StatFS, in the units of statfs(2).
type StatFS struct {
	Blocks  uint64
	Bfree   uint64
	Bavail  uint64
	Files   uint64
	Ffree   uint64
	Bsize   uint32
	NameLen uint32
	Frsize  uint32
}

// Lock is a POSIX record lock over [Start, End], both inclusive; End is
// math.MaxUint64 for "to the end of the file". Type is syscall.F_RDLCK,
// syscall.F_WRLCK or syscall.F_UNLCK. PID is the holder's process id, which
// GetLk reports.
type Lock struct {
	Start uint64
	End   uint64
	Type  uint32
	PID   uint32
}

// Flags of Rename, as renameat2(2) defines them.
const (
	RenameNoReplace uint32 = 1 << 0
	RenameExchange  uint32 = 1 << 1
)

// Flags of SetXattr, as setxattr(2) defines them.
const (
	XattrCreate  uint32 = 1
	XattrReplace uint32 = 2
)

// Limits of the protocol. They match Linux's.
const (
	MaxNameLen      = 255
	MaxPathLen      = 4096
	MaxSymlinkLen   = 4095
	MaxXattrNameLen = 255
	MaxXattrSize    = 64 << 10
	MaxWrite        = 1 << 20 // largest Write and Read in one request
)

// OpenForExec is Linux's __FMODE_EXEC in the flags of Open: the kernel
// sets it on the open that execve(2) sends to a FUSE server, which then
// needs execute permission and no read permission. A file opened so is
// still readable through its handle, so the storage protocol's server
// passes the flag on only from trusted clients such as the FUSE server.
const OpenForExec = 0x20

// AttrOpener is implemented by an FS that opens a file and returns its
// attributes in one call. Over the storage protocol that is one round trip
// instead of two, at every open of the FUSE server, which needs the
// attributes to decide whether the kernel may keep the file's pages.
type AttrOpener interface {
	// OpenAttr opens ino as Open does and returns its attributes as
	// GetAttr would right after. On error no handle stays open.
	OpenAttr(ctx context.Context, c *Caller, ino Ino, flags uint32) (Attr, HandleID, error)
}

// OpenAttr opens ino and returns its attributes: with fs's own OpenAttr
// when fs is an AttrOpener, and otherwise with Open and GetAttr. A handle
// whose attributes cannot be read is released again, so that an error
// leaves no handle open.
func OpenAttr(ctx context.Context, fs FS, c *Caller, ino Ino, flags uint32) (Attr, HandleID, error) {
	if opener, ok := fs.(AttrOpener); ok {
		return opener.OpenAttr(ctx, c, ino, flags)
	}
	h, err := fs.Open(ctx, c, ino, flags)
	if err != nil {
		return Attr{}, 0, err
	}
	attr, err := fs.GetAttr(ctx, c, ino)
	if err != nil {
		if releaseErr := fs.Release(ctx, ino, h); releaseErr != nil {
			err = errors.Join(err, releaseErr)
		}
		return Attr{}, 0, err
	}
	return attr, h, nil
}

// RootOnlyXattr reports whether only root may read and write the extended
// attribute name: those in the trusted. and security. namespaces. Linux
// lets everyone read security. attributes, but no security module runs
// here to decide who may. To anyone else such an attribute reads as
// missing (ENODATA), and a write fails with EPERM.
func RootOnlyXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
}

// ClearSetID returns mode without the set-user-ID bit, and without the
// set-group-ID bit when group execute is set, as Linux clears them on a
// write, truncate or chown. Without group execute the set-group-ID bit
// does not make a program run with the file's group, so it stays. The
// storage engine replays journal entries with it, so it must never change.
func ClearSetID(mode uint32) uint32 {
	mode &^= syscall.S_ISUID
	if mode&syscall.S_IXGRP != 0 {
		mode &^= syscall.S_ISGID
	}
	return mode
}

// CapabilityXattr is the extended attribute that holds a program's file
// capabilities. Like Linux, the storage daemon removes it when a file's
// data, size or owner changes, so that a changed program does not keep the
// privileges granted to the one it replaced.
const CapabilityXattr = "security.capability"

// DirReporter is implemented by an FS whose calls that add or remove a
// directory entry also return the directory's attributes after the change.
// Linux fetches a FUSE directory's attributes again after each such change,
// and the FUSE server can then reply with these instead of requesting them
// from the daemon. Each method returns what its plain counterpart returns, followed
// by the directory's attributes.
type DirReporter interface {
	CreateAttrs(ctx context.Context, c *Caller, parent Ino, name string, mode uint32, flags uint32) (Attr, HandleID, Attr, error)
	MkdirAttrs(ctx context.Context, c *Caller, parent Ino, name string, mode uint32) (Attr, Attr, error)
	UnlinkAttrs(ctx context.Context, c *Caller, parent Ino, name string) (Attr, error)
	RmdirAttrs(ctx context.Context, c *Caller, parent Ino, name string) (Attr, error)
}

// The functions below serve DirReporter's calls on any FS: with the FS's
// own method when it is a DirReporter, and otherwise with the plain call
// and GetAttr of the directory. When only that GetAttr fails, the change
// has still happened, so they return no error and a directory Attr with
// Ino 0.

// CreateAttrs creates and opens a file as DirReporter.CreateAttrs does.
func CreateAttrs(ctx context.Context, fs FS, c *Caller, parent Ino, name string, mode uint32, flags uint32) (Attr, HandleID, Attr, error) {
	if r, ok := fs.(DirReporter); ok {
		return r.CreateAttrs(ctx, c, parent, name, mode, flags)
	}
	attr, h, err := fs.Create(ctx, c, parent, name, mode, flags)
	if err != nil {
		return Attr{}, 0, Attr{}, err
	}
	return attr, h, dirAttr(ctx, fs, c, parent), nil
}

// MkdirAttrs makes a directory as DirReporter.MkdirAttrs does.
func MkdirAttrs(ctx context.Context, fs FS, c *Caller, parent Ino, name string, mode uint32) (Attr, Attr, error) {
	if r, ok := fs.(DirReporter); ok {
		return r.MkdirAttrs(ctx, c, parent, name, mode)
	}
	attr, err := fs.Mkdir(ctx, c, parent, name, mode)
	if err != nil {
		return Attr{}, Attr{}, err
	}
	return attr, dirAttr(ctx, fs, c, parent), nil
}

// UnlinkAttrs removes a non-directory entry as DirReporter.UnlinkAttrs
// does.
func UnlinkAttrs(ctx context.Context, fs FS, c *Caller, parent Ino, name string) (Attr, error) {
	if r, ok := fs.(DirReporter); ok {
		return r.UnlinkAttrs(ctx, c, parent, name)
	}
	if err := fs.Unlink(ctx, c, parent, name); err != nil {
		return Attr{}, err
	}
	return dirAttr(ctx, fs, c, parent), nil
}

// RmdirAttrs removes an empty directory as DirReporter.RmdirAttrs does.
func RmdirAttrs(ctx context.Context, fs FS, c *Caller, parent Ino, name string) (Attr, error) {
	if r, ok := fs.(DirReporter); ok {
		return r.RmdirAttrs(ctx, c, parent, name)
	}
	if err := fs.Rmdir(ctx, c, parent, name); err != nil {
		return Attr{}, err
	}
	return dirAttr(ctx, fs, c, parent), nil
}

// dirAttr returns the attributes of directory ino, or an Attr with Ino 0
// when GetAttr fails.
func dirAttr(ctx context.Context, fs FS, c *Caller, ino Ino) Attr {
	attr, err := fs.GetAttr(ctx, c, ino)
	if err != nil {
		return Attr{}
	}
	return attr
}

// ViewReader is implemented by an FS that can return read data in place,
// without copying it into a buffer of the caller's, such as a client that
// receives the data in memory shared with the storage daemon.
type ViewReader interface {
	// ReadView reads up to size bytes at off, as Read does. The caller
	// must call Release on the view once it no longer needs the bytes.
	ReadView(ctx context.Context, c *Caller, ino Ino, h HandleID, off int64, size int) (DataView, error)
}

// DataView is read data that stays valid until Release. It is not safe
// for concurrent use.
type DataView interface {
	// Bytes returns the data.
	Bytes() []byte
	// Release ends the use of the data and frees its memory for reuse. A
	// second Release does nothing.
	Release()
}

// FS is the file-system protocol. Implementations must be safe for
// concurrent use.
type FS interface {
	Lookup(ctx context.Context, c *Caller, parent Ino, name string) (Attr, error)
	GetAttr(ctx context.Context, c *Caller, ino Ino) (Attr, error)
	SetAttr(ctx context.Context, c *Caller, ino Ino, in *SetAttrIn) (Attr, error)
	Access(ctx context.Context, c *Caller, ino Ino, mask uint32) error

	Mknod(ctx context.Context, c *Caller, parent Ino, name string, mode uint32, rdev uint64) (Attr, error)
	Mkdir(ctx context.Context, c *Caller, parent Ino, name string, mode uint32) (Attr, error)
	Create(ctx context.Context, c *Caller, parent Ino, name string, mode uint32, flags uint32) (Attr, HandleID, error)
	Symlink(ctx context.Context, c *Caller, parent Ino, name string, target string) (Attr, error)
	Link(ctx context.Context, c *Caller, ino Ino, newParent Ino, newName string) (Attr, error)
	Unlink(ctx context.Context, c *Caller, parent Ino, name string) error
	Rmdir(ctx context.Context, c *Caller, parent Ino, name string) error
	Rename(ctx context.Context, c *Caller, oldParent Ino, oldName string, newParent Ino, newName string, flags uint32) error
	Readlink(ctx context.Context, c *Caller, ino Ino) (string, error)

	Open(ctx context.Context, c *Caller, ino Ino, flags uint32) (HandleID, error)
	Read(ctx context.Context, c *Caller, ino Ino, h HandleID, off int64, dest []byte) (int, error)
	Write(ctx context.Context, c *Caller, ino Ino, h HandleID, off int64, data []byte) (int, error)
	Flush(ctx context.Context, c *Caller, ino Ino, h HandleID, lockOwner uint64) error
	Release(ctx context.Context, ino Ino, h HandleID) error
	Fsync(ctx context.Context, c *Caller, ino Ino, h HandleID, datasync bool) error
	Fallocate(ctx context.Context, c *Caller, ino Ino, h HandleID, mode uint32, off, length int64) error
	Lseek(ctx context.Context, c *Caller, ino Ino, h HandleID, off int64, whence uint32) (int64, error)
	CopyFileRange(ctx context.Context, c *Caller, inIno Ino, inH HandleID, inOff int64, outIno Ino, outH HandleID, outOff int64, length uint64, flags uint32) (uint64, error)

	OpenDir(ctx context.Context, c *Caller, ino Ino, flags uint32) (HandleID, error)
	ReadDir(ctx context.Context, c *Caller, ino Ino, h HandleID, cookie uint64, max int) ([]DirEntry, error)
	ReleaseDir(ctx context.Context, ino Ino, h HandleID) error
	FsyncDir(ctx context.Context, c *Caller, ino Ino, h HandleID) error

	StatFS(ctx context.Context, c *Caller, ino Ino) (StatFS, error)
	SyncFS(ctx context.Context, c *Caller) error

	GetXattr(ctx context.Context, c *Caller, ino Ino, name string) ([]byte, error)
	SetXattr(ctx context.Context, c *Caller, ino Ino, name string, value []byte, flags uint32) error
	ListXattr(ctx context.Context, c *Caller, ino Ino) ([]string, error)
	RemoveXattr(ctx context.Context, c *Caller, ino Ino, name string) error

	// GetLk returns the first lock that would conflict with lk, or lk with
	// Type F_UNLCK when none would.
	GetLk(ctx context.Context, c *Caller, ino Ino, h HandleID, owner uint64, lk Lock) (Lock, error)
	// SetLk acquires or releases a POSIX record lock for owner. With wait
	// it blocks until the lock is granted or ctx ends (EINTR).
	SetLk(ctx context.Context, c *Caller, ino Ino, h HandleID, owner uint64, lk Lock, wait bool) error
	// Flock acquires (syscall.LOCK_SH, LOCK_EX) or releases (LOCK_UN) a
	// whole-file lock held by the open file description h.
	Flock(ctx context.Context, c *Caller, ino Ino, h HandleID, how uint32, wait bool) error
}
