package fusefs

import (
	"sync"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// pageCache decides at each open whether the kernel may keep the file data
// it has cached (FOPEN_KEEP_CACHE). Without it the kernel drops a file's
// cached pages at every open, so a file read again is read again through
// FUSE and the daemon.
//
// The kernel's cache of a file is current when nothing changed the file
// since this mount last opened it, or when only this mount changed it.
// Without the writeback cache, the kernel updates or drops its own pages
// for the writes, truncations, fallocate and copy_file_range calls that
// pass through it. Another client of the daemon (another mount, later a
// Raft peer) changes the ctime, which the daemon sets at every change. So
// at each open the server requests the file's attributes from the daemon.
// It keeps the cache only when ctime and size are those recorded at the
// previous open and no change went through this mount in between. Each open thus costs
// one GETATTR round trip more, and readers keep close-to-open consistency.
//
// NOTE: the rule relies on the daemon's ctime moving at every change. A
// change at the same nanosecond as the previous one, or after the clock was
// set back, could keep stale pages until the next change of size or mtime,
// which the kernel notices by itself (CAP_AUTO_INVAL_DATA).
type pageCache struct {
	mu    sync.Mutex
	files map[fsapi.Ino]cachedFile
}

// cachedFile is the state of a file at its last open through this mount.
type cachedFile struct {
	ctime int64
	size  uint64
	// changed is set when a change went through this mount after the
	// open, so the next open drops the cache, to be safe.
	changed bool
}

func newPageCache() *pageCache {
	return &pageCache{files: make(map[fsapi.Ino]cachedFile)}
}

// opened records the attributes of a file being opened and reports
// whether the kernel may keep its cached data.
func (p *pageCache) opened(attr *fsapi.Attr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	last, known := p.files[attr.Ino]
	p.files[attr.Ino] = cachedFile{ctime: attr.Ctime, size: attr.Size}
	return known && !last.changed && last.ctime == attr.Ctime && last.size == attr.Size
}

// changed records a change to a file's data through this mount.
func (p *pageCache) changed(ino fsapi.Ino) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.files[ino]; ok {
		f.changed = true
		p.files[ino] = f
	}
}

// forget drops what the server knew of a file the kernel forgot.
func (p *pageCache) forget(ino fsapi.Ino) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.files, ino)
}
