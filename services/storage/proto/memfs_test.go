package proto

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// memFS is a small in-memory fsapi.FS for the transport tests. It keeps
// enough POSIX behaviour to produce the usual errno values, records the
// arguments of every call as a Request, and can hold calls of one op until
// a test lets them go. It is not a model of the storage engine.
type memFS struct {
	mu         sync.Mutex
	nextIno    fsapi.Ino
	nextHandle fsapi.HandleID
	nextCookie uint64
	clock      int64 // logical time, so that two memFS given the same calls agree
	inodes     map[fsapi.Ino]*memInode
	handles    map[fsapi.HandleID]memHandle

	calls      []Request        // arguments of every call, in order, unless unrecorded
	unrecorded bool             // set by benchmarks, which make too many calls to keep
	released   []fsapi.HandleID // handles passed to Release and ReleaseDir
	gates      map[Op]chan struct{}

	locks       []memLock
	flocks      map[fsapi.HandleID]memFlock
	lockChanged chan struct{} // closed and replaced whenever a lock goes away
	interrupted int           // SetLk and Flock waits that ended with ctx
}

type memInode struct {
	attr    fsapi.Attr
	data    []byte
	target  string
	entries map[string]memEntry
	xattrs  map[string][]byte
}

type memEntry struct {
	ino    fsapi.Ino
	cookie uint64
}

type memHandle struct {
	ino fsapi.Ino
	dir bool
}

type memLock struct {
	ino   fsapi.Ino
	owner uint64
	lk    fsapi.Lock
}

type memFlock struct {
	ino fsapi.Ino
	how uint32
}

func newMemFS() *memFS {
	m := &memFS{
		nextIno:     fsapi.RootIno + 1,
		nextHandle:  1,
		nextCookie:  1,
		inodes:      make(map[fsapi.Ino]*memInode),
		handles:     make(map[fsapi.HandleID]memHandle),
		gates:       make(map[Op]chan struct{}),
		flocks:      make(map[fsapi.HandleID]memFlock),
		lockChanged: make(chan struct{}),
	}
	m.inodes[fsapi.RootIno] = &memInode{
		attr:    fsapi.Attr{Ino: fsapi.RootIno, Mode: syscall.S_IFDIR | 0o777, Nlink: 2},
		entries: make(map[string]memEntry),
	}
	return m
}

// hold makes calls of op block, ignoring their context, until the returned
// function runs.
func (m *memFS) hold(op Op) (letGo func()) {
	ch := make(chan struct{})
	m.mu.Lock()
	m.gates[op] = ch
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.gates, op)
			m.mu.Unlock()
			close(ch)
		})
	}
}

// enter records a call and waits at the gate of its op, if any. The caller
// must not hold m.mu.
func (m *memFS) enter(r Request) {
	if !m.unrecorded {
		r.Data = bytes.Clone(r.Data)
		r.Caller.Groups = slices.Clone(r.Caller.Groups)
	}
	m.mu.Lock()
	if !m.unrecorded {
		m.calls = append(m.calls, r)
	}
	gate := m.gates[r.Op]
	m.mu.Unlock()
	if gate != nil {
		<-gate
	}
}

// callsOf returns the recorded arguments of every call of op.
func (m *memFS) callsOf(op Op) []Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Request
	for _, r := range m.calls {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

func (m *memFS) allCalls() []Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

func (m *memFS) releasedHandles() []fsapi.HandleID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.released)
}

func (m *memFS) interruptedWaits() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.interrupted
}

func (m *memFS) tick() int64 {
	m.clock += 1_000_000_007
	return m.clock
}

func (m *memFS) inode(ino fsapi.Ino) (*memInode, error) {
	n := m.inodes[ino]
	if n == nil {
		return nil, syscall.ENOENT
	}
	return n, nil
}

func (m *memFS) dir(ino fsapi.Ino) (*memInode, error) {
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	if n.entries == nil {
		return nil, syscall.ENOTDIR
	}
	return n, nil
}

func (m *memFS) child(parent fsapi.Ino, name string) (*memInode, *memInode, error) {
	d, err := m.dir(parent)
	if err != nil {
		return nil, nil, err
	}
	e, ok := d.entries[name]
	if !ok {
		return d, nil, syscall.ENOENT
	}
	return d, m.inodes[e.ino], nil
}

func (m *memFS) handle(h fsapi.HandleID, ino fsapi.Ino, dir bool) error {
	mh, ok := m.handles[h]
	if !ok || mh.ino != ino || mh.dir != dir {
		return syscall.EBADF
	}
	return nil
}

func (m *memFS) addEntry(d *memInode, name string, ino fsapi.Ino) {
	d.entries[name] = memEntry{ino: ino, cookie: m.nextCookie}
	m.nextCookie++
	d.attr.Mtime = m.tick()
}

// newInode creates an inode of mode in parent under name.
func (m *memFS) newInode(c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (*memInode, error) {
	if name == "bad-error" {
		return nil, errors.New("an error without an errno")
	}
	d, err := m.dir(parent)
	if err != nil {
		return nil, err
	}
	if _, exists := d.entries[name]; exists {
		return nil, syscall.EEXIST
	}
	now := m.tick()
	n := &memInode{attr: fsapi.Attr{
		Ino: m.nextIno, Mode: mode, Nlink: 1, UID: c.UID, GID: c.GID,
		Atime: now, Mtime: now, Ctime: now,
	}}
	m.nextIno++
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.entries = make(map[string]memEntry)
		n.attr.Nlink = 2
	}
	m.inodes[n.attr.Ino] = n
	m.addEntry(d, name, n.attr.Ino)
	return n, nil
}

func (m *memFS) Lookup(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	m.enter(Request{Op: OpLookup, Caller: *c, Ino: parent, Name: name})
	m.mu.Lock()
	defer m.mu.Unlock()
	if name == "bad-error" {
		return fsapi.Attr{}, errors.New("an error without an errno")
	}
	_, n, err := m.child(parent, name)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

func (m *memFS) GetAttr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (fsapi.Attr, error) {
	m.enter(Request{Op: OpGetAttr, Caller: *c, Ino: ino})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

func (m *memFS) SetAttr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, in *fsapi.SetAttrIn) (fsapi.Attr, error) {
	m.enter(Request{Op: OpSetAttr, Caller: *c, Ino: ino, SetAttr: *in})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}

	if in.Valid&fsapi.SetMode != 0 {
		n.attr.Mode = n.attr.Mode&syscall.S_IFMT | in.Mode&0o7777
	}
	if in.Valid&fsapi.SetUID != 0 {
		n.attr.UID = in.UID
	}
	if in.Valid&fsapi.SetGID != 0 {
		n.attr.GID = in.GID
	}
	if in.Valid&fsapi.SetSize != 0 {
		n.resize(int(in.Size))
	}

	if in.Valid&fsapi.SetAtime != 0 {
		n.attr.Atime = in.Atime
	}
	if in.Valid&fsapi.SetMtime != 0 {
		n.attr.Mtime = in.Mtime
	}
	if in.Valid&fsapi.SetCtime != 0 {
		n.attr.Ctime = in.Ctime
	} else {
		n.attr.Ctime = m.tick()
	}
	return n.attr, nil
}

func (n *memInode) resize(size int) {
	if size < len(n.data) {
		n.data = n.data[:size]
	} else {
		n.data = append(n.data, make([]byte, size-len(n.data))...)
	}
	n.attr.Size = uint64(size)
	n.attr.Blocks = (uint64(size) + 511) / 512
}

func (m *memFS) Access(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, mask uint32) error {
	m.enter(Request{Op: OpAccess, Caller: *c, Ino: ino, Mask: mask})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return err
	}
	perm := n.attr.Mode & 7
	switch {
	case c.UID == n.attr.UID:
		perm = n.attr.Mode >> 6 & 7
	case c.InGroup(n.attr.GID):
		perm = n.attr.Mode >> 3 & 7
	}
	if mask&^perm != 0 {
		return syscall.EACCES
	}
	return nil
}

func (m *memFS) Mknod(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, rdev uint64) (fsapi.Attr, error) {
	m.enter(Request{Op: OpMknod, Caller: *c, Ino: parent, Name: name, Mode: mode, Rdev: rdev})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.newInode(c, parent, name, mode)
	if err != nil {
		return fsapi.Attr{}, err
	}
	n.attr.Rdev = rdev
	return n.attr, nil
}

func (m *memFS) Mkdir(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, error) {
	m.enter(Request{Op: OpMkdir, Caller: *c, Ino: parent, Name: name, Mode: mode})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.newInode(c, parent, name, syscall.S_IFDIR|mode&0o7777)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

func (m *memFS) Create(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, error) {
	m.enter(Request{Op: OpCreate, Caller: *c, Ino: parent, Name: name, Mode: mode, Flags: flags})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.newInode(c, parent, name, syscall.S_IFREG|mode&0o7777)
	if err != nil {
		return fsapi.Attr{}, 0, err
	}
	h := m.nextHandle
	m.nextHandle++
	m.handles[h] = memHandle{ino: n.attr.Ino}
	return n.attr, h, nil
}

func (m *memFS) Symlink(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, target string) (fsapi.Attr, error) {
	m.enter(Request{Op: OpSymlink, Caller: *c, Ino: parent, Name: name, Target: target})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.newInode(c, parent, name, syscall.S_IFLNK|0o777)
	if err != nil {
		return fsapi.Attr{}, err
	}
	n.target = target
	n.attr.Size = uint64(len(target))
	return n.attr, nil
}

func (m *memFS) Link(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, newParent fsapi.Ino, newName string) (fsapi.Attr, error) {
	m.enter(Request{Op: OpLink, Caller: *c, Ino: ino, NewParent: newParent, NewName: newName})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if n.entries != nil {
		return fsapi.Attr{}, syscall.EPERM
	}
	d, err := m.dir(newParent)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if _, exists := d.entries[newName]; exists {
		return fsapi.Attr{}, syscall.EEXIST
	}
	m.addEntry(d, newName, ino)
	n.attr.Nlink++
	n.attr.Ctime = m.tick()
	return n.attr, nil
}

func (m *memFS) Unlink(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) error {
	m.enter(Request{Op: OpUnlink, Caller: *c, Ino: parent, Name: name})
	m.mu.Lock()
	defer m.mu.Unlock()
	d, n, err := m.child(parent, name)
	if err != nil {
		return err
	}
	if n.entries != nil {
		return syscall.EISDIR
	}
	delete(d.entries, name)
	n.attr.Nlink--
	return nil
}

func (m *memFS) Rmdir(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) error {
	m.enter(Request{Op: OpRmdir, Caller: *c, Ino: parent, Name: name})
	m.mu.Lock()
	defer m.mu.Unlock()
	d, n, err := m.child(parent, name)
	if err != nil {
		return err
	}
	if n.entries == nil {
		return syscall.ENOTDIR
	}
	if len(n.entries) > 0 {
		return syscall.ENOTEMPTY
	}
	delete(d.entries, name)
	delete(m.inodes, n.attr.Ino)
	return nil
}

func (m *memFS) Rename(ctx context.Context, c *fsapi.Caller, oldParent fsapi.Ino, oldName string, newParent fsapi.Ino, newName string, flags uint32) error {
	m.enter(Request{Op: OpRename, Caller: *c, Ino: oldParent, Name: oldName, NewParent: newParent, NewName: newName, Flags: flags})
	m.mu.Lock()
	defer m.mu.Unlock()
	od, n, err := m.child(oldParent, oldName)
	if err != nil {
		return err
	}
	nd, err := m.dir(newParent)
	if err != nil {
		return err
	}
	existing, exists := nd.entries[newName]
	switch {
	case flags&fsapi.RenameExchange != 0:
		if !exists {
			return syscall.ENOENT
		}
		od.entries[oldName], nd.entries[newName] = existing, od.entries[oldName]
		return nil
	case exists && flags&fsapi.RenameNoReplace != 0:
		return syscall.EEXIST
	case exists:
		if target := m.inodes[existing.ino]; target.entries != nil && len(target.entries) > 0 {
			return syscall.ENOTEMPTY
		}
	}
	delete(od.entries, oldName)
	m.addEntry(nd, newName, n.attr.Ino)
	return nil
}

func (m *memFS) Readlink(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (string, error) {
	m.enter(Request{Op: OpReadlink, Caller: *c, Ino: ino})
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
	m.enter(Request{Op: OpOpen, Caller: *c, Ino: ino, Flags: flags})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return 0, err
	}
	if n.entries != nil {
		return 0, syscall.EISDIR
	}
	h := m.nextHandle
	m.nextHandle++
	m.handles[h] = memHandle{ino: ino}
	return h, nil
}

func (m *memFS) Read(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, dest []byte) (int, error) {
	m.enter(Request{Op: OpRead, Caller: *c, Ino: ino, Handle: h, Offset: off, Size: uint32(len(dest))})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return 0, err
	}
	n := m.inodes[ino]
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= int64(len(n.data)) {
		return 0, nil
	}
	return copy(dest, n.data[off:]), nil
}

func (m *memFS) Write(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, data []byte) (int, error) {
	m.enter(Request{Op: OpWrite, Caller: *c, Ino: ino, Handle: h, Offset: off, Data: data})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	n := m.inodes[ino]
	if end := int(off) + len(data); end > len(n.data) {
		n.resize(end)
	}
	copy(n.data[off:], data)
	n.attr.Mtime = m.tick()
	return len(data), nil
}

func (m *memFS) Flush(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, lockOwner uint64) error {
	m.enter(Request{Op: OpFlush, Caller: *c, Ino: ino, Handle: h, Owner: lockOwner})
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.handle(h, ino, false)
}

func (m *memFS) Release(ctx context.Context, ino fsapi.Ino, h fsapi.HandleID) error {
	m.enter(Request{Op: OpRelease, Ino: ino, Handle: h})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return err
	}
	delete(m.handles, h)
	if _, held := m.flocks[h]; held {
		delete(m.flocks, h)
		m.signalLocks()
	}
	m.released = append(m.released, h)
	return nil
}

func (m *memFS) Fsync(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, datasync bool) error {
	m.enter(Request{Op: OpFsync, Caller: *c, Ino: ino, Handle: h, Datasync: datasync})
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.handle(h, ino, false)
}

func (m *memFS) Fallocate(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, mode uint32, off, length int64) error {
	m.enter(Request{Op: OpFallocate, Caller: *c, Ino: ino, Handle: h, Mode: mode, Offset: off, Length: uint64(length)})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return err
	}
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	if off < 0 || length <= 0 {
		return syscall.EINVAL
	}
	n := m.inodes[ino]
	if end := int(off + length); end > len(n.data) {
		n.resize(end)
	}
	return nil
}

// Whence values of lseek(2) beyond SEEK_SET, SEEK_CUR and SEEK_END.
const (
	seekData = 3
	seekHole = 4
)

func (m *memFS) Lseek(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, whence uint32) (int64, error) {
	m.enter(Request{Op: OpLseek, Caller: *c, Ino: ino, Handle: h, Offset: off, Whence: whence})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return 0, err
	}
	size := int64(len(m.inodes[ino].data))
	switch whence {
	case seekData:
		if off >= size {
			return 0, syscall.ENXIO
		}
		return off, nil
	case seekHole:
		if off >= size {
			return 0, syscall.ENXIO
		}
		return size, nil
	}
	return 0, syscall.EINVAL
}

func (m *memFS) CopyFileRange(ctx context.Context, c *fsapi.Caller, inIno fsapi.Ino, inH fsapi.HandleID, inOff int64, outIno fsapi.Ino, outH fsapi.HandleID, outOff int64, length uint64, flags uint32) (uint64, error) {
	m.enter(Request{Op: OpCopyFileRange, Caller: *c, Ino: inIno, Handle: inH, Offset: inOff, OutIno: outIno, OutHandle: outH, OutOffset: outOff, Length: length, Flags: flags})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(inH, inIno, false); err != nil {
		return 0, err
	}
	if err := m.handle(outH, outIno, false); err != nil {
		return 0, err
	}
	if flags != 0 {
		return 0, syscall.EINVAL
	}
	src, dst := m.inodes[inIno], m.inodes[outIno]
	if inOff >= int64(len(src.data)) {
		return 0, nil
	}
	chunk := src.data[inOff:min(int64(len(src.data)), inOff+int64(length))]
	if end := int(outOff) + len(chunk); end > len(dst.data) {
		dst.resize(end)
	}
	copy(dst.data[outOff:], chunk)
	return uint64(len(chunk)), nil
}

func (m *memFS) OpenDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.HandleID, error) {
	m.enter(Request{Op: OpOpenDir, Caller: *c, Ino: ino, Flags: flags})
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.dir(ino); err != nil {
		return 0, err
	}
	h := m.nextHandle
	m.nextHandle++
	m.handles[h] = memHandle{ino: ino, dir: true}
	return h, nil
}

func (m *memFS) ReadDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, cookie uint64, maxEntries int) ([]fsapi.DirEntry, error) {
	m.enter(Request{Op: OpReadDir, Caller: *c, Ino: ino, Handle: h, Cookie: cookie, Max: uint32(maxEntries)})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, true); err != nil {
		return nil, err
	}
	var out []fsapi.DirEntry
	for name, e := range m.inodes[ino].entries {
		if e.cookie > cookie {
			mode := m.inodes[e.ino].attr.Mode & syscall.S_IFMT
			out = append(out, fsapi.DirEntry{Name: name, Ino: e.ino, Mode: mode, Cookie: e.cookie})
		}
	}
	slices.SortFunc(out, func(a, b fsapi.DirEntry) int { return cmp.Compare(a.Cookie, b.Cookie) })
	if len(out) > maxEntries {
		out = out[:maxEntries]
	}
	return out, nil
}

func (m *memFS) ReleaseDir(ctx context.Context, ino fsapi.Ino, h fsapi.HandleID) error {
	m.enter(Request{Op: OpReleaseDir, Ino: ino, Handle: h})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, true); err != nil {
		return err
	}
	delete(m.handles, h)
	m.released = append(m.released, h)
	return nil
}

func (m *memFS) FsyncDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID) error {
	m.enter(Request{Op: OpFsyncDir, Caller: *c, Ino: ino, Handle: h})
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.handle(h, ino, true)
}

func (m *memFS) StatFS(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (fsapi.StatFS, error) {
	m.enter(Request{Op: OpStatFS, Caller: *c, Ino: ino})
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.inode(ino); err != nil {
		return fsapi.StatFS{}, err
	}
	files := uint64(len(m.inodes))
	return fsapi.StatFS{Blocks: 1 << 30, Bfree: 1 << 29, Bavail: 1<<29 - 7, Files: files + 1000, Ffree: 1000,
		Bsize: 4096, NameLen: fsapi.MaxNameLen, Frsize: 512}, nil
}

func (m *memFS) SyncFS(ctx context.Context, c *fsapi.Caller) error {
	m.enter(Request{Op: OpSyncFS, Caller: *c})
	return nil
}

func (m *memFS) GetXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string) ([]byte, error) {
	m.enter(Request{Op: OpGetXattr, Caller: *c, Ino: ino, Name: name})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	v, ok := n.xattrs[name]
	if !ok {
		return nil, syscall.ENODATA
	}
	return bytes.Clone(v), nil
}

func (m *memFS) SetXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string, value []byte, flags uint32) error {
	m.enter(Request{Op: OpSetXattr, Caller: *c, Ino: ino, Name: name, Data: value, Flags: flags})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return err
	}
	_, exists := n.xattrs[name]
	if exists && flags&fsapi.XattrCreate != 0 {
		return syscall.EEXIST
	}
	if !exists && flags&fsapi.XattrReplace != 0 {
		return syscall.ENODATA
	}
	if n.xattrs == nil {
		n.xattrs = make(map[string][]byte)
	}
	n.xattrs[name] = bytes.Clone(value)
	return nil
}

func (m *memFS) ListXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) ([]string, error) {
	m.enter(Request{Op: OpListXattr, Caller: *c, Ino: ino})
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(n.xattrs)), nil
}

func (m *memFS) RemoveXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string) error {
	m.enter(Request{Op: OpRemoveXattr, Caller: *c, Ino: ino, Name: name})
	m.mu.Lock()
	defer m.mu.Unlock()
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

// conflict returns the first lock of another owner on ino that overlaps lk
// where either is a write lock.
func (m *memFS) conflict(ino fsapi.Ino, owner uint64, lk fsapi.Lock) (fsapi.Lock, bool) {
	for _, l := range m.locks {
		if l.ino != ino || l.owner == owner || l.lk.End < lk.Start || lk.End < l.lk.Start {
			continue
		}
		if l.lk.Type == syscall.F_WRLCK || lk.Type == syscall.F_WRLCK {
			return l.lk, true
		}
	}
	return fsapi.Lock{}, false
}

// signalLocks wakes the waiters of SetLk and Flock. The caller holds m.mu.
func (m *memFS) signalLocks() {
	close(m.lockChanged)
	m.lockChanged = make(chan struct{})
}

// waitLocks waits, without m.mu, until a lock goes away or ctx ends. It
// returns with m.mu held.
func (m *memFS) waitLocks(ctx context.Context) error {
	changed := m.lockChanged
	m.mu.Unlock()
	select {
	case <-changed:
		m.mu.Lock()
		return nil
	case <-ctx.Done():
		m.mu.Lock()
		m.interrupted++
		return syscall.EINTR
	}
}

func (m *memFS) GetLk(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, owner uint64, lk fsapi.Lock) (fsapi.Lock, error) {
	m.enter(Request{Op: OpGetLk, Caller: *c, Ino: ino, Handle: h, Owner: owner, Lock: lk})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return fsapi.Lock{}, err
	}
	if l, ok := m.conflict(ino, owner, lk); ok {
		return l, nil
	}
	lk.Type = syscall.F_UNLCK
	return lk, nil
}

func (m *memFS) SetLk(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, owner uint64, lk fsapi.Lock, wait bool) error {
	m.enter(Request{Op: OpSetLk, Caller: *c, Ino: ino, Handle: h, Owner: owner, Lock: lk, Wait: wait})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return err
	}
	if lk.Type == syscall.F_UNLCK {
		// Drops every lock of owner that overlaps the range, whole; enough
		// for these tests.
		kept := m.locks[:0]
		for _, l := range m.locks {
			if l.ino == ino && l.owner == owner && l.lk.Start <= lk.End && lk.Start <= l.lk.End {
				continue
			}
			kept = append(kept, l)
		}
		m.locks = kept
		m.signalLocks()
		return nil
	}
	for {
		if _, ok := m.conflict(ino, owner, lk); !ok {
			break
		}
		if !wait {
			return syscall.EAGAIN
		}
		if err := m.waitLocks(ctx); err != nil {
			return err
		}
	}
	lk.PID = c.PID
	m.locks = append(m.locks, memLock{ino: ino, owner: owner, lk: lk})
	return nil
}

func (m *memFS) Flock(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, how uint32, wait bool) error {
	m.enter(Request{Op: OpFlock, Caller: *c, Ino: ino, Handle: h, How: how, Wait: wait})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.handle(h, ino, false); err != nil {
		return err
	}
	if how == syscall.LOCK_UN {
		delete(m.flocks, h)
		m.signalLocks()
		return nil
	}
	for {
		busy := false
		for other, f := range m.flocks {
			if other != h && f.ino == ino && (f.how == syscall.LOCK_EX || how == syscall.LOCK_EX) {
				busy = true
			}
		}
		if !busy {
			break
		}
		if !wait {
			return syscall.EWOULDBLOCK
		}
		if err := m.waitLocks(ctx); err != nil {
			return err
		}
	}
	m.flocks[h] = memFlock{ino: ino, how: how}
	return nil
}

var _ fsapi.FS = (*memFS)(nil)
