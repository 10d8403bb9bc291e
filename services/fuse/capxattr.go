package fusefs

import (
	"sync"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// capabilityXattr is the extended attribute that holds a program's file
// capabilities. Before a write, truncate or chown of a file on FUSE, Linux
// reads it to learn whether the change must remove it. With SB_NOSEC, which
// it sets for this mount (see setIDFiles), it skips that read for a file it
// has found without one until the file's attributes are next refreshed.
// The first write after each refresh and every chown still read it.
// Unpacking a tree of 11,504 files sent 38,519 such reads before SB_NOSEC
// and 22,998 with it. The server replies to them itself when the result is
// certain.
const capabilityXattr = fsapi.CapabilityXattr

// noCapability is the set of inodes known to have no capabilityXattr: files
// created with O_EXCL through this mount, and those for which the file
// system returned ENODATA. An inode leaves the set when an xattr of it changes through this
// mount, when a change notification reports a change of its attributes,
// and when the kernel evicts it (FORGET). An entry counts only for the
// attribute timeout, like an attribute that the kernel caches, for changes
// that no notification reports.
type noCapability struct {
	mu sync.Mutex
	// generation grows with every change that may add the attribute, so
	// that an ENODATA read before such a change is not remembered after it.
	generation uint64
	inodes     map[fsapi.Ino]time.Time // when it was last known to have none
}

func newNoCapability() *noCapability {
	return &noCapability{inodes: make(map[fsapi.Ino]time.Time)}
}

// has reports whether ino was known to have no capabilityXattr less than
// maxAge ago.
func (n *noCapability) has(ino fsapi.Ino, maxAge time.Duration) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.inodes[ino]
	if ok && time.Since(at) >= maxAge {
		delete(n.inodes, ino)
		return false
	}
	return ok
}

// current returns the generation to pass to add once the file system has
// replied.
func (n *noCapability) current() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.generation
}

// add records that ino has no capabilityXattr, as the file system replied
// to a read sent at generation.
func (n *noCapability) add(ino fsapi.Ino, generation uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.generation == generation {
		n.inodes[ino] = time.Now()
	}
}

// changed removes ino, whose extended attributes may have changed.
func (n *noCapability) changed(ino fsapi.Ino) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.generation++
	delete(n.inodes, ino)
}

// changedAll removes every inode.
func (n *noCapability) changedAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.generation++
	clear(n.inodes)
}

// forget removes ino, which the kernel evicted, without a change.
func (n *noCapability) forget(ino fsapi.Ino) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.inodes, ino)
}
