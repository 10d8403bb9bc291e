package fusefs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// rawFS implements fuse.RawFileSystem on top of an fsapi.FS. Its methods
// live in the ops_*.go files, one file for each group of requests.
type rawFS struct {
	fs        fsapi.FS
	principal principal.Principal
	logger    *slog.Logger
	timeouts  *cacheTimeouts
	groups    *groupCache
	pages     *pageCache
	locked    lockedInodes
	dirAttrs  *dirAttrs         // directory attributes that changes returned
	noCap     *noCapability     // inodes known to have no security.capability
	setID     *setIDFiles       // files sent to the kernel with set-ID bits
	names     *knownNames       // names the kernel may cache for long
	server    *fuse.Server      // set by Init, before the first request
	reporter  fsapi.DirReporter // fs, or withoutDirAttrs when fs returns none
	unmounted func()            // stops following changes
}

var _ fuse.RawFileSystem = (*rawFS)(nil)

func (r *rawFS) String() string { return "blocktree" }

// SetDebug is part of fuse.RawFileSystem. Debug output is configured with
// Options.Debug at mount time.
func (r *rawFS) SetDebug(bool) {}

func (r *rawFS) Init(server *fuse.Server) { r.server = server }

func (r *rawFS) OnUnmount() {
	r.unmounted()
	r.logger.Info("file system server stopped")
}

// request returns the context and the caller for one kernel request. The
// context is never cancelled: the kernel interrupts a request whenever the
// calling thread gets a signal, and Go's runtime signals its threads for
// preemption all the time. A request that the daemon may already have
// applied must not then report EINTR, or a program gets an error for a rename that
// happened fail and retries into ENOENT. Only a lock wait, which changes
// nothing until it is granted, listens to interrupts (interruptible).
func (r *rawFS) request(_ <-chan struct{}, h *fuse.InHeader) (context.Context, *fsapi.Caller) {
	ctx := &fuse.Context{Caller: h.Caller}
	return ctx, r.caller(h)
}

// interruptible is request for a lock wait: its context ends when the kernel
// interrupts the request, so a signal ends the wait with EINTR.
func (r *rawFS) interruptible(cancel <-chan struct{}, h *fuse.InHeader) (context.Context, *fsapi.Caller) {
	ctx := &fuse.Context{Caller: h.Caller, Cancel: cancel}
	return ctx, r.caller(h)
}

func (r *rawFS) caller(h *fuse.InHeader) *fsapi.Caller {
	return &fsapi.Caller{
		UID:       h.Uid,
		GID:       h.Gid,
		Groups:    r.groups.lookup(h.Pid, h.Uid, h.Gid),
		PID:       h.Pid,
		Principal: r.principal,
	}
}

// status converts an fsapi error into the status for the kernel. Errors
// that carry no errno are logged and become EIO.
func (r *rawFS) status(op string, ino uint64, err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return fuse.Status(errno)
	}
	if errors.Is(err, context.Canceled) {
		return fuse.EINTR
	}
	r.logger.Error("file system request failed", "op", op, "ino", ino, "error", err)
	return fuse.EIO
}

// fillEntry fills a LOOKUP-style reply for name in parent. An Attr without
// an inode number would tell the kernel that the name does not exist, so
// it is an error.
func (r *rawFS) fillEntry(op string, out *fuse.EntryOut, parent fsapi.Ino, name string, a *fsapi.Attr) fuse.Status {
	if a.Ino == 0 {
		r.logger.Error("file system returned inode number 0", "op", op)
		return fuse.EIO
	}
	out.NodeId = uint64(a.Ino)
	out.Generation = 0 // fsapi never reuses inode numbers.
	entry, attr := r.names.entryTimeouts(r.timeouts, parent, name, a)
	out.SetEntryTimeout(entry)
	out.SetAttrTimeout(attr)
	fillAttr(&out.Attr, a)
	r.setID.saw(a)
	return fuse.OK
}

func (r *rawFS) fillAttrOut(out *fuse.AttrOut, a *fsapi.Attr) {
	_, attr := r.timeouts.entryOut()
	out.SetTimeout(attr)
	fillAttr(&out.Attr, a)
	r.setID.saw(a)
}

func fillAttr(out *fuse.Attr, a *fsapi.Attr) {
	out.Ino = uint64(a.Ino)
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Atime, out.Atimensec = splitNanos(a.Atime)
	out.Mtime, out.Mtimensec = splitNanos(a.Mtime)
	out.Ctime, out.Ctimensec = splitNanos(a.Ctime)
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid = a.UID
	out.Gid = a.GID
	out.Rdev = kernelDev(a.Rdev)
	// Blksize 0 lets the kernel report its default preferred I/O size.
	out.Blksize = 0
}

// splitNanos splits nanoseconds since the epoch into seconds and
// nanoseconds for the kernel. Times before 1970 have negative seconds,
// which the kernel reads back from the two's complement.
func splitNanos(ns int64) (uint64, uint32) {
	sec := ns / 1e9
	nsec := ns % 1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return uint64(sec), uint32(nsec)
}

// joinNanos is the inverse of splitNanos.
func joinNanos(sec uint64, nsec uint32) int64 {
	return int64(sec)*1e9 + int64(nsec)
}

// kernelDev converts a device number as stat(2) reports it into the 32-bit
// encoding of FUSE, which is the kernel's new_encode_dev: minor bits 0-7,
// major bits 8-19, minor bits 8-19 in bits 20-31. Larger numbers do not fit.
func kernelDev(dev uint64) uint32 {
	major, minor := unix.Major(dev), unix.Minor(dev)
	return minor&0xff | (major&0xfff)<<8 | (minor&0xfff00)<<12
}

// statDev is the inverse of kernelDev.
func statDev(dev uint32) uint64 {
	major := (dev & 0xfff00) >> 8
	minor := dev&0xff | (dev>>12)&0xfff00
	return unix.Mkdev(major, minor)
}
