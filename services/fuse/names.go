package fusefs

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// maxKnownNames bounds knownNames. A name beyond it gets DefaultTimeout
// instead of the long entry timeout. A name of 18 bytes took 208 bytes of
// heap in the set, so the bound keeps the set near 27 MiB for such names
// and twice that for names of 255 bytes.
const maxKnownNames = 1 << 17

// nameKey is one directory entry as the kernel caches it.
type nameKey struct {
	parent fsapi.Ino
	name   string
}

// knownNames is the set of names that the kernel may cache with the long
// entry timeout. A name of a file other than a directory that a reply gave
// the kernel with that timeout stays in it until the kernel has given back
// every lookup of the inode that the name leads to (FORGET). The set may
// hold names that the kernel has already dropped, so that after lost
// notifications the server can invalidate every long-lived name
// (takeAll). Directories get at most DefaultTimeout and are not recorded:
// invalidating a directory's name would also detach the mounts below it
// and leave the processes working in it without a path.
//
// The mutex also orders the choice of timeout against takeAll: a reply
// either chose the long timeout and was recorded before takeAll, or it
// chose after the loss and got the short one.
type knownNames struct {
	mu    sync.Mutex
	byKey map[nameKey]fsapi.Ino
	byIno map[fsapi.Ino][]nameKey // the names of each inode, usually one
	// lookups counts the replies that gave the kernel each inode, minus
	// those that FORGET returned. The kernel still caches an inode, and
	// maybe names of it, until the count is back to zero.
	lookups map[fsapi.Ino]uint64
	limit   int
}

func newKnownNames(limit int) *knownNames {
	return &knownNames{
		byKey:   make(map[nameKey]fsapi.Ino),
		byIno:   make(map[fsapi.Ino][]nameKey),
		lookups: make(map[fsapi.Ino]uint64),
		limit:   limit,
	}
}

// entryTimeouts returns the timeouts for a reply that gives the kernel
// name in parent, leading to the inode a, counts the lookup, and records
// the name when it gets the long entry timeout.
func (k *knownNames) entryTimeouts(t *cacheTimeouts, parent fsapi.Ino, name string, a *fsapi.Attr) (entry, attr time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lookups[a.Ino]++
	entry, attr = t.entryOut()
	if entry <= DefaultTimeout {
		return entry, attr
	}
	if a.Mode&syscall.S_IFMT == syscall.S_IFDIR || !k.addLocked(nameKey{parent, name}, a.Ino) {
		entry = DefaultTimeout
	}
	return entry, attr
}

// addLocked records key for child and reports whether it could. k.mu is
// held.
func (k *knownNames) addLocked(key nameKey, child fsapi.Ino) bool {
	if old, ok := k.byKey[key]; ok {
		if old == child {
			return true
		}
		k.dropKeyLocked(key, old)
	} else if len(k.byKey) >= k.limit {
		return false
	}
	k.byKey[key] = child
	k.byIno[child] = append(k.byIno[child], key)
	return true
}

// dropKeyLocked removes key from the names of ino. k.mu is held.
func (k *knownNames) dropKeyLocked(key nameKey, ino fsapi.Ino) {
	keys := k.byIno[ino]
	for i, other := range keys {
		if other == key {
			keys = append(keys[:i], keys[i+1:]...)
			break
		}
	}
	if len(keys) == 0 {
		delete(k.byIno, ino)
	} else {
		k.byIno[ino] = keys
	}
}

// forget takes back n lookups of ino (FORGET) and reports whether none is
// left. The kernel then no longer holds ino, nor any name that leads to
// it, and its names are removed.
func (k *knownNames) forget(ino fsapi.Ino, n uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if left := k.lookups[ino]; left > n {
		k.lookups[ino] = left - n
		return false
	}
	delete(k.lookups, ino)
	for _, key := range k.byIno[ino] {
		if k.byKey[key] == ino {
			delete(k.byKey, key)
		}
	}
	delete(k.byIno, ino)
	return true
}

// renamed follows a rename through this mount, after which the kernel
// caches the moved entry under its new name with the timeout it had. With
// exchange, the entry under the new name moved to the old one as well.
//
// It returns the names to invalidate once the kernel has moved its
// entries: those whose entry was not recorded while t is short after a
// loss. The kernel may then hold an entry with the long timeout that
// takeAll took before the rename moved it away from the name that
// forgetAll invalidates.
func (k *knownNames) renamed(t *cacheTimeouts, oldKey, newKey nameKey, exchange bool) []nameKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	moved, movedKnown := k.byKey[oldKey]
	other, otherKnown := k.byKey[newKey]
	var unknown []nameKey
	if movedKnown {
		k.dropKeyLocked(oldKey, moved)
		delete(k.byKey, oldKey)
		k.addLocked(newKey, moved)
	} else if t.short() {
		unknown = append(unknown, newKey)
	}
	if !exchange {
		return unknown
	}
	if otherKnown {
		k.addLocked(oldKey, other)
	} else if t.short() {
		unknown = append(unknown, oldKey)
	}
	return unknown
}

// takeAll empties the set of names and returns them with their inodes.
// lost runs under the same lock, so every reply after it uses the short
// timeouts. The lookup counts stay: the kernel still holds the inodes.
func (k *knownNames) takeAll(lost func()) ([]nameKey, []fsapi.Ino) {
	k.mu.Lock()
	defer k.mu.Unlock()
	lost()
	keys := make([]nameKey, 0, len(k.byKey))
	for key := range k.byKey {
		keys = append(keys, key)
	}
	inos := make([]fsapi.Ino, 0, len(k.byIno))
	for ino := range k.byIno {
		inos = append(inos, ino)
	}
	clear(k.byKey)
	clear(k.byIno)
	return keys, inos
}

// invalidateNames drops keys from the kernel's cache and returns the
// failures. Each invalidation waits for the directory's lock, so it must not
// run inside a request handler.
func (r *rawFS) invalidateNames(keys []nameKey) error {
	var errs []error
	for _, key := range keys {
		if err := notifyError("invalidate entry", r.server.EntryNotify(uint64(key.parent), key.name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
