package fusefs

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Requests on open files.

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	parent := fsapi.Ino(in.NodeId)
	generation := r.noCap.current()
	end := r.dirAttrs.begin(parent)
	attr, h, dir, err := r.reporter.CreateAttrs(ctx, c, parent, name, in.Mode, in.Flags)
	end(dir)
	if err != nil {
		return r.status("create", in.NodeId, err)
	}
	if st := r.fillEntry("create", &out.EntryOut, parent, name, &attr); st != fuse.OK {
		r.releaseAfterFailure(attr.Ino, h)
		return st
	}
	if in.Flags&syscall.O_EXCL != 0 && !r.timeouts.short() {
		// Without O_EXCL the daemon opens a file that another client
		// created meanwhile, which may have a capability. The generation
		// check drops the record if a notification of a change to the new
		// file came in between.
		r.noCap.add(attr.Ino, generation)
	}
	out.OpenOut = fuse.OpenOut{Fh: uint64(h)}
	return fuse.OK
}

// releaseAfterFailure releases a handle that the kernel will never see
// because the reply that would carry it failed.
func (r *rawFS) releaseAfterFailure(ino fsapi.Ino, h fsapi.HandleID) {
	if err := r.fs.Release(context.Background(), ino, h); err != nil {
		r.logger.Error("release after failed create", "ino", uint64(ino), "error", err)
	}
}

// Tmpfile is not dispatched by go-fuse v2.12.1, so O_TMPFILE fails with
// EOPNOTSUPP.
func (r *rawFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	return fuse.ENOSYS
}

func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	// Without CAP_ATOMIC_O_TRUNC the kernel strips O_TRUNC here and sends
	// a SETATTR of size 0 with the new handle after the open.
	attr, h, err := fsapi.OpenAttr(ctx, r.fs, c, fsapi.Ino(in.NodeId), in.Flags)
	if err != nil {
		return r.status("open", in.NodeId, err)
	}
	*out = fuse.OpenOut{Fh: uint64(h)}
	// Without FOPEN_KEEP_CACHE the kernel drops the file's cached data.
	if r.pages.opened(&attr) {
		out.OpenFlags |= fuse.FOPEN_KEEP_CACHE
	}
	return fuse.OK
}

// Read reads into buf, which go-fuse allocates from its buffer pool with
// the size of the request, unless the file system is an fsapi.ViewReader:
// then go-fuse writes the data to the kernel straight from the view, and
// the view is released once it has.
func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	ctx, c := r.request(cancel, &in.InHeader)
	if vr, ok := r.fs.(fsapi.ViewReader); ok {
		view, err := vr.ReadView(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), int64(in.Offset), int(in.Size))
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, r.status("read", in.NodeId, err)
		}
		if err != nil {
			return fuse.ReadResultData(nil), fuse.OK
		}
		return &viewResult{view: view}, fuse.OK
	}
	dest := buf[:min(len(buf), int(in.Size))]
	n, err := r.fs.Read(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), int64(in.Offset), dest)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, r.status("read", in.NodeId, err)
	}
	return fuse.ReadResultData(dest[:n]), fuse.OK
}

// viewResult is the fuse.ReadResult of a read that an fsapi.ViewReader
// returned in place. go-fuse v2.12.1 calls Done once after it wrote the
// reply to the kernel, or after it failed to (fuse/fusefd_linux.go), and
// its Slices method makes go-fuse write the view with writev(2) instead
// of copying it into a buffer first.
type viewResult struct {
	view fsapi.DataView
}

func (v *viewResult) Bytes(buf []byte) ([]byte, fuse.Status) { return v.view.Bytes(), fuse.OK }

func (v *viewResult) Size() int { return len(v.view.Bytes()) }

func (v *viewResult) Done() { v.view.Release() }

func (v *viewResult) Slices() ([][]byte, fuse.Status) { return [][]byte{v.view.Bytes()}, fuse.OK }

func (r *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	ctx, c := r.request(cancel, &in.InHeader)
	r.pages.changed(fsapi.Ino(in.NodeId))
	n, err := r.fs.Write(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), int64(in.Offset), data)
	if err != nil {
		return 0, r.status("write", in.NodeId, err)
	}
	r.dataChanged(c, fsapi.Ino(in.NodeId))
	return uint32(n), fuse.OK
}

// writeBuffers holds buffers of fsapi.MaxWrite bytes for joining a WRITE
// whose data arrived in several pieces.
var writeBuffers = sync.Pool{New: func() any {
	b := make([]byte, fsapi.MaxWrite)
	return &b
}}

// Writev serves WRITE. go-fuse passes the data in several slices when it
// read the request in pieces. They are joined so that the daemon gets one
// write, as the kernel sent it.
func (r *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if len(data) == 1 {
		return r.Write(cancel, in, data[0])
	}
	total := 0
	for _, d := range data {
		total += len(d)
	}
	if total > fsapi.MaxWrite {
		// The kernel never sends more than the negotiated MaxWrite.
		return 0, fuse.EINVAL
	}
	bufp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bufp)
	joined := (*bufp)[:0]
	for _, d := range data {
		joined = append(joined, d...)
	}
	return r.Write(cancel, in, joined)
}

// Flush is sent at each close(2) of a file descriptor, with the lock owner
// of the closing process, whose POSIX locks the daemon releases.
func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if !r.locked.contains(fsapi.Ino(in.NodeId)) {
		return fuse.OK
	}
	ctx, c := r.request(cancel, &in.InHeader)
	err := r.fs.Flush(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), in.LockOwner)
	return r.status("flush", in.NodeId, err)
}

// Release is sent when the last file descriptor of an open file
// description is closed. The kernel ignores the result, so errors are only
// logged.
func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	ctx, c := r.request(cancel, &in.InHeader)
	ino, h := fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh)
	if in.ReleaseFlags&fuse.FUSE_RELEASE_FLOCK_UNLOCK != 0 {
		if err := r.fs.Flock(ctx, c, ino, h, unix.LOCK_UN, false); err != nil {
			r.logger.Error("release flock at close", "ino", in.NodeId, "error", err)
		}
	}
	if err := r.fs.Release(ctx, ino, h); err != nil {
		r.logger.Error("release failed", "ino", in.NodeId, "error", err)
	}
}

func (r *rawFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	datasync := in.FsyncFlags&fsyncFdatasync != 0
	err := r.fs.Fsync(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), datasync)
	return r.status("fsync", in.NodeId, err)
}

// fsyncFdatasync is FUSE_FSYNC_FDATASYNC from linux/fuse.h.
const fsyncFdatasync = 1 << 0

func (r *rawFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	if in.Offset > math.MaxInt64 || in.Length > math.MaxInt64 {
		return fuse.Status(unix.EFBIG)
	}
	r.pages.changed(fsapi.Ino(in.NodeId))
	err := r.fs.Fallocate(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), in.Mode, int64(in.Offset), int64(in.Length))
	if err != nil {
		return r.status("fallocate", in.NodeId, err)
	}
	r.dataChanged(c, fsapi.Ino(in.NodeId))
	return fuse.OK
}

// Lseek serves SEEK_DATA and SEEK_HOLE; the kernel handles the other
// whence values itself.
func (r *rawFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	if in.Offset > math.MaxInt64 {
		return fuse.Status(unix.ENXIO)
	}
	off, err := r.fs.Lseek(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), int64(in.Offset), in.Whence)
	if err != nil {
		return r.status("lseek", in.NodeId, err)
	}
	out.Offset = uint64(off)
	return fuse.OK
}

// maxCopyLength keeps a COPY_FILE_RANGE reply within the 32-bit count that
// the reply carries. It is page-aligned so that a copy of a large file
// continues at page boundaries.
const maxCopyLength = math.MaxUint32 &^ (4096 - 1)

// CopyFileRange copies at most maxCopyLength bytes; copy_file_range(2)
// reports the shorter count, and callers loop.
func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	ctx, c := r.request(cancel, &in.InHeader)
	if in.OffIn > math.MaxInt64 || in.OffOut > math.MaxInt64 {
		return 0, fuse.EINVAL
	}
	length := min(in.Len, maxCopyLength)
	r.pages.changed(fsapi.Ino(in.NodeIdOut))
	n, err := r.fs.CopyFileRange(ctx, c,
		fsapi.Ino(in.NodeId), fsapi.HandleID(in.FhIn), int64(in.OffIn),
		fsapi.Ino(in.NodeIdOut), fsapi.HandleID(in.FhOut), int64(in.OffOut),
		length, uint32(in.Flags))
	if err != nil {
		return 0, r.status("copy_file_range", in.NodeId, err)
	}
	r.dataChanged(c, fsapi.Ino(in.NodeIdOut))
	return uint32(min(n, length)), fuse.OK
}

// Ioctl is not supported; the kernel reports ENOTTY.
func (r *rawFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	return fuse.ENOSYS
}
