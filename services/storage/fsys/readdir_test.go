package fsys

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func readDirNames(entries []fsapi.DirEntry) []string {
	names := make([]string, len(entries))
	for i, d := range entries {
		names[i] = d.Name
	}
	return names
}

func TestReadDirCookies(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	file := createFile(t, e, userCaller, dir, "file", 0o644, nil)
	sub := mkdir(t, e, userCaller, dir, "sub", 0o755)
	h, err := e.OpenDir(ctx, userCaller, dir, syscall.O_RDONLY)
	mustOK(t, err)

	entries, err := e.ReadDir(ctx, userCaller, dir, h, 0, 0)
	mustOK(t, err)
	want := []fsapi.DirEntry{
		{Name: ".", Ino: dir, Mode: syscall.S_IFDIR, Cookie: 1},
		{Name: "..", Ino: fsapi.RootIno, Mode: syscall.S_IFDIR, Cookie: 2},
		{Name: "file", Ino: file, Mode: syscall.S_IFREG, Cookie: 3},
		{Name: "sub", Ino: sub, Mode: syscall.S_IFDIR, Cookie: 4},
	}
	if fmt.Sprint(entries) != fmt.Sprint(want) {
		t.Errorf("ReadDir = %+v, expected %+v", entries, want)
	}

	page, err := e.ReadDir(ctx, userCaller, dir, h, 2, 1)
	mustOK(t, err)
	if len(page) != 1 || page[0].Name != "file" {
		t.Errorf("ReadDir(cookie 2, max 1) = %v, expected [file]", readDirNames(page))
	}
	_, err = e.ReadDir(ctx, userCaller, dir, 999, 0, 0)
	wantErrno(t, err, syscall.EBADF)
	_, err = e.OpenDir(ctx, userCaller, file, syscall.O_RDONLY)
	wantErrno(t, err, syscall.ENOTDIR)
	private := mkdir(t, e, rootCaller, fsapi.RootIno, "private", 0o711)
	_, err = e.OpenDir(ctx, userCaller, private, syscall.O_RDONLY)
	wantErrno(t, err, syscall.EACCES)
	mustOK(t, e.ReleaseDir(ctx, dir, h))
	wantErrno(t, e.ReleaseDir(ctx, dir, h), syscall.EBADF)
}

// TestReadDirStableDuringChanges lists a directory one entry at a time while
// entries are added, removed and renamed between the calls: every entry that
// existed throughout appears exactly once, new ones come after the ones
// already listed, and removed ones vanish.
func TestReadDirStableDuringChanges(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	for i := range 6 {
		createFile(t, e, userCaller, dir, fmt.Sprintf("f%d", i), 0o644, nil)
	}
	h, err := e.OpenDir(ctx, userCaller, dir, syscall.O_RDONLY)
	mustOK(t, err)

	seen := map[string]int{}
	var order []string
	cookie := uint64(0)
	changes := []func(){
		func() { createFile(t, e, userCaller, dir, "new1", 0o644, nil) },
		func() { mustOK(t, e.Unlink(ctx, userCaller, dir, "f5")) },
		func() { mustOK(t, e.Unlink(ctx, userCaller, dir, "f0")) }, // already listed
		func() { mustOK(t, e.Rename(ctx, userCaller, dir, "f1", dir, "renamed", 0)) },
		func() { createFile(t, e, userCaller, dir, "new2", 0o644, nil) },
	}
	for step := 0; ; step++ {
		page, err := e.ReadDir(ctx, userCaller, dir, h, cookie, 1)
		mustOK(t, err)
		if len(page) == 0 {
			break
		}
		seen[page[0].Name]++
		order = append(order, page[0].Name)
		cookie = page[0].Cookie
		// Start changing after ".", "..", f0 and f1 were listed.
		if i := step - 3; i >= 0 && i < len(changes) {
			changes[i]()
		}
	}

	for name, count := range seen {
		if count != 1 {
			t.Errorf("%q listed %d times, expected once", name, count)
		}
	}
	for _, name := range []string{".", "..", "f0", "f1", "f2", "f3", "f4", "new1", "renamed", "new2"} {
		if seen[name] != 1 {
			t.Errorf("%q not listed; listing was %v", name, order)
		}
	}
	if seen["f5"] != 0 {
		t.Errorf("f5 was removed before it was reached but was listed: %v", order)
	}
}

func TestRenameGetsNewCookieAndExchangeKeepsIt(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	createFile(t, e, userCaller, dir, "a", 0o644, nil)
	createFile(t, e, userCaller, dir, "b", 0o644, nil)
	h, err := e.OpenDir(ctx, userCaller, dir, syscall.O_RDONLY)
	mustOK(t, err)
	cookies := func() map[string]uint64 {
		entries, err := e.ReadDir(ctx, userCaller, dir, h, dotDotCookie, 0)
		mustOK(t, err)
		m := map[string]uint64{}
		for _, d := range entries {
			m[d.Name] = d.Cookie
		}
		return m
	}
	before := cookies()

	mustOK(t, e.Rename(ctx, userCaller, dir, "a", dir, "b", fsapi.RenameExchange))
	if after := cookies(); after["a"] != before["a"] || after["b"] != before["b"] {
		t.Errorf("cookies after exchange = %v, expected unchanged %v", after, before)
	}
	mustOK(t, e.Rename(ctx, userCaller, dir, "a", dir, "c", 0))
	if after := cookies(); after["c"] <= before["b"] {
		t.Errorf("renamed entry cookie = %d, expected a new cookie above %d", after["c"], before["b"])
	}
}

func TestReadDirOfRemovedDirectory(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	h, err := e.OpenDir(ctx, userCaller, dir, syscall.O_RDONLY)
	mustOK(t, err)
	mustOK(t, e.Rmdir(ctx, userCaller, fsapi.RootIno, "d"))

	entries, err := e.ReadDir(ctx, userCaller, dir, h, 0, 0)
	mustOK(t, err)
	if len(entries) != 0 {
		t.Errorf("ReadDir of a removed directory = %v, expected nothing", readDirNames(entries))
	}
	_, err = e.Mkdir(ctx, userCaller, dir, "x", 0o755)
	wantErrno(t, err, syscall.ENOENT)
	mustOK(t, e.ReleaseDir(ctx, dir, h))
	if _, err := e.GetAttr(ctx, userCaller, dir); err != syscall.ENOENT {
		t.Errorf("removed directory after ReleaseDir: %v, expected ENOENT", err)
	}
}

// TestReadDirAfterMassRemoval removes most entries of a large directory in
// the order they were created, as rm -r does. The listing and the exported
// state must hold exactly the rest in cookie order, a listing must continue
// from the cookie of a removed entry, and removed entries must not pile up
// in memory.
func TestReadDirAfterMassRemoval(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	const total = 1000
	for i := range total {
		createFile(t, e, userCaller, dir, fmt.Sprintf("f%04d", i), 0o644, nil)
	}
	var remaining []string
	for i := range total {
		name := fmt.Sprintf("f%04d", i)
		if i%10 == 9 {
			remaining = append(remaining, name)
			continue
		}
		mustOK(t, e.Unlink(ctx, userCaller, dir, name))
	}

	h, err := e.OpenDir(ctx, userCaller, dir, syscall.O_RDONLY)
	mustOK(t, err)
	entries, err := e.ReadDir(ctx, userCaller, dir, h, dotDotCookie, 0)
	mustOK(t, err)
	if got := readDirNames(entries); fmt.Sprint(got) != fmt.Sprint(remaining) {
		t.Errorf("ReadDir after removals = %d names %v..., expected %d names %v...", len(got), got[:min(3, len(got))], len(remaining), remaining[:3])
	}
	// Cookie firstCookie+4 was f0004's, which is removed: the listing
	// continues with the next entry that is still there.
	page, err := e.ReadDir(ctx, userCaller, dir, h, firstCookie+4, 1)
	mustOK(t, err)
	if len(page) != 1 || page[0].Name != "f0009" {
		t.Errorf("ReadDir from a removed entry's cookie = %v, expected [f0009]", readDirNames(page))
	}

	st := allStates(t, e)[dir]
	if len(st.Entries) != len(remaining) {
		t.Errorf("exported state has %d entries, expected %d", len(st.Entries), len(remaining))
	}
	n, err := e.node(dir)
	mustOK(t, err)
	if len(n.order) > 2*len(n.entries)+1 {
		t.Errorf("directory keeps %d entries in order for %d names, expected at most twice as many", len(n.order), len(n.entries))
	}
}
