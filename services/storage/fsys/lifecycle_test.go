package fsys

import (
	"errors"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestUnlinkedOpenFileLivesUntilRelease(t *testing.T) {
	e, j := newTestEngine(t)
	ino, h1 := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	h2, err := e.Open(ctx, userCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)
	blockID, _ := e.BlockID(ino)

	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "f"))
	if ent := j.lastEntry(t); ent.Op != OpUnlink || ent.Free {
		t.Errorf("unlink entry free = %v, expected false while handles are open", ent.Free)
	}
	if _, err := e.Lookup(ctx, userCaller, fsapi.RootIno, "f"); err != syscall.ENOENT {
		t.Errorf("Lookup after unlink: %v, expected ENOENT", err)
	}
	if attr := getattr(t, e, ino); attr.Nlink != 0 {
		t.Errorf("nlink of the unlinked open file = %d, expected 0", attr.Nlink)
	}
	_, err = e.Write(ctx, userCaller, ino, h1, 0, []byte("still here"))
	mustOK(t, err)
	buf := make([]byte, 32)
	n, err := e.Read(ctx, userCaller, ino, h2, 0, buf)
	mustOK(t, err)
	if string(buf[:n]) != "still here" {
		t.Errorf("Read of the unlinked file = %q, expected still here", buf[:n])
	}
	if _, err := e.PathOf(ino); err != syscall.ENOENT {
		t.Errorf("PathOf an unlinked file: %v, expected ENOENT", err)
	}

	entries := len(j.snapshot())
	mustOK(t, e.Release(ctx, ino, h1))
	if got := len(j.snapshot()); got != entries {
		t.Errorf("the first Release made %d entries, expected none while a handle is open", got-entries)
	}
	mustOK(t, e.Release(ctx, ino, h2))
	if ent := j.lastEntry(t); ent.Op != OpReclaim || ent.Ino != ino {
		t.Errorf("last entry = %s of node %d, expected a reclaim of node %d", ent.Op, ent.Ino, ino)
	}
	if _, err := e.GetAttr(ctx, userCaller, ino); err != syscall.ENOENT {
		t.Errorf("GetAttr after reclaim: %v, expected ENOENT", err)
	}
	freed := e.FreedInodes()
	if len(freed) != 1 || freed[0].Ino != ino || freed[0].BlockID != blockID {
		t.Errorf("FreedInodes = %+v, expected node %d with its block id", freed, ino)
	}
	compareEngines(t, "replay of the lifecycle", e, replay(t, j.snapshot()))
}

func TestUnlinkFreesClosedFile(t *testing.T) {
	e, j := newTestEngine(t)
	ino := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, make([]byte, 3*SectorSize))
	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "f"))

	if ent := j.lastEntry(t); !ent.Free {
		t.Errorf("unlink entry of a closed file has free = false, expected true")
	}
	if _, err := e.GetAttr(ctx, userCaller, ino); err != syscall.ENOENT {
		t.Errorf("GetAttr after unlink: %v, expected ENOENT", err)
	}
	if e.usedBytes != 0 {
		t.Errorf("used bytes = %d after freeing the only file, expected 0", e.usedBytes)
	}
}

func TestReclaimOrphansAfterRestart(t *testing.T) {
	e, j := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "f"))
	_ = h // the daemon stops with the handle open

	restarted := replay(t, j.snapshot())
	restarted.journal = j
	if _, err := restarted.GetAttr(ctx, userCaller, ino); err != nil {
		t.Fatalf("orphan after replay: %v, expected it to exist", err)
	}
	mustOK(t, restarted.ReclaimOrphans())
	if _, err := restarted.GetAttr(ctx, userCaller, ino); err != syscall.ENOENT {
		t.Errorf("orphan after ReclaimOrphans: %v, expected ENOENT", err)
	}
	if ent := j.lastEntry(t); ent.Op != OpReclaim || ent.Ino != ino {
		t.Errorf("last entry = %s of node %d, expected a reclaim of node %d", ent.Op, ent.Ino, ino)
	}
}

func TestReclaimRejectsLinkedInode(t *testing.T) {
	e, j := newTestEngine(t)
	ino := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, nil)
	ent := &Entry{Op: OpReclaim, Ino: ino}
	err := e.Apply(uint64(len(j.snapshot())+1), EncodeEntry(ent))
	wantErrno(t, err, syscall.EBUSY)
}

func TestDamagedInode(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	file := createFile(t, e, userCaller, dir, "f", 0o644, []byte("x"))
	h, err := e.Open(ctx, userCaller, file, syscall.O_RDWR)
	mustOK(t, err)

	e.MarkDamaged(file, "signature check failed")
	_, err = e.GetAttr(ctx, userCaller, file)
	wantErrno(t, err, syscall.EIO)
	_, err = e.Read(ctx, userCaller, file, h, 0, make([]byte, 1))
	wantErrno(t, err, syscall.EIO)
	_, err = e.Write(ctx, userCaller, file, h, 0, []byte("y"))
	wantErrno(t, err, syscall.EIO)
	_, err = e.Open(ctx, userCaller, file, syscall.O_RDONLY)
	wantErrno(t, err, syscall.EIO)
	_, err = e.GetXattr(ctx, userCaller, file, "user.x")
	wantErrno(t, err, syscall.EIO)

	// The name still resolves, so the user can remove the damaged file.
	if _, err := e.Lookup(ctx, userCaller, dir, "f"); err != nil {
		t.Errorf("Lookup of a damaged file: %v, expected success", err)
	}
	mustOK(t, e.Rename(ctx, userCaller, dir, "f", dir, "g", 0))
	mustOK(t, e.Unlink(ctx, userCaller, dir, "g"))

	e.MarkDamaged(dir, "bad block")
	_, err = e.Mkdir(ctx, userCaller, dir, "x", 0o755)
	wantErrno(t, err, syscall.EIO)
}

func TestJournalFailureChangesNothing(t *testing.T) {
	e, j := newTestEngine(t)
	j.fail = errors.New("disk full")
	_, err := e.Mkdir(ctx, userCaller, fsapi.RootIno, "d", 0o755)
	wantErrno(t, err, syscall.EIO)

	j.fail = nil
	if _, err := e.Lookup(ctx, userCaller, fsapi.RootIno, "d"); err != syscall.ENOENT {
		t.Errorf("Lookup after a failed append: %v, expected ENOENT", err)
	}
	mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	compareEngines(t, "replay after a failed append", e, replay(t, j.snapshot()))
}

func TestNilCallerRejected(t *testing.T) {
	e, _ := newTestEngine(t)
	_, err := e.Lookup(ctx, nil, fsapi.RootIno, "x")
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.Mkdir(ctx, nil, fsapi.RootIno, "x", 0o755)
	wantErrno(t, err, syscall.EINVAL)
}
