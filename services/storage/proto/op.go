package proto

import "fmt"

// Op is the operation code of a request: one per fsapi.FS method, plus
// OpInterrupt. Values are fixed forever within a version.
type Op uint16

// Operation codes. Each fsapi.FS method has the code of its name.
const (
	OpLookup Op = iota + 1
	OpGetAttr
	OpSetAttr
	OpAccess
	OpMknod
	OpMkdir
	OpCreate
	OpSymlink
	OpLink
	OpUnlink
	OpRmdir
	OpRename
	OpReadlink
	OpOpen
	OpRead
	OpWrite
	OpFlush
	OpRelease
	OpFsync
	OpFallocate
	OpLseek
	OpCopyFileRange
	OpOpenDir
	OpReadDir
	OpReleaseDir
	OpFsyncDir
	OpStatFS
	OpSyncFS
	OpGetXattr
	OpSetXattr
	OpListXattr
	OpRemoveXattr
	OpGetLk
	OpSetLk
	OpFlock

	// OpInterrupt requests that the server cancel the context of the
	// request whose id the message carries. It has no arguments and no
	// response.
	OpInterrupt

	// OpOpenAttr is fsapi.AttrOpener's OpenAttr: Open and GetAttr in one
	// request. It was added after OpInterrupt, so its code follows that one.
	OpOpenAttr

	// The ops of fsapi.DirReporter: create, mkdir, unlink and rmdir, each
	// also returning the directory's attributes after the change. They were
	// added in version 3.
	OpCreateAttrs
	OpMkdirAttrs
	OpUnlinkAttrs
	OpRmdirAttrs

	opEnd // one past the last valid code
)

var opNames = [opEnd]string{
	OpLookup:        "lookup",
	OpGetAttr:       "getattr",
	OpSetAttr:       "setattr",
	OpAccess:        "access",
	OpMknod:         "mknod",
	OpMkdir:         "mkdir",
	OpCreate:        "create",
	OpSymlink:       "symlink",
	OpLink:          "link",
	OpUnlink:        "unlink",
	OpRmdir:         "rmdir",
	OpRename:        "rename",
	OpReadlink:      "readlink",
	OpOpen:          "open",
	OpRead:          "read",
	OpWrite:         "write",
	OpFlush:         "flush",
	OpRelease:       "release",
	OpFsync:         "fsync",
	OpFallocate:     "fallocate",
	OpLseek:         "lseek",
	OpCopyFileRange: "copy_file_range",
	OpOpenDir:       "opendir",
	OpReadDir:       "readdir",
	OpReleaseDir:    "releasedir",
	OpFsyncDir:      "fsyncdir",
	OpStatFS:        "statfs",
	OpSyncFS:        "syncfs",
	OpGetXattr:      "getxattr",
	OpSetXattr:      "setxattr",
	OpListXattr:     "listxattr",
	OpRemoveXattr:   "removexattr",
	OpGetLk:         "getlk",
	OpSetLk:         "setlk",
	OpFlock:         "flock",
	OpInterrupt:     "interrupt",
	OpOpenAttr:      "open_attr",
	OpCreateAttrs:   "create_attrs",
	OpMkdirAttrs:    "mkdir_attrs",
	OpUnlinkAttrs:   "unlink_attrs",
	OpRmdirAttrs:    "rmdir_attrs",
}

// Valid reports whether op is a code of this version.
func (op Op) Valid() bool { return op > 0 && op < opEnd }

// String returns the lower-case name of the operation, or "op(N)" for an
// unknown code.
func (op Op) String() string {
	if op.Valid() {
		return opNames[op]
	}
	return fmt.Sprintf("op(%d)", uint16(op))
}

// hasResponse reports whether the server sends a response to requests of op.
func (op Op) hasResponse() bool { return op.Valid() && op != OpInterrupt }

// hasCaller reports whether requests of op carry a Caller, which is the case
// for every fsapi.FS method that takes one.
func (op Op) hasCaller() bool {
	switch op {
	case OpRelease, OpReleaseDir, OpInterrupt:
		return false
	}
	return op.Valid()
}

// opensHandle reports whether a successful response of op carries a new handle.
func (op Op) opensHandle() bool {
	return op == OpOpen || op == OpOpenAttr || op == OpCreate || op == OpCreateAttrs || op == OpOpenDir
}

// quick reports whether req finishes without waiting for an fsync, a lock
// or another client, so that a server may run it in the goroutine that
// reads requests. That saves a goroutine start and a hand-off between
// goroutines, which often wakes a thread: through a host-mode mount,
// deleting a file took 7 or 8 context switches instead of 9.
//
// Some of these read a file's block back from disk first when the daemon
// evicted the file's data: Open, Read and Write, a SetAttr that changes
// the size, and the first xattr read of a large file after a start. The
// daemon holds its engine's lock while it loads, so other requests wait
// for the load either way. Reads and writes of more than quickDataSize
// run in their own goroutines, because their copying, encryption and
// hashing can run beside other requests on another core. GetXattr is here
// because Linux requests security.capability before every write to a
// FUSE file.
func (req *Request) quick() bool {
	switch req.Op {
	case OpLookup, OpGetAttr, OpSetAttr, OpAccess, OpMknod, OpMkdir, OpCreate,
		OpSymlink, OpLink, OpUnlink, OpRmdir, OpRename, OpReadlink, OpOpen,
		OpOpenAttr, OpFlush, OpRelease, OpOpenDir, OpReadDir, OpReleaseDir, OpStatFS,
		OpGetXattr, OpListXattr, OpGetLk,
		OpCreateAttrs, OpMkdirAttrs, OpUnlinkAttrs, OpRmdirAttrs:
		return true
	case OpRead:
		return req.Size <= quickDataSize
	case OpWrite:
		return len(req.Data) <= quickDataSize
	}
	return false
}

// quickDataSize is the largest Read or Write that may run inline.
const quickDataSize = 64 << 10
