package fsys

import (
	"context"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Whence values of lseek(2) on Linux. The syscall package lacks SEEK_DATA
// and SEEK_HOLE.
const (
	seekSet  = 0
	seekCur  = 1
	seekEnd  = 2
	seekData = 3
	seekHole = 4
)

// Open opens ino with the open(2) flags. O_TRUNC on a regular file
// journals a truncation to size 0, and O_APPEND makes every Write of the
// handle go to the end of the file.
func (e *Engine) Open(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.HandleID, error) {
	_, h, err := e.OpenAttr(ctx, c, ino, flags)
	return h, err
}

// OpenAttr opens ino as Open does and returns its attributes after the
// open, both under one hold of the engine's lock (fsapi.AttrOpener).
func (e *Engine) OpenAttr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.Attr, fsapi.HandleID, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.node(ino)
	if err != nil {
		return fsapi.Attr{}, 0, err
	}
	if err := e.openChecks(c, n, flags); err != nil {
		return fsapi.Attr{}, 0, err
	}
	if flags&syscall.O_TRUNC != 0 && n.isRegular() {
		if err := e.truncateOnOpen(ctx, c, n); err != nil {
			return fsapi.Attr{}, 0, err
		}
	}
	return n.attr, e.openHandle(n, flags, false), nil
}

// Create creates a regular file and opens it with flags. When name exists
// already, O_EXCL returns EEXIST and otherwise the existing file is opened
// as Open would, since another client may have created it after the
// kernel's lookup. The creator may open the new file with any access mode,
// even one that its permission bits deny, as open(2) with O_CREAT allows.
func (e *Engine) Create(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, error) {
	attr, h, _, err := e.CreateAttrs(ctx, c, parent, name, mode, flags)
	return attr, h, err
}

// CreateAttrs is Create that also returns the attributes of parent after
// the change (fsapi.DirReporter).
func (e *Engine) CreateAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, 0, fsapi.Attr{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	attr, h, err := e.create(ctx, c, parent, name, mode, flags)
	if err != nil {
		return fsapi.Attr{}, 0, fsapi.Attr{}, err
	}
	return attr, h, e.dirAttr(parent), nil
}

// create serves Create. e.mu is held.
func (e *Engine) create(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, error) {
	// execve(2) never creates, so an existing file that Create opens is
	// opened for reading, and needs read permission.
	flags &^= fsapi.OpenForExec
	if fileType := mode & syscall.S_IFMT; fileType != 0 && fileType != syscall.S_IFREG {
		return fsapi.Attr{}, 0, syscall.EINVAL
	}
	if flags&syscall.O_DIRECTORY != 0 || flags&syscall.O_ACCMODE == syscall.O_ACCMODE {
		return fsapi.Attr{}, 0, syscall.EINVAL
	}
	dir, err := e.dirNode(parent)
	if err != nil {
		return fsapi.Attr{}, 0, err
	}
	if err := checkName(name); err != nil {
		return fsapi.Attr{}, 0, err
	}
	if d := dir.entries[name]; d != nil && permitted(c, &dir.attr, mayExec) {
		if flags&syscall.O_EXCL != 0 {
			return fsapi.Attr{}, 0, syscall.EEXIST
		}
		n, err := e.node(d.ino)
		if err != nil {
			return fsapi.Attr{}, 0, err
		}
		if err := e.openChecks(c, n, flags); err != nil {
			return fsapi.Attr{}, 0, err
		}
		if flags&syscall.O_TRUNC != 0 && n.isRegular() {
			if err := e.truncateOnOpen(ctx, c, n); err != nil {
				return fsapi.Attr{}, 0, err
			}
		}
		return n.attr, e.openHandle(n, flags, false), nil
	}

	n, err := e.createNode(ctx, c, OpCreate, parent, name, syscall.S_IFREG|mode&0o7777, 0, "")
	if err != nil {
		return fsapi.Attr{}, 0, err
	}
	return n.attr, e.openHandle(n, flags, false), nil
}

// openChecks applies the file-type and permission rules of open(2).
func (e *Engine) openChecks(c *fsapi.Caller, n *inode, flags uint32) error {
	accessMode := flags & syscall.O_ACCMODE
	var mask uint32
	switch accessMode {
	case syscall.O_RDONLY:
		mask = mayRead
		if flags&fsapi.OpenForExec != 0 {
			// execve(2) needs execute permission and no read permission.
			mask = mayExec
		}
	case syscall.O_WRONLY:
		mask = mayWrite
	case syscall.O_RDWR:
		mask = mayRead | mayWrite
	default:
		return syscall.EINVAL
	}
	if flags&syscall.O_TRUNC != 0 {
		mask |= mayWrite
	}
	switch {
	case flags&syscall.O_DIRECTORY != 0 && !n.isDir():
		return syscall.ENOTDIR
	case n.isDir() && mask&mayWrite != 0:
		return syscall.EISDIR
	case n.isSymlink():
		// The kernel follows symlinks itself, so only O_NOFOLLOW gets here.
		return syscall.ELOOP
	}
	return checkAccess(c, n, mask)
}

// truncateOnOpen journals the truncation of O_TRUNC. Like Linux it sets the
// mtime and ctime even when the file is already empty.
func (e *Engine) truncateOnOpen(ctx context.Context, c *fsapi.Caller, n *inode) error {
	if err := e.authorizeInode(c, n); err != nil {
		return err
	}
	ent := e.newEntry(c, OpSetAttr)
	ent.Ino = n.attr.Ino
	ent.Flags = AttrSize | AttrMtime
	ent.Mtime = ent.Time
	ent.Ctime = ent.Time
	if c.UID != 0 && needsKillPriv(n.attr.Mode) {
		ent.Flags |= AttrMode
		ent.Mode = fsapi.ClearSetID(n.attr.Mode & 0o7777)
	}
	if err := e.dropCapability(ctx, c, n, ent); err != nil {
		return err
	}
	return e.commit(ctx, ent)
}

// dataNode returns the regular file behind a handle.
// The errors are those of read(2) and write(2): EBADF for a handle that is
// not open on ino or lacks the access, EISDIR for a directory and EINVAL for
// other files. e.mu is held.
func (e *Engine) dataNode(ino fsapi.Ino, id fsapi.HandleID, write bool) (*handle, *inode, error) {
	h, err := e.handleFor(id, ino)
	if err != nil {
		return nil, nil, err
	}
	if write && !h.writable() || !write && !h.readable() {
		return nil, nil, syscall.EBADF
	}
	n, err := e.node(ino)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case n.isDir():
		return nil, nil, syscall.EISDIR
	case !n.isRegular():
		return nil, nil, syscall.EINVAL
	}
	return h, n, nil
}

// Read copies file data at off into dest and returns the number of bytes,
// which is short only at the end of the file. Holes read as zeros. Reads do
// not change the atime (noatime behaviour, see doc.go).
func (e *Engine) Read(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, off int64, dest []byte) (int, error) {
	if err := checkCaller(c); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h, n, err := e.dataNode(ino, id, false)
	if err != nil {
		return 0, err
	}
	var count uint64
	for {
		// fetch releases e.mu, so the size is read again after it.
		size := n.attr.Size
		if uint64(off) >= size {
			return 0, nil
		}
		count = min(uint64(len(dest)), fsapi.MaxWrite, size-uint64(off))
		evicted := n.data.evictedIn(uint64(off), count)
		if len(evicted) == 0 {
			break
		}
		if err := e.fetch(n, evicted[0]); err != nil {
			return 0, err
		}
	}
	n.data.readAt(dest[:count], uint64(off))
	if h.readEnd == uint64(off) {
		e.prefetch(n, (uint64(off)+count-1)/ChunkSize)
	}
	h.readEnd = uint64(off) + count
	return int(count), nil
}

// Write stores data at off, or at the end of the file for an O_APPEND
// handle, and returns len(data). One write is one journal entry of at most
// fsapi.MaxWrite bytes.
func (e *Engine) Write(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, off int64, data []byte) (int, error) {
	if err := checkCaller(c); err != nil {
		return 0, err
	}
	if off < 0 || len(data) > fsapi.MaxWrite {
		return 0, syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h, n, err := e.dataNode(ino, id, true)
	if err != nil {
		return 0, err
	}
	if len(data) == 0 {
		return 0, nil
	}
	start := uint64(off)
	if h.flags&syscall.O_APPEND != 0 {
		// The offset is fixed here, under the lock, so concurrent appends
		// never overlap and a replay writes where the writer did.
		start = n.attr.Size
	}
	if err := e.commitWrite(ctx, c, n, start, data); err != nil {
		return 0, err
	}
	return len(data), nil
}

// commitWrite checks size, space and writecap and journals a write entry.
// e.mu is held.
func (e *Engine) commitWrite(ctx context.Context, c *fsapi.Caller, n *inode, off uint64, data []byte) error {
	if off > MaxFileSize || uint64(len(data)) > MaxFileSize-off {
		return syscall.EFBIG
	}
	if err := e.loadRange(n, off, uint64(len(data))); err != nil {
		return err
	}
	if err := e.reserve(n.data.newSectors(off, uint64(len(data)))); err != nil {
		return err
	}
	if err := e.authorizeInode(c, n); err != nil {
		return err
	}
	ent := e.newEntry(c, OpWrite)
	ent.Ino = n.attr.Ino
	ent.Offset = off
	ent.Data = data
	ent.KillPriv = c.UID != 0 && needsKillPriv(n.attr.Mode)
	if err := e.dropCapability(ctx, c, n, ent); err != nil {
		return err
	}
	return e.commit(ctx, ent)
}

// reserve returns ENOSPC when storing that many more sectors would exceed
// the capacity. e.mu is held.
func (e *Engine) reserve(sectors uint64) error {
	if e.capacity == 0 || sectors == 0 {
		return nil
	}
	free := (e.capacity - min(e.capacity, e.usedBytes)) / SectorSize
	if sectors > free {
		return syscall.ENOSPC
	}
	return nil
}

// Flush is called on every close(2) of a descriptor. It releases the POSIX
// record locks of lockOwner on the file, as close(2) does. It does not sync,
// because the engine is the only copy of the tree: the next Open reads what
// a Write stored.
func (e *Engine) Flush(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, lockOwner uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.handleFor(id, ino); err != nil {
		return err
	}
	e.locks.releaseOwner(ino, lockOwner)
	return nil
}

// Release ends a handle of Open or Create. It drops the handle's flock, and
// the last Release of an unlinked file journals its reclaim.
func (e *Engine) Release(ctx context.Context, ino fsapi.Ino, id fsapi.HandleID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, err := e.handleFor(id, ino)
	if err != nil || h.dir {
		return syscall.EBADF
	}
	return e.closeHandle(id)
}

// Fsync makes every journaled change durable. Syncing the journal is
// enough, because the journal is the only place where changes wait for the
// disk.
func (e *Engine) Fsync(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, datasync bool) error {
	e.mu.Lock()
	_, err := e.handleFor(id, ino)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.sync()
}

// Fallocate implements fallocate(2) modes 0 (reserve and extend the size),
// FALLOC_FL_KEEP_SIZE (reserve only) and FALLOC_FL_PUNCH_HOLE |
// FALLOC_FL_KEEP_SIZE (zero the range and free the sectors it covers
// whole). Other modes return EOPNOTSUPP.
func (e *Engine) Fallocate(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, mode uint32, off, length int64) error {
	if err := checkCaller(c); err != nil {
		return err
	}
	if mode != 0 && mode != FallocKeepSize && mode != FallocKeepSize|FallocPunchHole {
		return syscall.EOPNOTSUPP
	}
	if off < 0 || length <= 0 {
		return syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	h, err := e.handleFor(id, ino)
	if err != nil {
		return err
	}
	if !h.writable() {
		return syscall.EBADF
	}
	n, err := e.node(ino)
	if err != nil {
		return err
	}
	switch {
	case n.isDir():
		return syscall.EISDIR
	case !n.isRegular():
		return syscall.ENODEV
	case uint64(off) > MaxFileSize || uint64(length) > MaxFileSize-uint64(off):
		return syscall.EFBIG
	}
	if mode&FallocPunchHole != 0 {
		// Only the first and last chunk can keep part of their data;
		// allocating changes only the layout.
		for _, at := range []uint64{uint64(off), uint64(off + length - 1)} {
			if err := e.loadRange(n, at, 1); err != nil {
				return err
			}
		}
	}

	if mode&FallocPunchHole == 0 {
		// NOTE: each reserved sector is one map entry, so without a Capacity
		// a huge fallocate costs memory in proportion to its length.
		if err := e.reserve(n.data.newSectors(uint64(off), uint64(length))); err != nil {
			return err
		}
	}
	if err := e.authorizeInode(c, n); err != nil {
		return err
	}
	ent := e.newEntry(c, OpFallocate)
	ent.Ino = ino
	ent.Flags = mode
	ent.Offset = uint64(off)
	ent.Length = uint64(length)
	ent.KillPriv = c.UID != 0 && needsKillPriv(n.attr.Mode)
	if err := e.dropCapability(ctx, c, n, ent); err != nil {
		return err
	}
	return e.commit(ctx, ent)
}

// Lseek serves SEEK_DATA and SEEK_HOLE, which need the file's layout, and
// SEEK_SET and SEEK_END for completeness. SEEK_CUR returns EINVAL because
// the file position lives in the kernel, not in the handle. A stored sector
// counts as data, including one that fallocate reserved and no write has
// filled. The end of the file counts as a hole.
func (e *Engine) Lseek(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, off int64, whence uint32) (int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.handleFor(id, ino); err != nil {
		return 0, err
	}
	n, err := e.node(ino)
	if err != nil {
		return 0, err
	}

	size := n.attr.Size
	switch whence {
	case seekSet:
		if off < 0 {
			return 0, syscall.EINVAL
		}
		return off, nil
	case seekEnd:
		if off < -int64(size) || off > int64(MaxFileSize-size) {
			return 0, syscall.EINVAL
		}
		return int64(size) + off, nil
	case seekData, seekHole:
	default:
		return 0, syscall.EINVAL
	}

	if !n.isRegular() {
		return 0, syscall.EINVAL
	}
	if off < 0 || uint64(off) >= size {
		return 0, syscall.ENXIO
	}
	if whence == seekHole {
		return int64(n.data.seekHole(uint64(off), size)), nil
	}
	pos, ok := n.data.seekData(uint64(off), size)
	if !ok {
		return 0, syscall.ENXIO
	}
	return int64(pos), nil
}

// CopyFileRange copies up to length bytes from one file to another (or
// within one file, if the ranges do not overlap) and returns the number
// copied. It copies at most fsapi.MaxWrite bytes per call, as one write
// entry that carries the bytes, so that the entry is self-contained.
// Callers of copy_file_range(2) loop on short copies.
func (e *Engine) CopyFileRange(ctx context.Context, c *fsapi.Caller, inIno fsapi.Ino, inH fsapi.HandleID, inOff int64, outIno fsapi.Ino, outH fsapi.HandleID, outOff int64, length uint64, flags uint32) (uint64, error) {
	if err := checkCaller(c); err != nil {
		return 0, err
	}
	if flags != 0 || inOff < 0 || outOff < 0 {
		return 0, syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, in, err := e.dataNode(inIno, inH, false)
	if err != nil {
		return 0, err
	}
	hOut, out, err := e.dataNode(outIno, outH, true)
	if err != nil {
		return 0, err
	}
	if hOut.flags&syscall.O_APPEND != 0 {
		return 0, syscall.EBADF
	}

	size := in.attr.Size
	if uint64(inOff) >= size || length == 0 {
		return 0, nil
	}
	count := min(length, fsapi.MaxWrite, size-uint64(inOff))
	if in == out && uint64(inOff) < uint64(outOff)+count && uint64(outOff) < uint64(inOff)+count {
		return 0, syscall.EINVAL
	}

	if err := e.loadRange(in, uint64(inOff), count); err != nil {
		return 0, err
	}
	buf := make([]byte, count)
	in.data.readAt(buf, uint64(inOff))
	if err := e.commitWrite(ctx, c, out, uint64(outOff), buf); err != nil {
		return 0, err
	}
	return count, nil
}
