package proto

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

var ebadf = uint32(syscall.EBADF)

// dispatch calls the file-system method of req and fills in resp. It
// returns true if it sent the response itself, as a Read does, and the
// caller then sends nothing.
func (sc *serverConn) dispatch(ctx context.Context, req *Request, resp *Response) bool {
	fs := sc.srv.fs
	var err error
	switch req.Op {
	case OpLookup:
		resp.Attr, err = fs.Lookup(ctx, sc.caller(req), req.Ino, req.Name)
	case OpGetAttr:
		resp.Attr, err = fs.GetAttr(ctx, sc.caller(req), req.Ino)
	case OpSetAttr:
		// The handle of ftruncate(2) or futimens(2) may be a file's or a
		// directory's.
		if h := req.SetAttr.Handle; h != 0 && !sc.ownsHandle(h, req.Ino, false) && !sc.ownsHandle(h, req.Ino, true) {
			resp.Errno = ebadf
			return false
		}
		in := req.SetAttr
		resp.Attr, err = fs.SetAttr(ctx, sc.caller(req), req.Ino, &in)
	case OpAccess:
		err = fs.Access(ctx, sc.caller(req), req.Ino, req.Mask)
	case OpMknod:
		resp.Attr, err = fs.Mknod(ctx, sc.caller(req), req.Ino, req.Name, req.Mode, req.Rdev)
	case OpMkdir:
		resp.Attr, err = fs.Mkdir(ctx, sc.caller(req), req.Ino, req.Name, req.Mode)
	case OpCreate:
		resp.Attr, resp.Handle, err = fs.Create(ctx, sc.caller(req), req.Ino, req.Name, req.Mode, sc.openFlags(req))
		if err == nil {
			sc.addHandle(resp.Handle, resp.Attr.Ino, false)
		}
	case OpCreateAttrs:
		resp.Attr, resp.Handle, resp.DirAttr, err = fsapi.CreateAttrs(ctx, fs, sc.caller(req), req.Ino, req.Name, req.Mode, sc.openFlags(req))
		if err == nil {
			sc.addHandle(resp.Handle, resp.Attr.Ino, false)
		}
	case OpMkdirAttrs:
		resp.Attr, resp.DirAttr, err = fsapi.MkdirAttrs(ctx, fs, sc.caller(req), req.Ino, req.Name, req.Mode)
	case OpUnlinkAttrs:
		resp.DirAttr, err = fsapi.UnlinkAttrs(ctx, fs, sc.caller(req), req.Ino, req.Name)
	case OpRmdirAttrs:
		resp.DirAttr, err = fsapi.RmdirAttrs(ctx, fs, sc.caller(req), req.Ino, req.Name)
	case OpSymlink:
		resp.Attr, err = fs.Symlink(ctx, sc.caller(req), req.Ino, req.Name, req.Target)
	case OpLink:
		resp.Attr, err = fs.Link(ctx, sc.caller(req), req.Ino, req.NewParent, req.NewName)
	case OpUnlink:
		err = fs.Unlink(ctx, sc.caller(req), req.Ino, req.Name)
	case OpRmdir:
		err = fs.Rmdir(ctx, sc.caller(req), req.Ino, req.Name)
	case OpRename:
		err = fs.Rename(ctx, sc.caller(req), req.Ino, req.Name, req.NewParent, req.NewName, req.Flags)
	case OpReadlink:
		resp.Target, err = fs.Readlink(ctx, sc.caller(req), req.Ino)
	case OpOpen:
		resp.Handle, err = fs.Open(ctx, sc.caller(req), req.Ino, sc.openFlags(req))
		if err == nil {
			sc.addHandle(resp.Handle, req.Ino, false)
		}
	case OpOpenAttr:
		resp.Attr, resp.Handle, err = fsapi.OpenAttr(ctx, fs, sc.caller(req), req.Ino, sc.openFlags(req))
		if err == nil {
			sc.addHandle(resp.Handle, req.Ino, false)
		}
	case OpRead:
		return sc.read(ctx, req, resp)
	case OpWrite:
		if !sc.ownsHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		var n int
		n, err = fs.Write(ctx, sc.caller(req), req.Ino, req.Handle, req.Offset, req.Data)
		if err == nil && (n < 0 || n > len(req.Data)) {
			sc.log.Error("file system wrote a count outside the data; sending EIO", "op", req.Op.String(), "count", n, "size", len(req.Data))
			resp.Errno = uint32(syscall.EIO)
			return false
		}
		resp.Count = uint64(n)
	case OpFlush:
		if !sc.ownsHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		err = fs.Flush(ctx, sc.caller(req), req.Ino, req.Handle, req.Owner)
	case OpRelease:
		if !sc.takeHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		err = fs.Release(ctx, req.Ino, req.Handle)
	case OpFsync:
		if !sc.ownsHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		err = fs.Fsync(ctx, sc.caller(req), req.Ino, req.Handle, req.Datasync)
	case OpFallocate:
		if !sc.ownsHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		err = fs.Fallocate(ctx, sc.caller(req), req.Ino, req.Handle, req.Mode, req.Offset, int64(req.Length))
	case OpLseek:
		if !sc.ownsHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		resp.Offset, err = fs.Lseek(ctx, sc.caller(req), req.Ino, req.Handle, req.Offset, req.Whence)
	case OpCopyFileRange:
		if !sc.ownsHandle(req.Handle, req.Ino, false) || !sc.ownsHandle(req.OutHandle, req.OutIno, false) {
			resp.Errno = ebadf
			return false
		}
		resp.Count, err = fs.CopyFileRange(ctx, sc.caller(req), req.Ino, req.Handle, req.Offset,
			req.OutIno, req.OutHandle, req.OutOffset, req.Length, req.Flags)
	case OpOpenDir:
		resp.Handle, err = fs.OpenDir(ctx, sc.caller(req), req.Ino, req.Flags)
		if err == nil {
			sc.addHandle(resp.Handle, req.Ino, true)
		}
	case OpReadDir:
		if !sc.ownsHandle(req.Handle, req.Ino, true) {
			resp.Errno = ebadf
			return false
		}
		resp.Entries, err = fs.ReadDir(ctx, sc.caller(req), req.Ino, req.Handle, req.Cookie, int(req.Max))
		// Entries past max are read again by the next ReadDir, which
		// continues from the cookie of the last entry sent.
		if len(resp.Entries) > int(req.Max) {
			resp.Entries = resp.Entries[:req.Max]
		}
		if len(resp.Entries) == 0 {
			resp.Entries = nil
		}
	case OpReleaseDir:
		if !sc.takeHandle(req.Handle, req.Ino, true) {
			resp.Errno = ebadf
			return false
		}
		err = fs.ReleaseDir(ctx, req.Ino, req.Handle)
	case OpFsyncDir:
		if !sc.ownsHandle(req.Handle, req.Ino, true) {
			resp.Errno = ebadf
			return false
		}
		err = fs.FsyncDir(ctx, sc.caller(req), req.Ino, req.Handle)
	case OpStatFS:
		resp.StatFS, err = fs.StatFS(ctx, sc.caller(req), req.Ino)
	case OpSyncFS:
		err = fs.SyncFS(ctx, sc.caller(req))
	case OpGetXattr:
		resp.Data, err = fs.GetXattr(ctx, sc.caller(req), req.Ino, req.Name)
		if len(resp.Data) == 0 {
			resp.Data = nil
		}
	case OpSetXattr:
		err = fs.SetXattr(ctx, sc.caller(req), req.Ino, req.Name, req.Data, req.Flags)
	case OpListXattr:
		resp.Names, err = fs.ListXattr(ctx, sc.caller(req), req.Ino)
		if len(resp.Names) == 0 {
			resp.Names = nil
		}
	case OpRemoveXattr:
		err = fs.RemoveXattr(ctx, sc.caller(req), req.Ino, req.Name)
	case OpGetLk:
		if !sc.ownsHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		resp.Lock, err = fs.GetLk(ctx, sc.caller(req), req.Ino, req.Handle, req.Owner, req.Lock)
	case OpSetLk:
		c := sc.caller(req)
		if !sc.addLockOwner(req.Handle, req.Ino, req.Owner, c) {
			resp.Errno = ebadf
			return false
		}
		err = fs.SetLk(ctx, c, req.Ino, req.Handle, req.Owner, req.Lock, req.Wait)
	case OpFlock:
		if !sc.ownsHandle(req.Handle, req.Ino, false) {
			resp.Errno = ebadf
			return false
		}
		err = fs.Flock(ctx, sc.caller(req), req.Ino, req.Handle, req.How, req.Wait)
	}
	if err != nil {
		// Results that came with an error are not sent.
		*resp = Response{Op: resp.Op, ID: resp.ID, Errno: sc.errno(req.Op, err)}
	}
	return false
}

// read runs a Read straight into the response's space in the send ring
// and sends the response, unless it fails before that. It returns true if
// it sent the response, or the connection ended so that none can be sent.
//
// The response is the header with a zero data length, then the data that
// fs.Read writes in place. The length is filled in after the read, and the
// reservation is truncated to what was read.
//
// NOTE: the reservation holds the connection's sending side, so the other
// responses of the connection wait while fs.Read runs. A file system whose
// Read waits long, such as for a remote node, would need a copy through a
// private buffer instead.
func (sc *serverConn) read(ctx context.Context, req *Request, resp *Response) bool {
	if !sc.ownsHandle(req.Handle, req.Ino, false) {
		resp.Errno = ebadf
		return false
	}
	var header [readResponseHeaderSize]byte
	head, err := AppendResponse(header[:0], &Response{Op: OpRead, ID: req.ID})
	if err != nil || len(head) != readResponseHeaderSize {
		panic(fmt.Sprintf("proto: read response header is %d bytes, expected %d: %v", len(head), readResponseHeaderSize, err))
	}

	if !sc.mem.hold() {
		return true // the connection is closing
	}
	defer sc.mem.done()
	r, err := sc.conn.Reserve(ctx, busKindResponse, len(head)+int(req.Size))
	if err != nil {
		if ctx.Err() != nil && sc.ctx.Err() == nil {
			resp.Errno = uint32(syscall.EINTR)
			return false
		}
		sc.logSendError(req.Op.String()+" response", err)
		return true
	}
	buf := r.Bytes()
	copy(buf, head)
	dest := buf[len(head):]

	n, err := sc.srv.fs.Read(ctx, sc.caller(req), req.Ino, req.Handle, req.Offset, dest)
	switch {
	case err != nil:
		r.Cancel()
		resp.Errno = sc.errno(req.Op, err)
		return false
	case n < 0 || n > len(dest):
		r.Cancel()
		sc.log.Error("file system read a count outside the buffer; sending EIO", "op", req.Op.String(), "count", n, "size", len(dest))
		resp.Errno = uint32(syscall.EIO)
		return false
	}
	binary.BigEndian.PutUint32(buf[len(head)-4:], uint32(n))
	if err := r.Truncate(len(head) + n); err != nil {
		r.Cancel()
		panic(fmt.Sprintf("proto: truncate read response: %v", err))
	}
	commit := r.Commit
	if quiet, _ := ctx.Value(quietKey{}).(bool); quiet {
		commit = r.CommitQuiet
	}
	sc.logSendError(req.Op.String()+" response", commit())
	return true
}

// openFlags returns the flags of an open or create request. Only a
// trusted client relays the kernel's open for execve(2), so another
// client's OpenForExec is dropped: it would let the client read a file
// that it may only run.
func (sc *serverConn) openFlags(req *Request) uint32 {
	if sc.trusted {
		return req.Flags
	}
	return req.Flags &^ fsapi.OpenForExec
}
