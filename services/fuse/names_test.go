package fusefs

import (
	"slices"
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

func TestKnownNamesFollowRenameAndForget(t *testing.T) {
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Minute}
	timeouts.notified.Store(true)
	k := newKnownNames(maxKnownNames)
	for _, e := range []struct {
		parent fsapi.Ino
		name   string
		child  fsapi.Ino
	}{{1, "a", 10}, {1, "b", 11}, {2, "link", 10}} {
		if entry, _ := k.entryTimeouts(timeouts, e.parent, e.name, e.child); entry != time.Hour {
			t.Fatalf("entry timeout of %s %v, want an hour", e.name, entry)
		}
	}

	// An exchange swaps the entries, a plain rename adds the new name.
	k.renamed(nameKey{1, "a"}, nameKey{1, "b"}, true)
	k.renamed(nameKey{2, "link"}, nameKey{3, "moved"}, false)
	want := []nameKey{{1, "a"}, {1, "b"}, {2, "link"}, {3, "moved"}}
	if got := knownKeys(k); !slices.Equal(got, want) {
		t.Errorf("names after the renames %v, want %v", got, want)
	}
	if k.byKey[nameKey{1, "a"}] != 11 || k.byKey[nameKey{1, "b"}] != 10 {
		t.Errorf("after the exchange a leads to %d and b to %d, want 11 and 10", k.byKey[nameKey{1, "a"}], k.byKey[nameKey{1, "b"}])
	}

	// Evicting inode 10 drops all its names, and only those.
	k.forget(10)
	if got, want := knownKeys(k), []nameKey{{1, "a"}}; !slices.Equal(got, want) {
		t.Errorf("names after inode 10 was evicted %v, want %v", got, want)
	}
}

func TestKnownNamesLimit(t *testing.T) {
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Minute}
	timeouts.notified.Store(true)
	k := newKnownNames(2)
	for i, name := range []string{"a", "b", "c"} {
		entry, _ := k.entryTimeouts(timeouts, 1, name, fsapi.Ino(10+i))
		want := time.Hour
		if name == "c" {
			want = DefaultTimeout
		}
		if entry != want {
			t.Errorf("entry timeout of %s %v, want %v", name, entry, want)
		}
	}
	// A name already known still gets the long timeout.
	if entry, _ := k.entryTimeouts(timeouts, 1, "a", 10); entry != time.Hour {
		t.Errorf("entry timeout of a known name at the limit %v, want an hour", entry)
	}
}
