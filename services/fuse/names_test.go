package fusefs

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// knownKeys returns the names in k, sorted, without emptying it.
func knownKeys(k *knownNames) []nameKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	var keys []nameKey
	for key := range k.byKey {
		keys = append(keys, key)
	}
	slices.SortFunc(keys, func(a, b nameKey) int {
		if a.parent != b.parent {
			return int(a.parent) - int(b.parent)
		}
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return keys
}

// file returns the attributes of a regular file with inode number ino.
func file(ino fsapi.Ino) *fsapi.Attr { return &fsapi.Attr{Ino: ino, Mode: syscall.S_IFREG | 0o644} }

func TestKnownNamesFollowRenameAndForget(t *testing.T) {
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Minute}
	timeouts.notified.Store(true)
	k := newKnownNames(maxKnownNames)
	for _, e := range []struct {
		parent fsapi.Ino
		name   string
		child  fsapi.Ino
	}{{1, "a", 10}, {1, "b", 11}, {2, "link", 10}} {
		if entry, _ := k.entryTimeouts(timeouts, e.parent, e.name, file(e.child)); entry != time.Hour {
			t.Fatalf("entry timeout of %s %v, want an hour", e.name, entry)
		}
	}
	if entry, _ := k.entryTimeouts(timeouts, 1, "dir", &fsapi.Attr{Ino: 12, Mode: syscall.S_IFDIR | 0o755}); entry != DefaultTimeout {
		t.Errorf("entry timeout of a directory %v, want %v", entry, DefaultTimeout)
	}

	// An exchange swaps the entries, a plain rename moves one.
	if unknown := k.renamed(timeouts, nameKey{1, "a"}, nameKey{1, "b"}, true); len(unknown) != 0 {
		t.Errorf("names to invalidate after an exchange of known names: %v", unknown)
	}
	k.renamed(timeouts, nameKey{2, "link"}, nameKey{3, "moved"}, false)
	want := []nameKey{{1, "a"}, {1, "b"}, {3, "moved"}}
	if got := knownKeys(k); !slices.Equal(got, want) {
		t.Errorf("names after the renames %v, want %v", got, want)
	}
	if k.byKey[nameKey{1, "a"}] != 11 || k.byKey[nameKey{1, "b"}] != 10 {
		t.Errorf("after the exchange a leads to %d and b to %d, want 11 and 10", k.byKey[nameKey{1, "a"}], k.byKey[nameKey{1, "b"}])
	}

	// Inode 10 was looked up twice: one FORGET of one lookup keeps its
	// names, the second drops them, and only them.
	if k.forget(10, 1) {
		t.Error("inode 10 counts as forgotten after one of its two lookups")
	}
	if got := knownKeys(k); !slices.Equal(got, want) {
		t.Errorf("names after one of two lookups of inode 10 was forgotten %v, want %v", got, want)
	}
	if !k.forget(10, 1) {
		t.Error("inode 10 does not count as forgotten after both its lookups")
	}
	if got, want := knownKeys(k), []nameKey{{1, "a"}}; !slices.Equal(got, want) {
		t.Errorf("names after inode 10 was forgotten %v, want %v", got, want)
	}
}

// TestKnownNamesRenameAfterLoss checks that a rename of a name that is not
// recorded, in the short time after a loss, returns the new name for
// invalidation: takeAll may have taken the old name while the rename ran.
func TestKnownNamesRenameAfterLoss(t *testing.T) {
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Minute}
	timeouts.notified.Store(true)
	k := newKnownNames(maxKnownNames)
	k.entryTimeouts(timeouts, 1, "a", file(10))
	if unknown := k.renamed(timeouts, nameKey{1, "x"}, nameKey{1, "y"}, false); len(unknown) != 0 {
		t.Errorf("names to invalidate after renaming a short-lived name: %v", unknown)
	}
	k.takeAll(timeouts.lost)
	unknown := k.renamed(timeouts, nameKey{1, "a"}, nameKey{2, "b"}, true)
	if want := []nameKey{{2, "b"}, {1, "a"}}; !slices.Equal(unknown, want) {
		t.Errorf("names to invalidate after an exchange during a loss: %v, want %v", unknown, want)
	}
}

func TestKnownNamesLimit(t *testing.T) {
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Minute}
	timeouts.notified.Store(true)
	k := newKnownNames(2)
	for i, name := range []string{"a", "b", "c"} {
		entry, _ := k.entryTimeouts(timeouts, 1, name, file(fsapi.Ino(10+i)))
		want := time.Hour
		if name == "c" {
			want = DefaultTimeout
		}
		if entry != want {
			t.Errorf("entry timeout of %s %v, want %v", name, entry, want)
		}
	}
	// A name already known still gets the long timeout, and a rename
	// moves a name without needing room.
	if entry, _ := k.entryTimeouts(timeouts, 1, "a", file(10)); entry != time.Hour {
		t.Errorf("entry timeout of a known name at the limit %v, want an hour", entry)
	}
	k.renamed(timeouts, nameKey{1, "a"}, nameKey{1, "z"}, false)
	if got, want := knownKeys(k), []nameKey{{1, "b"}, {1, "z"}}; !slices.Equal(got, want) {
		t.Errorf("names after a rename at the limit %v, want %v", got, want)
	}
}
