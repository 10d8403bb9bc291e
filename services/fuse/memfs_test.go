package fusefs

import (
	"context"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// memFS is a small in-memory fsapi.FS for testing the FUSE mapping. It
// does what the mapping tests need (files, directories, symlinks, xattrs),
// records the arguments of the calls the tests check, and does not check
// permissions. Locks are recorded, not enforced.
type memFS struct {
	mu      sync.Mutex
	inodes  map[fsapi.Ino]*memInode
	nextIno fsapi.Ino
	handles map[fsapi.HandleID]fsapi.Ino
	nextH   fsapi.HandleID

	// failNames maps a name to the error Lookup returns for it.
	failNames map[string]error
	// lockReply is what GetLk returns.
	lockReply fsapi.Lock

	calls []memCall
}

// memCall is one recorded call.
type memCall struct {
	op     string
	ino    fsapi.Ino
	caller fsapi.Caller
	name   string
	flags  uint32
	set    fsapi.SetAttrIn
	lock   fsapi.Lock
	owner  uint64
	wait   bool
	handle fsapi.HandleID
	size   int // bytes of a write
}

type memInode struct {
	attr     fsapi.Attr
	data     []byte
	target   string
	children map[string]fsapi.Ino
	cookies  map[string]uint64
	nextCk   uint64
	xattrs   map[string][]byte
}

func newMemFS() *memFS {
	now := time.Now().UnixNano()
	root := &memInode{
		attr:     fsapi.Attr{Ino: fsapi.RootIno, Mode: syscall.S_IFDIR | 0o777, Nlink: 2, Atime: now, Mtime: now, Ctime: now},
		children: map[string]fsapi.Ino{},
		cookies:  map[string]uint64{},
		nextCk:   3,
		xattrs:   map[string][]byte{},
	}
	return &memFS{
		inodes:    map[fsapi.Ino]*memInode{fsapi.RootIno: root},
		nextIno:   fsapi.RootIno + 1,
		handles:   map[fsapi.HandleID]fsapi.Ino{},
		nextH:     1,
		failNames: map[string]error{},
	}
}

func (m *memFS) record(c memCall) {
	m.calls = append(m.calls, c)
}

// lastCall returns the last recorded call of op.
func (m *memFS) lastCall(op string) (memCall, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.calls) - 1; i >= 0; i-- {
		if m.calls[i].op == op {
			return m.calls[i], true
		}
	}
	return memCall{}, false
}

func (m *memFS) callsOf(op string) []memCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []memCall
	for _, c := range m.calls {
		if c.op == op {
			out = append(out, c)
		}
	}
	return out
}

func (m *memFS) inode(ino fsapi.Ino) (*memInode, error) {
	n, ok := m.inodes[ino]
	if !ok {
		return nil, syscall.ENOENT
	}
	return n, nil
}

func (m *memFS) dir(ino fsapi.Ino) (*memInode, error) {
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	if n.children == nil {
		return nil, syscall.ENOTDIR
	}
	return n, nil
}

// add makes a new inode named name in parent.
func (m *memFS) add(c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (*memInode, error) {
	dir, err := m.dir(parent)
	if err != nil {
		return nil, err
	}
	if _, ok := dir.children[name]; ok {
		return nil, syscall.EEXIST
	}
	now := time.Now().UnixNano()
	n := &memInode{
		attr:   fsapi.Attr{Ino: m.nextIno, Mode: mode, Nlink: 1, UID: c.UID, GID: c.GID, Atime: now, Mtime: now, Ctime: now},
		xattrs: map[string][]byte{},
	}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.children = map[string]fsapi.Ino{}
		n.cookies = map[string]uint64{}
		n.nextCk = 3
		n.attr.Nlink = 2
		dir.attr.Nlink++
	}
	m.inodes[m.nextIno] = n
	m.nextIno++
	dir.children[name] = n.attr.Ino
	dir.cookies[name] = dir.nextCk
	dir.nextCk++
	dir.attr.Mtime, dir.attr.Ctime = now, now
	return n, nil
}

func (m *memFS) Lookup(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "lookup", ino: parent, caller: *c, name: name})
	if err, ok := m.failNames[name]; ok {
		return fsapi.Attr{}, err
	}
	dir, err := m.dir(parent)
	if err != nil {
		return fsapi.Attr{}, err
	}
	ino, ok := dir.children[name]
	if !ok {
		return fsapi.Attr{}, syscall.ENOENT
	}
	return m.inodes[ino].attr, nil
}

func (m *memFS) GetAttr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (fsapi.Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "getattr", ino: ino, caller: *c})
	n, err := m.inode(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

func (m *memFS) SetAttr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, in *fsapi.SetAttrIn) (fsapi.Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "setattr", ino: ino, caller: *c, set: *in})
	n, err := m.inode(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}

	if in.Valid&fsapi.SetMode != 0 {
		n.attr.Mode = n.attr.Mode&syscall.S_IFMT | in.Mode
	}
	if in.Valid&fsapi.SetUID != 0 {
		n.attr.UID = in.UID
	}
	if in.Valid&fsapi.SetGID != 0 {
		n.attr.GID = in.GID
	}
	if in.Valid&fsapi.SetSize != 0 {
		n.data = resize(n.data, int(in.Size))
		n.attr.Size = in.Size
	}

	now := time.Now().UnixNano()
	if in.Valid&fsapi.SetAtime != 0 {
		n.attr.Atime = in.Atime
	}
	if in.Valid&fsapi.SetAtimeNow != 0 {
		n.attr.Atime = now
	}
	if in.Valid&fsapi.SetMtime != 0 {
		n.attr.Mtime = in.Mtime
	}
	if in.Valid&fsapi.SetMtimeNow != 0 {
		n.attr.Mtime = now
	}
	n.attr.Ctime = now
	return n.attr, nil
}

func resize(b []byte, size int) []byte {
	if size <= len(b) {
		return b[:size]
	}
	return append(b, make([]byte, size-len(b))...)
}

func (m *memFS) Access(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, mask uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "access", ino: ino, caller: *c, flags: mask})
	_, err := m.inode(ino)
	return err
}

func (m *memFS) Mknod(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, rdev uint64) (fsapi.Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.add(c, parent, name, mode)
	if err != nil {
		return fsapi.Attr{}, err
	}
	n.attr.Rdev = rdev
	return n.attr, nil
}

func (m *memFS) Mkdir(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.add(c, parent, name, syscall.S_IFDIR|mode&0o7777)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

func (m *memFS) Create(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "create", ino: parent, caller: *c, name: name, flags: flags})
	n, err := m.add(c, parent, name, syscall.S_IFREG|mode&0o7777)
	if err != nil {
		return fsapi.Attr{}, 0, err
	}
	h := m.nextH
	m.nextH++
	m.handles[h] = n.attr.Ino
	return n.attr, h, nil
}

func (m *memFS) Symlink(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, target string) (fsapi.Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.add(c, parent, name, syscall.S_IFLNK|0o777)
	if err != nil {
		return fsapi.Attr{}, err
	}
	n.target = target
	n.attr.Size = uint64(len(target))
	return n.attr, nil
}

func (m *memFS) Link(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, newParent fsapi.Ino, newName string) (fsapi.Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}
	dir, err := m.dir(newParent)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if _, ok := dir.children[newName]; ok {
		return fsapi.Attr{}, syscall.EEXIST
	}
	dir.children[newName] = ino
	dir.cookies[newName] = dir.nextCk
	dir.nextCk++
	n.attr.Nlink++
	return n.attr, nil
}

func (m *memFS) remove(parent fsapi.Ino, name string, wantDir bool) error {
	dir, err := m.dir(parent)
	if err != nil {
		return err
	}
	ino, ok := dir.children[name]
	if !ok {
		return syscall.ENOENT
	}
	n := m.inodes[ino]
	isDir := n.children != nil
	switch {
	case wantDir && !isDir:
		return syscall.ENOTDIR
	case !wantDir && isDir:
		return syscall.EISDIR
	case isDir && len(n.children) > 0:
		return syscall.ENOTEMPTY
	}
	delete(dir.children, name)
	delete(dir.cookies, name)
	if isDir {
		dir.attr.Nlink--
		n.attr.Nlink = 0
	} else {
		n.attr.Nlink--
	}
	now := time.Now().UnixNano()
	dir.attr.Mtime, dir.attr.Ctime = now, now
	return nil
}

func (m *memFS) Unlink(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.remove(parent, name, false)
}

func (m *memFS) Rmdir(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.remove(parent, name, true)
}

// Rename moves or swaps plain entries. It does not adjust directory link
// counts, which the mapping tests do not look at.
func (m *memFS) Rename(ctx context.Context, c *fsapi.Caller, oldParent fsapi.Ino, oldName string, newParent fsapi.Ino, newName string, flags uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "rename", ino: oldParent, caller: *c, name: oldName + ">" + newName, flags: flags})

	from, err := m.dir(oldParent)
	if err != nil {
		return err
	}
	to, err := m.dir(newParent)
	if err != nil {
		return err
	}
	src, ok := from.children[oldName]
	if !ok {
		return syscall.ENOENT
	}

	dst, exists := to.children[newName]
	switch {
	case flags&fsapi.RenameNoReplace != 0 && exists:
		return syscall.EEXIST
	case flags&fsapi.RenameExchange != 0 && !exists:
		return syscall.ENOENT
	case flags&fsapi.RenameExchange != 0:
		from.children[oldName], to.children[newName] = dst, src
		return nil
	}

	delete(from.children, oldName)
	delete(from.cookies, oldName)
	to.children[newName] = src
	to.cookies[newName] = to.nextCk
	to.nextCk++
	return nil
}

func (m *memFS) Readlink(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return "", err
	}
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return "", syscall.EINVAL
	}
	return n.target, nil
}

func (m *memFS) Open(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.HandleID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "open", ino: ino, caller: *c, flags: flags})
	if _, err := m.inode(ino); err != nil {
		return 0, err
	}
	h := m.nextH
	m.nextH++
	m.handles[h] = ino
	return h, nil
}

func (m *memFS) Read(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, dest []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return 0, err
	}
	if off >= int64(len(n.data)) {
		return 0, nil
	}
	return copy(dest, n.data[off:]), nil
}

func (m *memFS) Write(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, data []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "write", ino: ino, caller: *c, handle: h, size: len(data)})
	n, err := m.inode(ino)
	if err != nil {
		return 0, err
	}
	if end := int(off) + len(data); end > len(n.data) {
		n.data = resize(n.data, end)
		n.attr.Size = uint64(end)
	}
	copy(n.data[off:], data)
	n.attr.Mtime = time.Now().UnixNano()
	return len(data), nil
}

func (m *memFS) Flush(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, lockOwner uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "flush", ino: ino, caller: *c, owner: lockOwner, handle: h})
	return nil
}

func (m *memFS) Release(ctx context.Context, ino fsapi.Ino, h fsapi.HandleID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "release", ino: ino, handle: h})
	delete(m.handles, h)
	return nil
}

func (m *memFS) Fsync(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, datasync bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "fsync", ino: ino, caller: *c, wait: datasync, handle: h})
	return nil
}

func (m *memFS) Fallocate(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, mode uint32, off, length int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "fallocate", ino: ino, caller: *c, flags: mode, lock: fsapi.Lock{Start: uint64(off), End: uint64(length)}})
	return nil
}

func (m *memFS) Lseek(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, whence uint32) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "lseek", ino: ino, caller: *c, flags: whence})
	return off + 1, nil
}

func (m *memFS) CopyFileRange(ctx context.Context, c *fsapi.Caller, inIno fsapi.Ino, inH fsapi.HandleID, inOff int64, outIno fsapi.Ino, outH fsapi.HandleID, outOff int64, length uint64, flags uint32) (uint64, error) {
	return 0, syscall.ENOSYS
}

func (m *memFS) OpenDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.HandleID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.dir(ino); err != nil {
		return 0, err
	}
	h := m.nextH
	m.nextH++
	m.handles[h] = ino
	return h, nil
}

func (m *memFS) ReadDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, cookie uint64, max int) ([]fsapi.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "readdir", ino: ino, lock: fsapi.Lock{Start: cookie, End: uint64(max)}})
	dir, err := m.dir(ino)
	if err != nil {
		return nil, err
	}
	all := []fsapi.DirEntry{
		{Name: ".", Ino: ino, Mode: syscall.S_IFDIR, Cookie: 1},
		{Name: "..", Ino: fsapi.RootIno, Mode: syscall.S_IFDIR, Cookie: 2},
	}
	for name, child := range dir.children {
		all = append(all, fsapi.DirEntry{Name: name, Ino: child, Mode: m.inodes[child].attr.Mode & syscall.S_IFMT, Cookie: dir.cookies[name]})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Cookie < all[j].Cookie })
	i, _ := slices.BinarySearchFunc(all, cookie+1, func(e fsapi.DirEntry, c uint64) int {
		switch {
		case e.Cookie < c:
			return -1
		case e.Cookie > c:
			return 1
		}
		return 0
	})
	all = all[i:]
	if len(all) > max {
		all = all[:max]
	}
	return all, nil
}

func (m *memFS) ReleaseDir(ctx context.Context, ino fsapi.Ino, h fsapi.HandleID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.handles, h)
	return nil
}

func (m *memFS) FsyncDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID) error {
	return nil
}

func (m *memFS) StatFS(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (fsapi.StatFS, error) {
	return fsapi.StatFS{Blocks: 1000, Bfree: 500, Bavail: 400, Files: 100, Ffree: 50, Bsize: 4096, NameLen: 255, Frsize: 4096}, nil
}

func (m *memFS) SyncFS(ctx context.Context, c *fsapi.Caller) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "syncfs", caller: *c})
	return nil
}

func (m *memFS) GetXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "getxattr", ino: ino, caller: *c, name: name})
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	v, ok := n.xattrs[name]
	if !ok {
		return nil, syscall.ENODATA
	}
	return v, nil
}

func (m *memFS) SetXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string, value []byte, flags uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "setxattr", ino: ino, caller: *c, name: name, flags: flags})
	n, err := m.inode(ino)
	if err != nil {
		return err
	}
	_, exists := n.xattrs[name]
	switch {
	case flags&fsapi.XattrCreate != 0 && exists:
		return syscall.EEXIST
	case flags&fsapi.XattrReplace != 0 && !exists:
		return syscall.ENODATA
	}
	n.xattrs[name] = value
	return nil
}

func (m *memFS) ListXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(n.xattrs))
	for name := range n.xattrs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

func (m *memFS) RemoveXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "removexattr", ino: ino, caller: *c, name: name})
	n, err := m.inode(ino)
	if err != nil {
		return err
	}
	if _, ok := n.xattrs[name]; !ok {
		return syscall.ENODATA
	}
	delete(n.xattrs, name)
	return nil
}

func (m *memFS) GetLk(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, owner uint64, lk fsapi.Lock) (fsapi.Lock, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "getlk", ino: ino, caller: *c, owner: owner, lock: lk, handle: h})
	return m.lockReply, nil
}

func (m *memFS) SetLk(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, owner uint64, lk fsapi.Lock, wait bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "setlk", ino: ino, caller: *c, owner: owner, lock: lk, wait: wait, handle: h})
	return nil
}

func (m *memFS) Flock(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, how uint32, wait bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(memCall{op: "flock", ino: ino, caller: *c, flags: how, wait: wait, handle: h})
	return nil
}

// setSizeBehindKernel changes a file's size the way another client of the
// daemon would, without the kernel seeing a request.
func (m *memFS) setSizeBehindKernel(parent fsapi.Ino, name string, size uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.inodes[m.inodes[parent].children[name]]
	n.data = resize(n.data, int(size))
	n.attr.Size = size
}

// removeBehindKernel removes a name without the kernel seeing a request.
func (m *memFS) removeBehindKernel(parent fsapi.Ino, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.remove(parent, name, false); err != nil {
		panic(err)
	}
}

var _ fsapi.FS = (*memFS)(nil)
