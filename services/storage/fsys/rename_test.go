package fsys

import (
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// renameTree is /a (dir) with a/sub (dir) and a/file, /b (dir) with
// b/full (dir holding x) and b/empty (dir), and /f (file).
type renameTree struct {
	a, sub, aFile, b, full, empty, f fsapi.Ino
}

func newRenameTree(t *testing.T, e *Engine) renameTree {
	t.Helper()
	var tr renameTree
	tr.a = mkdir(t, e, userCaller, fsapi.RootIno, "a", 0o755)
	tr.sub = mkdir(t, e, userCaller, tr.a, "sub", 0o755)
	tr.aFile = createFile(t, e, userCaller, tr.a, "file", 0o644, []byte("a-file"))
	tr.b = mkdir(t, e, userCaller, fsapi.RootIno, "b", 0o755)
	tr.full = mkdir(t, e, userCaller, tr.b, "full", 0o755)
	createFile(t, e, userCaller, tr.full, "x", 0o644, nil)
	tr.empty = mkdir(t, e, userCaller, tr.b, "empty", 0o755)
	tr.f = createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, []byte("f"))
	return tr
}

func wantNlink(t *testing.T, e *Engine, label string, ino fsapi.Ino, want uint32) {
	t.Helper()
	if got := getattr(t, e, ino).Nlink; got != want {
		t.Errorf("%s: nlink = %d, expected %d", label, got, want)
	}
}

func TestRenameErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	tr := newRenameTree(t, e)
	tests := []struct {
		name      string
		oldParent fsapi.Ino
		oldName   string
		newParent fsapi.Ino
		newName   string
		flags     uint32
		want      syscall.Errno
	}{
		{"missing source", fsapi.RootIno, "missing", tr.b, "x", 0, syscall.ENOENT},
		{"file over directory", fsapi.RootIno, "f", tr.b, "empty", 0, syscall.EISDIR},
		{"directory over file", tr.a, "sub", fsapi.RootIno, "f", 0, syscall.ENOTDIR},
		{"directory over non-empty directory", tr.a, "sub", tr.b, "full", 0, syscall.ENOTEMPTY},
		{"directory into itself", fsapi.RootIno, "a", tr.a, "inside", 0, syscall.EINVAL},
		{"directory into its subdirectory", fsapi.RootIno, "a", tr.sub, "inside", 0, syscall.EINVAL},
		{"exchange parent with its child", fsapi.RootIno, "a", tr.a, "sub", fsapi.RenameExchange, syscall.EINVAL},
		{"dot source", tr.a, ".", tr.b, "x", 0, syscall.EINVAL},
		{"dotdot target", tr.a, "file", tr.b, "..", 0, syscall.EINVAL},
		{"noreplace onto existing", fsapi.RootIno, "f", tr.a, "file", fsapi.RenameNoReplace, syscall.EEXIST},
		{"exchange with missing target", fsapi.RootIno, "f", tr.a, "missing", fsapi.RenameExchange, syscall.ENOENT},
		{"both flags", fsapi.RootIno, "f", tr.a, "file", fsapi.RenameNoReplace | fsapi.RenameExchange, syscall.EINVAL},
		{"unknown flag", fsapi.RootIno, "f", tr.a, "g", 1 << 2, syscall.EINVAL},
		{"target parent is a file", fsapi.RootIno, "a", tr.f, "x", 0, syscall.ENOTDIR},
		{"ancestor over its descendant's parent", tr.a, "sub", fsapi.RootIno, "a", 0, syscall.ENOTEMPTY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Rename(ctx, userCaller, tt.oldParent, tt.oldName, tt.newParent, tt.newName, tt.flags)
			wantErrno(t, err, tt.want)
		})
	}
	wantErrno(t, e.Rename(ctx, otherCaller, tr.a, "file", tr.a, "g", 0), syscall.EACCES)
	// Moving someone else's directory to another parent needs write
	// permission on it, because its ".." changes.
	open := mkdir(t, e, rootCaller, fsapi.RootIno, "open", 0o777)
	mkdir(t, e, rootCaller, open, "rootdir", 0o755)
	wantErrno(t, e.Rename(ctx, userCaller, open, "rootdir", tr.a, "moved", 0), syscall.EACCES)
}

func TestRenameFileToNewName(t *testing.T) {
	e, j := newTestEngine(t)
	tr := newRenameTree(t, e)

	mustOK(t, e.Rename(ctx, userCaller, tr.a, "file", tr.b, "moved", 0))
	if got := lookup(t, e, tr.b, "moved").Ino; got != tr.aFile {
		t.Errorf("b/moved = node %d, expected %d", got, tr.aFile)
	}
	if _, err := e.Lookup(ctx, userCaller, tr.a, "file"); err != syscall.ENOENT {
		t.Errorf("a/file after rename: %v, expected ENOENT", err)
	}
	wantNlink(t, e, "moved file", tr.aFile, 1)
	ent := j.lastEntry(t)
	if ent.Op != OpRename || ent.Ino != tr.aFile || ent.Target != 0 || ent.Free {
		t.Errorf("entry = %+v, expected a rename of node %d with no target", ent, tr.aFile)
	}
}

func TestRenameReplacesFile(t *testing.T) {
	e, j := newTestEngine(t)
	tr := newRenameTree(t, e)

	mustOK(t, e.Rename(ctx, userCaller, fsapi.RootIno, "f", tr.a, "file", 0))
	if got := readAll(t, e, lookup(t, e, tr.a, "file").Ino); string(got) != "f" {
		t.Errorf("a/file = %q, expected the content of /f", got)
	}
	if _, err := e.GetAttr(ctx, userCaller, tr.aFile); err != syscall.ENOENT {
		t.Errorf("replaced file: %v, expected ENOENT (freed)", err)
	}
	if ent := j.lastEntry(t); ent.Target != tr.aFile || !ent.Free {
		t.Errorf("entry target %d free %v, expected target %d freed", ent.Target, ent.Free, tr.aFile)
	}
}

func TestRenameReplacedFileWithLinksSurvives(t *testing.T) {
	e, _ := newTestEngine(t)
	tr := newRenameTree(t, e)
	_, err := e.Link(ctx, userCaller, tr.aFile, tr.b, "other-link")
	mustOK(t, err)

	mustOK(t, e.Rename(ctx, userCaller, fsapi.RootIno, "f", tr.a, "file", 0))
	wantNlink(t, e, "replaced file with a second link", tr.aFile, 1)
}

func TestRenameDirectoryOverEmptyDirectory(t *testing.T) {
	e, _ := newTestEngine(t)
	tr := newRenameTree(t, e)

	mustOK(t, e.Rename(ctx, userCaller, tr.a, "sub", tr.b, "empty", 0))
	if got := lookup(t, e, tr.b, "empty").Ino; got != tr.sub {
		t.Errorf("b/empty = node %d, expected the moved directory %d", got, tr.sub)
	}
	if got := lookup(t, e, tr.sub, "..").Ino; got != tr.b {
		t.Errorf("moved directory's .. = %d, expected %d", got, tr.b)
	}
	wantNlink(t, e, "a after losing sub", tr.a, 2)
	wantNlink(t, e, "b after replacing empty", tr.b, 4)
	if _, err := e.GetAttr(ctx, userCaller, tr.empty); err != syscall.ENOENT {
		t.Errorf("replaced directory: %v, expected ENOENT (freed)", err)
	}
}

func TestRenameDirectoryAcrossParents(t *testing.T) {
	e, _ := newTestEngine(t)
	tr := newRenameTree(t, e)

	mustOK(t, e.Rename(ctx, userCaller, tr.a, "sub", tr.b, "sub", fsapi.RenameNoReplace))
	wantNlink(t, e, "a", tr.a, 2)
	wantNlink(t, e, "b", tr.b, 5)
	path, err := e.PathOf(tr.sub)
	mustOK(t, err)
	if path != "/b/sub" {
		t.Errorf("PathOf = %q, expected /b/sub", path)
	}
}

func TestRenameExchangeFileAndDirectory(t *testing.T) {
	e, j := newTestEngine(t)
	tr := newRenameTree(t, e)

	mustOK(t, e.Rename(ctx, userCaller, fsapi.RootIno, "f", tr.b, "full", fsapi.RenameExchange))
	if got := lookup(t, e, fsapi.RootIno, "f").Ino; got != tr.full {
		t.Errorf("/f = node %d, expected the directory %d", got, tr.full)
	}
	if got := lookup(t, e, tr.b, "full").Ino; got != tr.f {
		t.Errorf("/b/full = node %d, expected the file %d", got, tr.f)
	}
	if got := lookup(t, e, tr.full, "..").Ino; got != fsapi.RootIno {
		t.Errorf("exchanged directory's .. = %d, expected the root", got)
	}
	wantNlink(t, e, "b after its subdirectory left", tr.b, 3)
	wantNlink(t, e, "exchanged file", tr.f, 1)
	wantNlink(t, e, "exchanged directory", tr.full, 2)
	if ent := j.lastEntry(t); ent.Target != tr.full || ent.Free {
		t.Errorf("entry target %d free %v, expected target %d not freed", ent.Target, ent.Free, tr.full)
	}
	rootLinks := getattr(t, e, fsapi.RootIno).Nlink
	// a, b and the exchanged directory.
	if rootLinks != 5 {
		t.Errorf("root nlink = %d, expected 5", rootLinks)
	}
}

func TestRenameExchangeDirectories(t *testing.T) {
	e, _ := newTestEngine(t)
	tr := newRenameTree(t, e)

	mustOK(t, e.Rename(ctx, userCaller, tr.a, "sub", tr.b, "full", fsapi.RenameExchange))
	wantNlink(t, e, "a", tr.a, 3)
	wantNlink(t, e, "b", tr.b, 4)
	if got := lookup(t, e, tr.full, "..").Ino; got != tr.a {
		t.Errorf("full's .. = %d, expected a (%d)", got, tr.a)
	}
}

func TestRenameOntoSameInodeIsNoop(t *testing.T) {
	e, j := newTestEngine(t)
	tr := newRenameTree(t, e)
	_, err := e.Link(ctx, userCaller, tr.f, tr.a, "same")
	mustOK(t, err)
	entries := len(j.snapshot())

	mustOK(t, e.Rename(ctx, userCaller, fsapi.RootIno, "f", tr.a, "same", 0))
	mustOK(t, e.Rename(ctx, userCaller, fsapi.RootIno, "f", fsapi.RootIno, "f", 0))
	if got := len(j.snapshot()); got != entries {
		t.Errorf("journal grew from %d to %d entries, expected no entry for renames onto the same inode", entries, got)
	}
	wantNlink(t, e, "hard-linked file", tr.f, 2)
}

func TestRenameReplayMatches(t *testing.T) {
	e, j := newTestEngine(t)
	tr := newRenameTree(t, e)
	mustOK(t, e.Rename(ctx, userCaller, tr.a, "sub", tr.b, "empty", 0))
	mustOK(t, e.Rename(ctx, userCaller, fsapi.RootIno, "f", tr.b, "full", fsapi.RenameExchange))
	mustOK(t, e.Rename(ctx, userCaller, tr.a, "file", tr.a, "renamed", fsapi.RenameNoReplace))

	compareEngines(t, "replay of renames", e, replay(t, j.snapshot()))
}
