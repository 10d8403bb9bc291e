package proto

import (
	"context"
	"fmt"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// The methods below implement fsapi.FS by sending one request each. Every
// error is an *Error, whose Errno is the daemon's, or a *ConnError, which
// matches syscall.EIO.

var (
	_ fsapi.FS         = (*Client)(nil)
	_ fsapi.ViewReader = (*Client)(nil)
)

// callerOf returns the Caller to encode; a nil Caller encodes as the zero one.
func callerOf(c *fsapi.Caller) fsapi.Caller {
	if c == nil {
		return fsapi.Caller{}
	}
	return *c
}

// attr sends a request whose only result is an Attr.
func (c *Client) attr(ctx context.Context, req *Request) (fsapi.Attr, error) {
	cl, err := c.do(ctx, req)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return cl.resp.Attr, nil
}

// handle sends a request whose only result is a handle.
func (c *Client) handle(ctx context.Context, req *Request) (fsapi.HandleID, error) {
	cl, err := c.do(ctx, req)
	if err != nil {
		return 0, err
	}
	return cl.resp.Handle, nil
}

// none sends a request that has no results.
func (c *Client) none(ctx context.Context, req *Request) error {
	_, err := c.do(ctx, req)
	return err
}

func (c *Client) Lookup(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	return c.attr(ctx, &Request{Op: OpLookup, Caller: callerOf(caller), Ino: parent, Name: name})
}

func (c *Client) GetAttr(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino) (fsapi.Attr, error) {
	return c.attr(ctx, &Request{Op: OpGetAttr, Caller: callerOf(caller), Ino: ino})
}

func (c *Client) SetAttr(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, in *fsapi.SetAttrIn) (fsapi.Attr, error) {
	return c.attr(ctx, &Request{Op: OpSetAttr, Caller: callerOf(caller), Ino: ino, SetAttr: *in})
}

func (c *Client) Access(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, mask uint32) error {
	return c.none(ctx, &Request{Op: OpAccess, Caller: callerOf(caller), Ino: ino, Mask: mask})
}

func (c *Client) Mknod(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, rdev uint64) (fsapi.Attr, error) {
	return c.attr(ctx, &Request{Op: OpMknod, Caller: callerOf(caller), Ino: parent, Name: name, Mode: mode, Rdev: rdev})
}

func (c *Client) Mkdir(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, error) {
	return c.attr(ctx, &Request{Op: OpMkdir, Caller: callerOf(caller), Ino: parent, Name: name, Mode: mode})
}

func (c *Client) Create(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, error) {
	cl, err := c.do(ctx, &Request{Op: OpCreate, Caller: callerOf(caller), Ino: parent, Name: name, Mode: mode, Flags: flags})
	if err != nil {
		return fsapi.Attr{}, 0, err
	}
	return cl.resp.Attr, cl.resp.Handle, nil
}

func (c *Client) Symlink(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string, target string) (fsapi.Attr, error) {
	return c.attr(ctx, &Request{Op: OpSymlink, Caller: callerOf(caller), Ino: parent, Name: name, Target: target})
}

func (c *Client) Link(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, newParent fsapi.Ino, newName string) (fsapi.Attr, error) {
	return c.attr(ctx, &Request{Op: OpLink, Caller: callerOf(caller), Ino: ino, NewParent: newParent, NewName: newName})
}

func (c *Client) Unlink(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string) error {
	return c.none(ctx, &Request{Op: OpUnlink, Caller: callerOf(caller), Ino: parent, Name: name})
}

func (c *Client) Rmdir(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string) error {
	return c.none(ctx, &Request{Op: OpRmdir, Caller: callerOf(caller), Ino: parent, Name: name})
}

// CreateAttrs creates and opens a file and returns the attributes of the
// file and of parent in one OpCreateAttrs request (fsapi.DirReporter).
func (c *Client) CreateAttrs(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, fsapi.Attr, error) {
	cl, err := c.do(ctx, &Request{Op: OpCreateAttrs, Caller: callerOf(caller), Ino: parent, Name: name, Mode: mode, Flags: flags})
	if err != nil {
		return fsapi.Attr{}, 0, fsapi.Attr{}, err
	}
	return cl.resp.Attr, cl.resp.Handle, cl.resp.DirAttr, nil
}

// MkdirAttrs makes a directory and returns its attributes and those of
// parent in one OpMkdirAttrs request (fsapi.DirReporter).
func (c *Client) MkdirAttrs(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, fsapi.Attr, error) {
	cl, err := c.do(ctx, &Request{Op: OpMkdirAttrs, Caller: callerOf(caller), Ino: parent, Name: name, Mode: mode})
	if err != nil {
		return fsapi.Attr{}, fsapi.Attr{}, err
	}
	return cl.resp.Attr, cl.resp.DirAttr, nil
}

// UnlinkAttrs removes a non-directory entry and returns the attributes of
// parent in one OpUnlinkAttrs request (fsapi.DirReporter).
func (c *Client) UnlinkAttrs(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	cl, err := c.do(ctx, &Request{Op: OpUnlinkAttrs, Caller: callerOf(caller), Ino: parent, Name: name})
	if err != nil {
		return fsapi.Attr{}, err
	}
	return cl.resp.DirAttr, nil
}

// RmdirAttrs removes an empty directory and returns the attributes of
// parent in one OpRmdirAttrs request (fsapi.DirReporter).
func (c *Client) RmdirAttrs(ctx context.Context, caller *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	cl, err := c.do(ctx, &Request{Op: OpRmdirAttrs, Caller: callerOf(caller), Ino: parent, Name: name})
	if err != nil {
		return fsapi.Attr{}, err
	}
	return cl.resp.DirAttr, nil
}

func (c *Client) Rename(ctx context.Context, caller *fsapi.Caller, oldParent fsapi.Ino, oldName string, newParent fsapi.Ino, newName string, flags uint32) error {
	return c.none(ctx, &Request{Op: OpRename, Caller: callerOf(caller), Ino: oldParent, Name: oldName, NewParent: newParent, NewName: newName, Flags: flags})
}

func (c *Client) Readlink(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino) (string, error) {
	cl, err := c.do(ctx, &Request{Op: OpReadlink, Caller: callerOf(caller), Ino: ino})
	if err != nil {
		return "", err
	}
	return cl.resp.Target, nil
}

func (c *Client) Open(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.HandleID, error) {
	return c.handle(ctx, &Request{Op: OpOpen, Caller: callerOf(caller), Ino: ino, Flags: flags})
}

// OpenAttr opens ino and returns its attributes in one OpOpenAttr request
// (fsapi.AttrOpener).
func (c *Client) OpenAttr(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.Attr, fsapi.HandleID, error) {
	cl, err := c.do(ctx, &Request{Op: OpOpenAttr, Caller: callerOf(caller), Ino: ino, Flags: flags})
	if err != nil {
		return fsapi.Attr{}, 0, err
	}
	return cl.resp.Attr, cl.resp.Handle, nil
}

// Read reads into dest and returns the number of bytes read. A dest longer
// than fsapi.MaxWrite is filled up to fsapi.MaxWrite bytes, a short read.
func (c *Client) Read(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, dest []byte) (int, error) {
	cl, err := c.read(ctx, caller, ino, h, off, len(dest))
	if err != nil {
		return 0, err
	}
	defer cl.recycle()
	return copy(dest, cl.resp.Data), nil
}

// ReadView reads up to size bytes, and at most fsapi.MaxWrite, and returns
// them in place: a response of the copy threshold (4 KiB) or more is a
// view into the memory that the Client shares with the daemon. The daemon
// can still write that memory, so the caller must not trust the bytes any
// more than a copy of them. The view holds ring space, which returns in
// the order of receipt, so the caller releases it as soon as it can.
func (c *Client) ReadView(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, size int) (fsapi.DataView, error) {
	if size < 0 {
		return nil, &Error{Op: OpRead, Errno: syscall.EINVAL, Err: fmt.Errorf("read size %d is negative", size)}
	}
	cl, err := c.read(ctx, caller, ino, h, off, size)
	if err != nil {
		return nil, err
	}
	return &readView{data: cl.resp.Data, msg: cl.msg}, nil
}

// read sends a Read of up to size bytes and checks the length of the
// data.
func (c *Client) read(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, size int) (*call, error) {
	size = min(size, fsapi.MaxWrite)
	cl, err := c.do(ctx, &Request{Op: OpRead, Caller: callerOf(caller), Ino: ino, Handle: h, Offset: off, Size: uint32(size)})
	if err != nil {
		return nil, err
	}
	if len(cl.resp.Data) > size {
		n := len(cl.resp.Data)
		cl.recycle()
		return nil, &Error{Op: OpRead, Errno: syscall.EIO, Err: fmt.Errorf("daemon returned %d bytes for a read of %d", n, size)}
	}
	return cl, nil
}

// readView is the data of a Read response, in the received message.
type readView struct {
	data []byte
	msg  heldMessage
}

func (v *readView) Bytes() []byte { return v.data }

func (v *readView) Release() {
	v.data = nil
	v.msg.release()
}

// Write fails with EINVAL if data is longer than fsapi.MaxWrite.
func (c *Client) Write(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, data []byte) (int, error) {
	cl, err := c.do(ctx, &Request{Op: OpWrite, Caller: callerOf(caller), Ino: ino, Handle: h, Offset: off, Data: data})
	if err != nil {
		return 0, err
	}
	if cl.resp.Count > uint64(len(data)) {
		return 0, &Error{Op: OpWrite, Errno: syscall.EIO, Err: fmt.Errorf("daemon wrote %d bytes of %d", cl.resp.Count, len(data))}
	}
	return int(cl.resp.Count), nil
}

func (c *Client) Flush(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, lockOwner uint64) error {
	return c.none(ctx, &Request{Op: OpFlush, Caller: callerOf(caller), Ino: ino, Handle: h, Owner: lockOwner})
}

func (c *Client) Release(ctx context.Context, ino fsapi.Ino, h fsapi.HandleID) error {
	return c.none(ctx, &Request{Op: OpRelease, Ino: ino, Handle: h})
}

func (c *Client) Fsync(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, datasync bool) error {
	return c.none(ctx, &Request{Op: OpFsync, Caller: callerOf(caller), Ino: ino, Handle: h, Datasync: datasync})
}

func (c *Client) Fallocate(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, mode uint32, off, length int64) error {
	return c.none(ctx, &Request{Op: OpFallocate, Caller: callerOf(caller), Ino: ino, Handle: h, Mode: mode, Offset: off, Length: uint64(length)})
}

func (c *Client) Lseek(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, whence uint32) (int64, error) {
	cl, err := c.do(ctx, &Request{Op: OpLseek, Caller: callerOf(caller), Ino: ino, Handle: h, Offset: off, Whence: whence})
	if err != nil {
		return 0, err
	}
	return cl.resp.Offset, nil
}

func (c *Client) CopyFileRange(ctx context.Context, caller *fsapi.Caller, inIno fsapi.Ino, inH fsapi.HandleID, inOff int64, outIno fsapi.Ino, outH fsapi.HandleID, outOff int64, length uint64, flags uint32) (uint64, error) {
	cl, err := c.do(ctx, &Request{
		Op: OpCopyFileRange, Caller: callerOf(caller),
		Ino: inIno, Handle: inH, Offset: inOff,
		OutIno: outIno, OutHandle: outH, OutOffset: outOff,
		Length: length, Flags: flags,
	})
	if err != nil {
		return 0, err
	}
	return cl.resp.Count, nil
}

func (c *Client) OpenDir(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.HandleID, error) {
	return c.handle(ctx, &Request{Op: OpOpenDir, Caller: callerOf(caller), Ino: ino, Flags: flags})
}

// ReadDir returns at most maxEntries entries, and never more than
// MaxDirEntries; the caller continues from the cookie of the last entry. A
// negative maxEntries fails with EINVAL.
func (c *Client) ReadDir(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, cookie uint64, maxEntries int) ([]fsapi.DirEntry, error) {
	if maxEntries < 0 {
		return nil, &Error{Op: OpReadDir, Errno: syscall.EINVAL, Err: fmt.Errorf("max entries %d is negative", maxEntries)}
	}
	cl, err := c.do(ctx, &Request{Op: OpReadDir, Caller: callerOf(caller), Ino: ino, Handle: h, Cookie: cookie, Max: uint32(min(maxEntries, MaxDirEntries))})
	if err != nil {
		return nil, err
	}
	return cl.resp.Entries, nil
}

func (c *Client) ReleaseDir(ctx context.Context, ino fsapi.Ino, h fsapi.HandleID) error {
	return c.none(ctx, &Request{Op: OpReleaseDir, Ino: ino, Handle: h})
}

func (c *Client) FsyncDir(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID) error {
	return c.none(ctx, &Request{Op: OpFsyncDir, Caller: callerOf(caller), Ino: ino, Handle: h})
}

func (c *Client) StatFS(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino) (fsapi.StatFS, error) {
	cl, err := c.do(ctx, &Request{Op: OpStatFS, Caller: callerOf(caller), Ino: ino})
	if err != nil {
		return fsapi.StatFS{}, err
	}
	return cl.resp.StatFS, nil
}

func (c *Client) SyncFS(ctx context.Context, caller *fsapi.Caller) error {
	return c.none(ctx, &Request{Op: OpSyncFS, Caller: callerOf(caller)})
}

// GetXattr returns a copy of the value, which the caller may keep.
func (c *Client) GetXattr(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, name string) ([]byte, error) {
	cl, err := c.do(ctx, &Request{Op: OpGetXattr, Caller: callerOf(caller), Ino: ino, Name: name})
	if err != nil {
		return nil, err
	}
	defer cl.recycle()
	return append([]byte{}, cl.resp.Data...), nil
}

func (c *Client) SetXattr(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, name string, value []byte, flags uint32) error {
	return c.none(ctx, &Request{Op: OpSetXattr, Caller: callerOf(caller), Ino: ino, Name: name, Data: value, Flags: flags})
}

func (c *Client) ListXattr(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino) ([]string, error) {
	cl, err := c.do(ctx, &Request{Op: OpListXattr, Caller: callerOf(caller), Ino: ino})
	if err != nil {
		return nil, err
	}
	return cl.resp.Names, nil
}

func (c *Client) RemoveXattr(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, name string) error {
	return c.none(ctx, &Request{Op: OpRemoveXattr, Caller: callerOf(caller), Ino: ino, Name: name})
}

func (c *Client) GetLk(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, owner uint64, lk fsapi.Lock) (fsapi.Lock, error) {
	cl, err := c.do(ctx, &Request{Op: OpGetLk, Caller: callerOf(caller), Ino: ino, Handle: h, Owner: owner, Lock: lk})
	if err != nil {
		return fsapi.Lock{}, err
	}
	return cl.resp.Lock, nil
}

// SetLk with wait blocks until the daemon grants the lock or ctx ends; then
// it returns EINTR and the daemon stops waiting too.
func (c *Client) SetLk(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, owner uint64, lk fsapi.Lock, wait bool) error {
	return c.none(ctx, &Request{Op: OpSetLk, Caller: callerOf(caller), Ino: ino, Handle: h, Owner: owner, Lock: lk, Wait: wait})
}

func (c *Client) Flock(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, how uint32, wait bool) error {
	return c.none(ctx, &Request{Op: OpFlock, Caller: callerOf(caller), Ino: ino, Handle: h, How: how, Wait: wait})
}
