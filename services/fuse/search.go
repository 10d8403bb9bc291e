package fusefs

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// The mount does not use the kernel's default_permissions option. With it,
// Linux checks every permission itself against the attributes it cached.
// It also drops a directory's cached attributes after each change in the
// directory, so every create, unlink or rename cost a GETATTR of the
// directory before the next one. Without it, the daemon's own checks decide.
// But the kernel then checks no search permission on the directories of a
// path whose names it has cached: a name one user looked up could be
// reached by another user who may not search the directory.
//
// So a name may stay in the kernel's cache only inside a directory that
// every user may search (x for owner, group and others). In any other
// directory the reply to LOOKUP, CREATE and the like gives the name an entry
// timeout of zero, and the kernel asks the daemon, which checks search
// permission for the caller, at every path walk through it. When a
// directory stops being searchable by everyone, the server makes the kernel
// forget the names in it. See "Permissions" in docs/fs.md.

// searchableByAll reports whether every user may search a directory with
// this mode.
func searchableByAll(mode uint32) bool { return mode&0o111 == 0o111 }

// dirModes is the mode of each directory whose attributes the server sent
// to the kernel, kept until the kernel evicts the inode (FORGET).
type dirModes struct {
	mu    sync.Mutex
	modes map[fsapi.Ino]uint32
}

func newDirModes() *dirModes { return &dirModes{modes: make(map[fsapi.Ino]uint32)} }

// note records a's mode if a is a directory, and reports whether a
// directory that every user could search no longer is (or was not known).
func (d *dirModes) note(a *fsapi.Attr) (closed bool) {
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return false
	}
	d.mu.Lock()
	old, known := d.modes[a.Ino]
	d.modes[a.Ino] = a.Mode
	d.mu.Unlock()
	return !searchableByAll(a.Mode) && (!known || searchableByAll(old))
}

func (d *dirModes) get(ino fsapi.Ino) (mode uint32, known bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	mode, known = d.modes[ino]
	return mode, known
}

func (d *dirModes) forget(ino fsapi.Ino) {
	d.mu.Lock()
	delete(d.modes, ino)
	d.mu.Unlock()
}

// known returns the directories whose modes are known.
func (d *dirModes) known() []fsapi.Ino {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Collect(maps.Keys(d.modes))
}

// entryTimeout returns how long the kernel may cache a name in directory
// parent: the configured timeout when every user may search parent,
// otherwise zero. A parent the server has not described to the kernel yet
// (the root, at first) is asked for.
func (r *rawFS) entryTimeout(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, timeout time.Duration) time.Duration {
	mode, known := r.dirs.get(parent)
	if !known {
		attr, err := r.fs.GetAttr(ctx, c, parent)
		if err != nil {
			return 0
		}
		r.noteAttr(&attr)
		mode = attr.Mode
	}
	if !searchableByAll(mode) {
		return 0
	}
	return timeout
}

// noteAttr records the mode of a directory whose attributes go to the
// kernel, and queues the names in it for forgetting when it stopped being
// searchable by every user.
func (r *rawFS) noteAttr(a *fsapi.Attr) {
	if r.dirs.note(a) {
		r.closed.add(a.Ino)
	}
}

// closedDirs is the queue of directories whose cached names the kernel
// must drop. Its add never blocks, because request handlers call it, and
// the worker that empties the queue waits for the kernel's lock on a
// directory that such a request holds.
type closedDirs struct {
	mu      sync.Mutex
	pending map[fsapi.Ino]struct{}
	wake    chan struct{}
}

func newClosedDirs() *closedDirs {
	return &closedDirs{pending: make(map[fsapi.Ino]struct{}), wake: make(chan struct{}, 1)}
}

func (q *closedDirs) add(ino fsapi.Ino) {
	q.mu.Lock()
	q.pending[ino] = struct{}{}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *closedDirs) take() []fsapi.Ino {
	q.mu.Lock()
	defer q.mu.Unlock()
	dirs := slices.Collect(maps.Keys(q.pending))
	clear(q.pending)
	return dirs
}

// forgetClosedDirs invalidates the cached names in each directory queued
// in r.closed, until ctx ends.
func (r *rawFS) forgetClosedDirs(ctx context.Context, srv *fuse.Server) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.closed.wake:
		}
		for _, dir := range r.closed.take() {
			if err := r.forgetNames(ctx, srv, dir); err != nil {
				r.logger.Warn("invalidating the cached names of a directory that not every user may search failed", "ino", dir, "error", err)
			}
		}
	}
}

// forgetNames invalidates every name in directory dir. A name removed
// earlier was invalidated at its removal.
func (r *rawFS) forgetNames(ctx context.Context, srv *fuse.Server, dir fsapi.Ino) error {
	// Root may read every directory, and the node's principal owns the tree.
	c := &fsapi.Caller{Principal: r.principal}
	h, err := r.fs.OpenDir(ctx, c, dir, syscall.O_RDONLY)
	if errors.Is(err, syscall.ENOENT) {
		return nil // removed meanwhile, and its names with it
	}
	if err != nil {
		return err
	}
	defer r.fs.ReleaseDir(ctx, dir, h)
	var cookie uint64
	for {
		entries, err := r.fs.ReadDir(ctx, c, dir, h, cookie, 256)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		for _, e := range entries {
			cookie = e.Cookie
			if e.Name == "." || e.Name == ".." {
				continue
			}
			if err := notifyError("invalidate entry", srv.EntryNotify(uint64(dir), e.Name)); err != nil {
				return err
			}
		}
	}
}
