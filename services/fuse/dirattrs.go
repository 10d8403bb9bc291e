package fusefs

import (
	"context"
	"sync"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// With default_permissions Linux checks permissions against the attributes
// it cached, and it drops a directory's cached attributes after each
// create, unlink or other change of an entry in it. Before its next
// permission check in that directory it therefore sends a GETATTR. When
// the file system is an fsapi.DirReporter, the reply to the change already
// carried the directory's new attributes, and the server replies to that
// GETATTR with them, without a round trip to the daemon.

// dirAttrs keeps, for each directory that a change through this mount
// touched, the attributes that the change returned. They are kept until a
// GETATTR takes them, another change begins or a notification reports a
// change from elsewhere, and used only while younger than the attribute
// timeout.
type dirAttrs struct {
	mu   sync.Mutex
	dirs map[fsapi.Ino]*dirState
}

// dirState is the state that dirAttrs keeps for one directory.
type dirState struct {
	running    int  // changes in progress
	overlapped bool // another change ran beside one in progress
	valid      bool // attr may be given to the kernel
	attr       fsapi.Attr
	at         time.Time // when the change returned attr
}

func newDirAttrs() *dirAttrs { return &dirAttrs{dirs: make(map[fsapi.Ino]*dirState)} }

// begin marks the start of a change of directory dir. It returns a
// function to call when the change has finished, with the attributes that
// it returned (Ino 0 when it returned none or failed). Attributes are kept
// only from a change that ran alone: of two that overlap, the daemon may
// have applied either last.
func (d *dirAttrs) begin(dir fsapi.Ino) (end func(attr fsapi.Attr)) {
	d.mu.Lock()
	st := d.dirs[dir]
	if st == nil {
		st = &dirState{}
		d.dirs[dir] = st
	}
	st.valid = false
	if st.running > 0 {
		st.overlapped = true
	}
	st.running++
	d.mu.Unlock()

	return func(attr fsapi.Attr) {
		d.mu.Lock()
		defer d.mu.Unlock()
		st.running--
		if attr.Ino == dir && !st.overlapped {
			st.attr, st.valid, st.at = attr, true, time.Now()
		}
		if st.running == 0 {
			st.overlapped = false
			if !st.valid {
				delete(d.dirs, dir)
			}
		}
	}
}

// take returns the attributes of dir that a change returned less than
// maxAge ago, and removes them.
func (d *dirAttrs) take(dir fsapi.Ino, maxAge time.Duration) (fsapi.Attr, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.dirs[dir]
	if st == nil || !st.valid || st.running > 0 {
		return fsapi.Attr{}, false
	}
	delete(d.dirs, dir)
	if time.Since(st.at) >= maxAge {
		return fsapi.Attr{}, false
	}
	return st.attr, true
}

// drop removes the attributes of dir, because it changed elsewhere. A
// change in progress keeps none either, because the other change may have
// come after it.
func (d *dirAttrs) drop(dir fsapi.Ino) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.dirs[dir]
	if st == nil {
		return
	}
	if st.running > 0 {
		st.valid, st.overlapped = false, true
		return
	}
	delete(d.dirs, dir)
}

// dropAll removes the attributes of every directory, as drop does.
func (d *dirAttrs) dropAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for dir, st := range d.dirs {
		if st.running > 0 {
			st.valid, st.overlapped = false, true
			continue
		}
		delete(d.dirs, dir)
	}
}

// withoutDirAttrs serves fsapi.DirReporter's calls for a file system that
// does not report directory attributes. Each call makes the plain change
// and returns no directory attributes (Ino 0), which dirAttrs does not
// keep, so the kernel's next GETATTR reaches the file system.
type withoutDirAttrs struct{ fsapi.FS }

func (f withoutDirAttrs) CreateAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, fsapi.Attr, error) {
	attr, h, err := f.Create(ctx, c, parent, name, mode, flags)
	return attr, h, fsapi.Attr{}, err
}

func (f withoutDirAttrs) MkdirAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, fsapi.Attr, error) {
	attr, err := f.Mkdir(ctx, c, parent, name, mode)
	return attr, fsapi.Attr{}, err
}

func (f withoutDirAttrs) UnlinkAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	return fsapi.Attr{}, f.Unlink(ctx, c, parent, name)
}

func (f withoutDirAttrs) RmdirAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	return fsapi.Attr{}, f.Rmdir(ctx, c, parent, name)
}
