package fsys

import (
	"slices"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// damagedCheckpoint returns a checkpoint of /d (a directory holding /d/sub
// and /d/f) and /g (a file), with the states of the named inodes left out
// as damaged.
func damagedCheckpoint(t *testing.T, damagedNames ...string) (*Checkpoint, map[string]fsapi.Ino, []DamagedInode, []*InodeState) {
	t.Helper()
	e, _ := newTestEngine(t)
	inos := map[string]fsapi.Ino{}
	inos["d"] = mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	inos["sub"] = mkdir(t, e, userCaller, inos["d"], "sub", 0o755)
	inos["f"] = createFile(t, e, userCaller, inos["d"], "f", 0o644, []byte("f"))
	inos["g"] = createFile(t, e, userCaller, fsapi.RootIno, "g", 0o644, []byte("g"))
	_, err := e.Link(ctx, userCaller, inos["f"], fsapi.RootIno, "f-link")
	mustOK(t, err)

	cp := e.Checkpoint()
	var damaged []DamagedInode
	var states []*InodeState
	for _, st := range cp.Inodes {
		isDamaged := false
		for _, name := range damagedNames {
			isDamaged = isDamaged || inos[name] == st.Ino
		}
		if isDamaged {
			damaged = append(damaged, DamagedInode{Ino: st.Ino, BlockID: st.BlockID, Reason: "test damage"})
			continue
		}
		states = append(states, st)
	}
	return cp, inos, damaged, states
}

func TestLoadFromDamagedFile(t *testing.T) {
	cp, inos, damaged, states := damagedCheckpoint(t, "g")
	e := NewEmpty(Options{Logger: testLogger(t)})
	mustOK(t, e.LoadFrom(cp.Header, states, damaged...))

	attr, err := e.Lookup(ctx, userCaller, fsapi.RootIno, "g")
	mustOK(t, err)
	if attr.Ino != inos["g"] || attr.Mode&syscall.S_IFMT != syscall.S_IFREG || attr.Nlink != 1 {
		t.Errorf("placeholder attributes = %+v, expected a regular file with one link", attr)
	}
	_, err = e.GetAttr(ctx, userCaller, inos["g"])
	wantErrno(t, err, syscall.EIO)
	path, err := e.PathOf(inos["g"])
	mustOK(t, err)
	if path != "/g" {
		t.Errorf("PathOf the damaged file = %q, expected /g", path)
	}
	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "g"))
	if freed := e.FreedInodes(); len(freed) != 1 || freed[0].Ino != inos["g"] {
		t.Errorf("freed = %+v, expected the damaged file, so that its block is deleted", freed)
	}
}

func TestLoadFromDamagedDirectory(t *testing.T) {
	cp, inos, damaged, states := damagedCheckpoint(t, "d")
	e := NewEmpty(Options{Logger: testLogger(t)})
	mustOK(t, e.LoadFrom(cp.Header, states, damaged...))

	_, err := e.Lookup(ctx, userCaller, inos["d"], "f")
	wantErrno(t, err, syscall.EIO)
	_, err = e.Mkdir(ctx, userCaller, inos["d"], "new", 0o755)
	wantErrno(t, err, syscall.EIO)
	wantErrno(t, e.Rmdir(ctx, userCaller, fsapi.RootIno, "d"), syscall.EIO)
	// The hard-linked file keeps its link in the root and its content.
	if got := readAll(t, e, lookup(t, e, fsapi.RootIno, "f-link").Ino); string(got) != "f" {
		t.Errorf("content through the surviving link = %q, expected f", got)
	}
	if _, err := e.GetAttr(ctx, userCaller, inos["sub"]); err != nil {
		t.Errorf("GetAttr of a directory under the damaged one: %v, expected its state", err)
	}
	mustOK(t, e.Rename(ctx, rootCaller, fsapi.RootIno, "d", fsapi.RootIno, "broken", 0))
	if dirty := e.DirtyInodes(); slices.Contains(dirty, inos["d"]) {
		t.Errorf("dirty = %v, expected the damaged directory left out of checkpoints", dirty)
	}
}

func TestLoadFromRejectsDamagedDuplicate(t *testing.T) {
	cp, _, _, states := damagedCheckpoint(t)
	e := NewEmpty(Options{Logger: discardLogger()})
	err := e.LoadFrom(cp.Header, states, DamagedInode{Ino: fsapi.RootIno, Reason: "also loaded"})
	wantErrno(t, err, syscall.EINVAL)
}

func TestReplaySkipsEntriesOnDamage(t *testing.T) {
	e, j := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	file := createFile(t, e, userCaller, dir, "f", 0o644, []byte("one"))
	before := len(j.snapshot())
	h, err := e.Open(ctx, userCaller, file, syscall.O_WRONLY)
	mustOK(t, err)
	_, err = e.Write(ctx, userCaller, file, h, 0, []byte("two"))
	mustOK(t, err)
	sub := mkdir(t, e, userCaller, dir, "sub", 0o755)
	createFile(t, e, userCaller, sub, "x", 0o644, nil)
	other := createFile(t, e, userCaller, fsapi.RootIno, "other", 0o644, []byte("ok"))
	entries := j.snapshot()

	// Replay with the write record damaged: the file becomes damaged.
	replayed := NewEmpty(Options{Logger: testLogger(t)})
	for _, ent := range entries[:before] {
		mustOK(t, replayed.Apply(ent.seq, ent.payload))
	}
	damagedRecord := entries[before]
	mustOK(t, replayed.SkipDamaged(damagedRecord.seq, damagedRecord.tags))
	for _, ent := range entries[before+1:] {
		if err := replayed.Apply(ent.seq, ent.payload); err != nil {
			t.Fatalf("Apply %d after a damaged record: %v", ent.seq, err)
		}
	}
	_, err = replayed.GetAttr(ctx, userCaller, file)
	wantErrno(t, err, syscall.EIO)
	if got := readAll(t, replayed, other); string(got) != "ok" {
		t.Errorf("undamaged file = %q, expected ok", got)
	}
	if got := lookup(t, replayed, sub, "x"); got.Ino == 0 {
		t.Errorf("entries after the damaged record were not applied")
	}
	if replayed.Header() != e.Header() {
		t.Errorf("header = %+v, expected %+v", replayed.Header(), e.Header())
	}

	// A damaged directory record makes the later entries in it lost.
	lostDir := NewEmpty(Options{Logger: testLogger(t)})
	for _, ent := range entries {
		if ent.seq == entries[before+1].seq { // the mkdir of sub
			mustOK(t, lostDir.SkipDamaged(ent.seq, ent.tags))
			continue
		}
		if err := lostDir.Apply(ent.seq, ent.payload); err != nil {
			t.Fatalf("Apply %d after a lost directory: %v", ent.seq, err)
		}
	}
	if _, err := lostDir.GetAttr(ctx, userCaller, sub); err != syscall.ENOENT {
		t.Errorf("lost directory: %v, expected ENOENT", err)
	}
	_, err = lostDir.GetAttr(ctx, userCaller, dir)
	wantErrno(t, err, syscall.EIO)
	if got := readAll(t, lostDir, other); string(got) != "ok" {
		t.Errorf("undamaged file after a lost directory = %q, expected ok", got)
	}
}

func TestReplayStillFailsWithoutDamage(t *testing.T) {
	e, j := newTestEngine(t)
	mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	entries := j.snapshot()
	replayed := replay(t, entries)

	last := entries[len(entries)-1]
	err := replayed.Apply(last.seq+1, last.payload)
	wantErrno(t, err, syscall.EEXIST)
}
