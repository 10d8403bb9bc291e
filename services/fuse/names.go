package fusefs

import (
	"sync"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// maxKnownNames bounds knownNames. A name beyond it gets DefaultTimeout
// instead of the long entry timeout. A name of 18 bytes took 208 bytes of
// heap in the set, so the bound keeps the set near 27 MiB.
const maxKnownNames = 1 << 17

// nameKey is one directory entry as the kernel caches it.
type nameKey struct {
	parent fsapi.Ino
	name   string
}

// knownNames is the set of names that the kernel may cache with the long
// entry timeout: every name that a reply gave it with that timeout, until
// the kernel evicts the inode that the name leads to (FORGET). The set may
// hold names that the kernel has already dropped, never fewer than it
// caches, so that after lost notifications the server can invalidate every
// long-lived name (takeAll).
//
// The mutex also orders the choice of timeout against takeAll: a reply
// either chose the long timeout and was recorded before takeAll, or it
// chose after the loss and got the short one.
type knownNames struct {
	mu    sync.Mutex
	byKey map[nameKey]fsapi.Ino
	byIno map[fsapi.Ino][]nameKey // the names of each inode, usually one
	limit int
}

func newKnownNames(limit int) *knownNames {
	return &knownNames{byKey: make(map[nameKey]fsapi.Ino), byIno: make(map[fsapi.Ino][]nameKey), limit: limit}
}

// entryTimeouts returns the timeouts for a reply that gives the kernel
// name in parent, leading to child, and records the name when the entry
// timeout is longer than DefaultTimeout.
func (k *knownNames) entryTimeouts(t *cacheTimeouts, parent fsapi.Ino, name string, child fsapi.Ino) (entry, attr time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	entry, attr = t.entryOut()
	if entry > DefaultTimeout && !k.addLocked(nameKey{parent, name}, child) {
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

// forget removes the names of ino, which the kernel evicted: it caches no
// name that leads to it.
func (k *knownNames) forget(ino fsapi.Ino) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range k.byIno[ino] {
		if k.byKey[key] == ino {
			delete(k.byKey, key)
		}
	}
	delete(k.byIno, ino)
}

// renamed follows a rename through this mount, after which the kernel
// caches the moved entry under its new name with the timeout it had. With
// exchange, the entry under the new name moved to the old one as well.
func (k *knownNames) renamed(oldKey, newKey nameKey, exchange bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	moved, movedKnown := k.byKey[oldKey]
	other, otherKnown := k.byKey[newKey]
	if movedKnown {
		k.addLocked(newKey, moved)
	}
	if exchange && otherKnown {
		k.addLocked(oldKey, other)
	}
}

// takeAll empties the set and returns its names and inodes. lost runs
// under the same lock, so every reply after it uses the short timeouts.
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
