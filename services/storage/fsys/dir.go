package fsys

import (
	"context"
	"math"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// OpenDir opens a directory for ReadDir; it needs read permission.
func (e *Engine) OpenDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, flags uint32) (fsapi.HandleID, error) {
	if err := checkCaller(c); err != nil {
		return 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.dirNode(ino)
	if err != nil {
		return 0, err
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return 0, syscall.EISDIR
	}
	if err := checkAccess(c, n, mayRead); err != nil {
		return 0, err
	}
	return e.openHandle(n, flags, true), nil
}

// ReadDir returns up to max entries (all if max <= 0) whose cookie is
// above cookie, in cookie order: "." (cookie 1), ".." (cookie 2), then the
// entries in the order they were added. Passing the cookie of the last
// entry returned continues the listing. An entry added meanwhile appears
// after the ones already returned, a removed one no longer appears, and no
// entry appears twice. A removed directory lists nothing, as on Linux.
func (e *Engine) ReadDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, cookie uint64, max int) ([]fsapi.DirEntry, error) {
	if err := checkCaller(c); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.handleFor(id, ino); err != nil {
		return nil, err
	}
	dir, err := e.dirNode(ino)
	if err != nil {
		return nil, err
	}
	if dir.attr.Nlink == 0 {
		return nil, nil
	}

	var out []fsapi.DirEntry
	full := func() bool { return max > 0 && len(out) >= max }
	if cookie < dotCookie && !full() {
		out = append(out, fsapi.DirEntry{Name: ".", Ino: ino, Mode: syscall.S_IFDIR, Cookie: dotCookie})
	}
	if cookie < dotDotCookie && !full() {
		out = append(out, fsapi.DirEntry{Name: "..", Ino: dir.parentIno(), Mode: syscall.S_IFDIR, Cookie: dotDotCookie})
	}
	start := len(dir.order)
	if cookie < math.MaxUint64 {
		start = dir.orderIndex(cookie + 1)
	}
	for _, d := range dir.order[start:] {
		if full() {
			break
		}
		if d.live() {
			out = append(out, fsapi.DirEntry{Name: d.name, Ino: d.ino, Mode: d.mode, Cookie: d.cookie})
		}
	}
	return out, nil
}

// ReleaseDir ends a handle of OpenDir.
func (e *Engine) ReleaseDir(ctx context.Context, ino fsapi.Ino, id fsapi.HandleID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, err := e.handleFor(id, ino)
	if err != nil || !h.dir {
		return syscall.EBADF
	}
	return e.closeHandle(id)
}

// FsyncDir makes every journaled change durable, as Fsync does.
func (e *Engine) FsyncDir(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID) error {
	e.mu.Lock()
	_, err := e.handleFor(id, ino)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.sync()
}
