package posixsuite

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Subtests on directory reading.
var dirTests = []subtest{
	{"readdir all entries", testReaddirAll},
	{"readdir while changing", testReaddirWhileChanging},
	{"readdir rewind", testReaddirRewind},
}

// dirent is one entry that getdents(2) returned.
type dirent struct {
	name string
	ino  uint64
	typ  uint8
}

// getdents reads one batch of entries with a buffer of bufSize bytes. A
// small buffer forces many calls and thus many continuations from an
// offset.
func getdents(t *testing.T, fd int, bufSize int) []dirent {
	t.Helper()
	buf := make([]byte, bufSize)
	n, err := unix.Getdents(fd, buf)
	wantOK(t, "getdents", err)
	var entries []dirent
	for off := 0; off < n; {
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		rec := buf[off:]
		reclen := int(rec[16]) | int(rec[17])<<8
		ino := uint64(0)
		for i := 7; i >= 0; i-- {
			ino = ino<<8 | uint64(rec[i])
		}
		name := rec[19:reclen]
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		entries = append(entries, dirent{name: string(name), ino: ino, typ: rec[18]})
		off += reclen
	}
	return entries
}

func readAll(t *testing.T, fd int, bufSize int) []dirent {
	t.Helper()
	var all []dirent
	for {
		batch := getdents(t, fd, bufSize)
		if len(batch) == 0 {
			return all
		}
		all = append(all, batch...)
	}
}

// makeNames creates count files named prefix-NNN with names of varying
// length, so that batches do not line up with name boundaries.
func makeNames(t *testing.T, e *env, dir, prefix string, count int) []string {
	t.Helper()
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%03d-%s", prefix, i, strings.Repeat("x", i%23))
		e.writeFile(t, dir+"/"+names[i], nil, 0o644)
	}
	return names
}

func testReaddirAll(t *testing.T, e *env) {
	e.mkdir(t, "dir", 0o755)
	names := makeNames(t, e, "dir", "file", 300)
	e.mkdir(t, "dir/subdir", 0o755)
	wantOK(t, "symlink", unix.Symlink("x", e.path("dir/link")))

	fd := open(t, e.path("dir"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	entries := readAll(t, fd, 512)

	seen := make(map[string]int)
	for _, entry := range entries {
		seen[entry.name]++
	}
	for name, count := range seen {
		if count != 1 {
			t.Errorf("entry %q listed %d times", name, count)
		}
	}
	for _, name := range append(names, ".", "..", "subdir", "link") {
		if seen[name] == 0 {
			t.Errorf("entry %q missing", name)
		}
	}
	if len(seen) != len(names)+4 {
		t.Errorf("%d distinct entries, want %d", len(seen), len(names)+4)
	}

	// d_ino and d_type agree with lstat.
	for _, entry := range entries {
		if entry.name == ".." {
			continue // the parent, checked elsewhere
		}
		st := lstat(t, e.path("dir/"+entry.name))
		if entry.ino != st.Ino {
			t.Errorf("entry %q: d_ino %d, lstat inode %d", entry.name, entry.ino, st.Ino)
		}
		if want := uint8((st.Mode & unix.S_IFMT) >> 12); entry.typ != want {
			t.Errorf("entry %q: d_type %d, want %d", entry.name, entry.typ, want)
		}
	}
}

// testReaddirWhileChanging removes and creates entries between getdents
// calls, and checks that the entries that existed throughout are listed
// exactly once and that no entry is listed twice.
func testReaddirWhileChanging(t *testing.T, e *env) {
	e.mkdir(t, "dir", 0o755)
	keep := makeNames(t, e, "dir", "keep", 200)
	removed := makeNames(t, e, "dir", "gone", 100)

	fd := open(t, e.path("dir"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	first := getdents(t, fd, 1024)
	if len(first) == 0 {
		t.Fatalf("first getdents returned nothing")
	}

	for _, name := range removed {
		wantOK(t, "unlink", unix.Unlink(e.path("dir/"+name)))
	}
	added := makeNames(t, e, "dir", "added", 100)
	// Renames remove one entry and add another in the same step.
	for i := 0; i < 50; i += 5 {
		wantOK(t, "rename", unix.Rename(e.path("dir/"+keep[i]), e.path("dir/renamed-"+keep[i])))
	}

	entries := append(first, readAll(t, fd, 1024)...)
	seen := make(map[string]int)
	for _, entry := range entries {
		seen[entry.name]++
	}
	for name, count := range seen {
		if count != 1 {
			t.Errorf("entry %q listed %d times", name, count)
		}
	}
	for i, name := range keep {
		if i < 50 && i%5 == 0 {
			continue // renamed during the listing: either name may show
		}
		if seen[name] == 0 {
			t.Errorf("entry %q, which existed throughout, missing", name)
		}
	}
	for _, name := range []string{".", ".."} {
		if seen[name] == 0 {
			t.Errorf("entry %q missing", name)
		}
	}
	t.Logf("%d entries listed, %d of the %d added during the listing", len(entries), countPresent(seen, added), len(added))
}

func countPresent(seen map[string]int, names []string) int {
	n := 0
	for _, name := range names {
		if seen[name] > 0 {
			n++
		}
	}
	return n
}

func testReaddirRewind(t *testing.T, e *env) {
	e.mkdir(t, "dir", 0o755)
	names := makeNames(t, e, "dir", "file", 50)
	fd := open(t, e.path("dir"), unix.O_RDONLY|unix.O_DIRECTORY, 0)

	first := readAll(t, fd, 1024)
	_, err := unix.Seek(fd, 0, unix.SEEK_SET)
	wantOK(t, "rewind", err)
	e.writeFile(t, "dir/late", nil, 0o644)
	second := readAll(t, fd, 1024)

	if len(first) != len(names)+2 {
		t.Errorf("first pass listed %d entries, want %d", len(first), len(names)+2)
	}
	if len(second) != len(names)+3 {
		t.Errorf("pass after rewind listed %d entries, want %d including the file created before it", len(second), len(names)+3)
	}

	// An empty directory lists only "." and "..".
	e.mkdir(t, "empty", 0o755)
	efd := open(t, e.path("empty"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if got := readAll(t, efd, 1024); len(got) != 2 {
		t.Errorf("empty directory listed %d entries, want 2", len(got))
	}
}
