package fsys

import (
	"bytes"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestAccessClasses(t *testing.T) {
	e, _ := newTestEngine(t)
	// Owner 1000 may only read, group 100 may only write, others may only
	// execute: each caller gets exactly its class, with no fallback.
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o421, nil)
	_, err := e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetGID, GID: 100})
	mustOK(t, err)
	groupMember := &fsapi.Caller{UID: 2000, GID: 2000, Groups: []uint32{100}}
	noExec := createFile(t, e, userCaller, fsapi.RootIno, "noexec", 0o644, nil)

	tests := []struct {
		name   string
		caller *fsapi.Caller
		ino    fsapi.Ino
		mask   uint32
		want   syscall.Errno
	}{
		{"owner reads", userCaller, file, mayRead, 0},
		{"owner cannot write", userCaller, file, mayWrite, syscall.EACCES},
		{"supplementary group writes", groupMember, file, mayWrite, 0},
		{"group cannot read", groupMember, file, mayRead, syscall.EACCES},
		{"other executes", otherCaller, file, mayExec, 0},
		{"other cannot read", otherCaller, file, mayRead, syscall.EACCES},
		{"root reads anything", rootCaller, file, mayRead | mayWrite, 0},
		{"root executes with some x bit", rootCaller, file, mayExec, 0},
		{"root cannot execute without x bits", rootCaller, noExec, mayExec, syscall.EACCES},
		{"root searches any directory", rootCaller, fsapi.RootIno, mayExec, 0},
		{"existence", otherCaller, file, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Access(ctx, tt.caller, tt.ino, tt.mask)
			if tt.want == 0 {
				mustOK(t, err)
				return
			}
			wantErrno(t, err, tt.want)
		})
	}
	wantErrno(t, e.Access(ctx, userCaller, file, 8), syscall.EINVAL)
	wantErrno(t, e.Access(ctx, userCaller, 999, 0), syscall.ENOENT)
}

func TestSetAttrPermissions(t *testing.T) {
	e, _ := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o666, nil)
	tests := []struct {
		name   string
		caller *fsapi.Caller
		in     fsapi.SetAttrIn
		want   syscall.Errno
	}{
		{"owner chmod", userCaller, fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o666}, 0},
		{"other chmod", otherCaller, fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o777}, syscall.EPERM},
		{"owner gives file away", userCaller, fsapi.SetAttrIn{Valid: fsapi.SetUID, UID: 1001}, syscall.EPERM},
		{"owner chown to self", userCaller, fsapi.SetAttrIn{Valid: fsapi.SetUID, UID: 1000}, 0},
		{"owner chgrp to own group", userCaller, fsapi.SetAttrIn{Valid: fsapi.SetGID, GID: 100}, 0},
		{"owner chgrp to foreign group", userCaller, fsapi.SetAttrIn{Valid: fsapi.SetGID, GID: 7}, syscall.EPERM},
		{"other chgrp", otherCaller, fsapi.SetAttrIn{Valid: fsapi.SetGID, GID: 1001}, syscall.EPERM},
		{"root chown", rootCaller, fsapi.SetAttrIn{Valid: fsapi.SetUID | fsapi.SetGID, UID: 1000, GID: 1000}, 0},
		{"other explicit times", otherCaller, fsapi.SetAttrIn{Valid: fsapi.SetMtime, Mtime: 5}, syscall.EPERM},
		{"other with write permission sets now", otherCaller, fsapi.SetAttrIn{Valid: fsapi.SetAtimeNow | fsapi.SetMtimeNow}, 0},
		{"other truncates with write permission", otherCaller, fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 3}, 0},
		{"unknown valid bit", userCaller, fsapi.SetAttrIn{Valid: 1 << 20}, syscall.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.SetAttr(ctx, tt.caller, file, &tt.in)
			if tt.want == 0 {
				mustOK(t, err)
				return
			}
			wantErrno(t, err, tt.want)
		})
	}

	private := createFile(t, e, userCaller, fsapi.RootIno, "private", 0o600, nil)
	_, err := e.SetAttr(ctx, otherCaller, private, &fsapi.SetAttrIn{Valid: fsapi.SetMtimeNow})
	wantErrno(t, err, syscall.EACCES)
	_, err = e.SetAttr(ctx, otherCaller, private, &fsapi.SetAttrIn{Valid: fsapi.SetSize})
	wantErrno(t, err, syscall.EACCES)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	_, err = e.SetAttr(ctx, userCaller, dir, &fsapi.SetAttrIn{Valid: fsapi.SetSize})
	wantErrno(t, err, syscall.EISDIR)
}

func TestSetAttrValues(t *testing.T) {
	e, j := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, nil)
	before := getattr(t, e, file)

	attr, err := e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{
		Valid: fsapi.SetMode | fsapi.SetAtime | fsapi.SetMtime, Mode: syscall.S_IFDIR | 0o640, Atime: 11, Mtime: 22,
	})
	mustOK(t, err)
	if attr.Mode != syscall.S_IFREG|0o640 {
		t.Errorf("mode = %#o, expected a regular file 0640 (the type cannot change)", attr.Mode)
	}
	if attr.Atime != 11 || attr.Mtime != 22 || attr.Ctime <= before.Ctime {
		t.Errorf("times = %d/%d/%d, expected atime 11, mtime 22 and a new ctime", attr.Atime, attr.Mtime, attr.Ctime)
	}
	if ent := j.lastEntry(t); ent.Flags != AttrMode|AttrAtime|AttrMtime || ent.Ctime != attr.Ctime {
		t.Errorf("entry flags %#x ctime %d, expected mode|atime|mtime and ctime %d", ent.Flags, ent.Ctime, attr.Ctime)
	}

	attr, err = e.SetAttr(ctx, rootCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetCtime | fsapi.SetAtimeNow, Ctime: 33})
	mustOK(t, err)
	if attr.Ctime != 33 || attr.Atime == 11 {
		t.Errorf("ctime %d atime %d, expected ctime 33 and atime set to now", attr.Ctime, attr.Atime)
	}
	compareEngines(t, "replay of setattr", e, replay(t, j.snapshot()))
}

func TestChownClearsSetuid(t *testing.T) {
	e, _ := newTestEngine(t)
	prog := createFile(t, e, rootCaller, fsapi.RootIno, "prog", 0o6755, nil)
	noGroupExec := createFile(t, e, rootCaller, fsapi.RootIno, "locking", 0o2644, nil)
	dir := mkdir(t, e, rootCaller, fsapi.RootIno, "d", 0o755)
	_, err := e.SetAttr(ctx, rootCaller, dir, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o2755})
	mustOK(t, err)

	for _, ino := range []fsapi.Ino{prog, noGroupExec, dir} {
		_, err := e.SetAttr(ctx, rootCaller, ino, &fsapi.SetAttrIn{Valid: fsapi.SetUID, UID: 1000})
		mustOK(t, err)
	}
	if mode := getattr(t, e, prog).Mode & 0o7777; mode != 0o755 {
		t.Errorf("prog mode after chown = %#o, expected 0755", mode)
	}
	if mode := getattr(t, e, noGroupExec).Mode & 0o7777; mode != 0o2644 {
		t.Errorf("setgid without group exec after chown = %#o, expected 02644 (kept)", mode)
	}
	if mode := getattr(t, e, dir).Mode & 0o7777; mode != 0o2755 {
		t.Errorf("directory after chown = %#o, expected 02755 (kept)", mode)
	}
}

func TestChmodClearsSetgidOutsideGroup(t *testing.T) {
	e, _ := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, nil)
	_, err := e.SetAttr(ctx, rootCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetGID, GID: 7})
	mustOK(t, err)

	attr, err := e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o2755})
	mustOK(t, err)
	if attr.Mode&syscall.S_ISGID != 0 {
		t.Errorf("mode = %#o, expected setgid dropped for an owner outside group 7", attr.Mode)
	}
}

func TestFtruncateUsesHandle(t *testing.T) {
	e, _ := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, []byte("content"))
	ino, h, err := e.Create(ctx, userCaller, fsapi.RootIno, "f", 0, syscall.O_RDWR)
	mustOK(t, err)
	_, err = e.SetAttr(ctx, rootCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o444})
	mustOK(t, err)

	_, err = e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 2, Handle: h})
	mustOK(t, err)
	if size := getattr(t, e, ino.Ino).Size; size != 2 {
		t.Errorf("size = %d, expected 2", size)
	}
	readOnly, err := e.Open(ctx, userCaller, file, syscall.O_RDONLY)
	mustOK(t, err)
	_, err = e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 1, Handle: readOnly})
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 1, Handle: 777})
	wantErrno(t, err, syscall.EBADF)
}

// TestOpenForExecNeedsExecute checks the OPEN that execve(2) sends: it needs
// execute permission and no read permission, and root needs some x bit.
func TestOpenForExecNeedsExecute(t *testing.T) {
	e, _ := newTestEngine(t)
	runByAll := createFile(t, e, rootCaller, fsapi.RootIno, "run-by-all", 0o711, nil)
	runByOwner := createFile(t, e, rootCaller, fsapi.RootIno, "run-by-owner", 0o744, nil)
	plain := createFile(t, e, rootCaller, fsapi.RootIno, "plain", 0o644, nil)

	for _, tc := range []struct {
		name     string
		c        *fsapi.Caller
		ino      fsapi.Ino
		expected syscall.Errno
	}{
		{"others run a 0711 program", userCaller, runByAll, 0},
		{"others may not run a 0744 program", userCaller, runByOwner, syscall.EACCES},
		{"root runs what has an x bit", rootCaller, runByOwner, 0},
		{"root may not run what has no x bit", rootCaller, plain, syscall.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := e.Open(ctx, tc.c, tc.ino, syscall.O_RDONLY|fsapi.OpenForExec)
			if tc.expected != 0 {
				wantErrno(t, err, tc.expected)
				return
			}
			mustOK(t, err)
			mustOK(t, e.Release(ctx, tc.ino, h))
		})
	}
	// A plain read-only open of the 0711 program still needs read
	// permission.
	_, err := e.Open(ctx, userCaller, runByAll, syscall.O_RDONLY)
	wantErrno(t, err, syscall.EACCES)
	// Create, which opens an existing file, ignores the flag: execve(2)
	// never creates.
	_, _, err = e.Create(ctx, userCaller, fsapi.RootIno, "run-by-all", 0o644, syscall.O_RDONLY|fsapi.OpenForExec)
	wantErrno(t, err, syscall.EACCES)
}

// TestWriterClearsSetID checks the mode change that Linux sends over FUSE
// before a write by someone other than the owner: a writer may clear the
// set-user-ID and set-group-ID bits and nothing else.
func TestWriterClearsSetID(t *testing.T) {
	e, _ := newTestEngine(t)
	shared := createFile(t, e, rootCaller, fsapi.RootIno, "shared", 0o6777, nil)
	readOnly := createFile(t, e, rootCaller, fsapi.RootIno, "read-only", 0o4755, nil)
	setMode := func(ino fsapi.Ino, mode uint32) error {
		_, err := e.SetAttr(ctx, userCaller, ino, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: mode})
		return err
	}
	wantErrno(t, setMode(shared, 0o6777), syscall.EPERM)  // no change is still a chmod
	wantErrno(t, setMode(shared, 0o2775), syscall.EPERM)  // clears more than set-ID bits
	wantErrno(t, setMode(readOnly, 0o755), syscall.EPERM) // no write permission
	sharedDir := mkdir(t, e, rootCaller, fsapi.RootIno, "shared-dir", 0o777)
	_, err := e.SetAttr(ctx, rootCaller, sharedDir, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o2777})
	mustOK(t, err)
	wantErrno(t, setMode(sharedDir, 0o777), syscall.EPERM) // a directory's set-group-ID bit
	// What Linux sends before a write to a 06777 file by another user.
	mustOK(t, setMode(shared, 0o777))
	if got := getattr(t, e, shared).Mode & 0o7777; got != 0o777 {
		t.Errorf("mode after clearing both set-ID bits %#o, expected 0o777", got)
	}
}

// TestChangesDropCapability checks that every change of a file's data,
// size or owner removes its file capabilities, by root or another user, as
// Linux does, and that the removal is journaled so that a replay agrees.
func TestChangesDropCapability(t *testing.T) {
	e, j := newTestEngine(t)
	capability := []byte{1, 2, 3, 4}
	withCapability := func(name string) fsapi.Ino {
		t.Helper()
		ino := createFile(t, e, rootCaller, fsapi.RootIno, name, 0o777, []byte("program"))
		mustOK(t, e.SetXattr(ctx, rootCaller, ino, fsapi.CapabilityXattr, capability, 0))
		return ino
	}
	open := func(ino fsapi.Ino, c *fsapi.Caller, flags uint32) fsapi.HandleID {
		t.Helper()
		h, err := e.Open(ctx, c, ino, flags)
		mustOK(t, err)
		t.Cleanup(func() { _ = e.Release(ctx, ino, h) })
		return h
	}
	source := createFile(t, e, rootCaller, fsapi.RootIno, "source", 0o644, []byte("data"))
	sourceHandle := open(source, rootCaller, syscall.O_RDONLY)
	changes := []struct {
		name   string
		change func(ino fsapi.Ino) error
	}{
		{"write by root", func(ino fsapi.Ino) error {
			_, err := e.Write(ctx, rootCaller, ino, open(ino, rootCaller, syscall.O_WRONLY), 0, []byte("x"))
			return err
		}},
		{"write by another user", func(ino fsapi.Ino) error {
			_, err := e.Write(ctx, userCaller, ino, open(ino, userCaller, syscall.O_WRONLY), 0, []byte("x"))
			return err
		}},
		{"truncate", func(ino fsapi.Ino) error {
			_, err := e.SetAttr(ctx, rootCaller, ino, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 1})
			return err
		}},
		{"open with O_TRUNC", func(ino fsapi.Ino) error {
			open(ino, userCaller, syscall.O_WRONLY|syscall.O_TRUNC)
			return nil
		}},
		{"fallocate", func(ino fsapi.Ino) error {
			return e.Fallocate(ctx, rootCaller, ino, open(ino, rootCaller, syscall.O_WRONLY), 0, 0, 8192)
		}},
		{"copy_file_range", func(ino fsapi.Ino) error {
			_, err := e.CopyFileRange(ctx, rootCaller, source, sourceHandle, 0, ino, open(ino, rootCaller, syscall.O_WRONLY), 0, 4, 0)
			return err
		}},
		{"chown to the same owner", func(ino fsapi.Ino) error {
			_, err := e.SetAttr(ctx, rootCaller, ino, &fsapi.SetAttrIn{Valid: fsapi.SetUID, UID: 0})
			return err
		}},
		{"chgrp", func(ino fsapi.Ino) error {
			_, err := e.SetAttr(ctx, rootCaller, ino, &fsapi.SetAttrIn{Valid: fsapi.SetGID, GID: 100})
			return err
		}},
	}
	for i, tc := range changes {
		ino := withCapability(fmt.Sprintf("program%d", i))
		mustOK(t, tc.change(ino))
		if _, err := e.GetXattr(ctx, rootCaller, ino, fsapi.CapabilityXattr); !errors.Is(err, syscall.ENODATA) {
			t.Errorf("%s: capability after the change: %v, expected ENODATA", tc.name, err)
		}
	}

	// A change of mode or times keeps it, as on Linux.
	modeChanged := withCapability("mode-changed")
	_, err := e.SetAttr(ctx, rootCaller, modeChanged, &fsapi.SetAttrIn{Valid: fsapi.SetMode | fsapi.SetMtimeNow, Mode: 0o755})
	mustOK(t, err)
	got, err := e.GetXattr(ctx, rootCaller, modeChanged, fsapi.CapabilityXattr)
	mustOK(t, err)
	if !bytes.Equal(got, capability) {
		t.Errorf("capability after chmod and touch: %x, expected %x", got, capability)
	}

	compareEngines(t, "replay after the changes", e, replay(t, j.snapshot()))
}
