package fsys

import (
	"context"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// unlimitedFreeBytes is the free space StatFS reports when Options.Capacity
// is zero: a fixed 1 PiB, so that df shows a large free space and programs
// that check for room before writing go on.
const unlimitedFreeBytes = 1 << 50

// StatFS reports the capacity, the bytes of stored file sectors, and the
// inodes. Every inode is one block, so the free inode count is the number
// of free sectors. Directory entries, xattrs and block overhead do not count
// as used space.
func (e *Engine) StatFS(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (fsapi.StatFS, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.StatFS{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.node(ino); err != nil {
		return fsapi.StatFS{}, err
	}
	total := e.capacity
	if total == 0 {
		total = e.usedBytes + unlimitedFreeBytes
	}
	free := (total - min(total, e.usedBytes)) / SectorSize
	return fsapi.StatFS{
		Blocks:  total / SectorSize,
		Bfree:   free,
		Bavail:  free,
		Files:   uint64(len(e.inodes)) + free,
		Ffree:   free,
		Bsize:   SectorSize,
		NameLen: fsapi.MaxNameLen,
		Frsize:  SectorSize,
	}, nil
}

// SyncFS makes every journaled change durable.
func (e *Engine) SyncFS(ctx context.Context, c *fsapi.Caller) error {
	return e.sync()
}
