package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Tests of the mapping from kernel requests to fsapi calls, against memFS.

func TestCallerFromRequest(t *testing.T) {
	fs := newMemFS()
	var node principal.Principal
	node[0], node[31] = 0xb1, 0x0c
	_, dir, _ := mountForTest(t, fs, Options{Principal: node})

	statBinary, err := exec.LookPath("stat")
	if err != nil {
		t.Fatalf("find stat(1): %v", err)
	}
	cmd := exec.Command(statBinary, filepath.Join(dir, "probe-caller"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1001, Groups: []uint32{4242, 4343}}}
	output, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("stat of a missing name succeeded: %s", output)
	}

	var call memCall
	found := false
	for _, c := range fs.callsOf("lookup") {
		if c.name == "probe-caller" {
			call, found = c, true
		}
	}
	if !found {
		t.Fatalf("no Lookup of probe-caller reached the file system; stat said %s", output)
	}
	if call.caller.UID != 1000 || call.caller.GID != 1001 {
		t.Errorf("caller uid:gid %d:%d, want 1000:1001", call.caller.UID, call.caller.GID)
	}
	if int(call.caller.PID) != cmd.Process.Pid {
		t.Errorf("caller pid %d, want stat's %d", call.caller.PID, cmd.Process.Pid)
	}
	if !slices.Contains(call.caller.Groups, 4242) || !slices.Contains(call.caller.Groups, 4343) {
		t.Errorf("caller groups %v, want 4242 and 4343", call.caller.Groups)
	}
	if call.caller.Principal != node {
		t.Errorf("caller principal %v, want the mount's %v", call.caller.Principal, node)
	}
}

func TestErrorMapping(t *testing.T) {
	fs := newMemFS()
	fs.failNames["wrapped"] = fmt.Errorf("layer below: %w", syscall.EXDEV)
	fs.failNames["plain"] = errors.New("disk on fire")
	fs.failNames["canceled"] = fmt.Errorf("waiting: %w", context.Canceled)
	_, dir, logs := mountForTest(t, fs, Options{})

	var st unix.Stat_t
	for _, c := range []struct {
		name string
		want syscall.Errno
	}{
		{"wrapped", unix.EXDEV},
		{"plain", unix.EIO},
		{"canceled", unix.EINTR},
		{"missing", unix.ENOENT},
	} {
		err := unix.Lstat(filepath.Join(dir, c.name), &st)
		if !errors.Is(err, c.want) {
			t.Errorf("lstat %s: %v, want %v", c.name, err, c.want)
		}
	}

	log := logs.String()
	if !strings.Contains(log, "disk on fire") || !strings.Contains(log, "op=lookup") || !strings.Contains(log, "ino=1") {
		t.Errorf("log lacks a line with the error, op=lookup and ino=1:\n%s", log)
	}
	if strings.Contains(log, "layer below") {
		t.Errorf("an errno error was logged; only errors without an errno should be:\n%s", log)
	}
}

func TestRenameFlagsMapping(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	for _, name := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// RENAME_NOREPLACE onto an existing name never reaches the file
	// system: the kernel rejects it with EEXIST when its dentry cache contains the
	// target.
	for _, c := range []struct {
		flags  uint
		target string
		want   uint32
	}{
		{0, "c", 0},
		{unix.RENAME_NOREPLACE, "free", fsapi.RenameNoReplace},
		{unix.RENAME_EXCHANGE, "c", fsapi.RenameExchange},
	} {
		// Each case moves b away; put it back for the next one.
		if err := os.WriteFile(filepath.Join(dir, "b"), []byte("b"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(dir, "b"), unix.AT_FDCWD, filepath.Join(dir, c.target), c.flags)
		if err != nil {
			t.Errorf("renameat2 flags %#x: %v", c.flags, err)
		}
		call, ok := fs.lastCall("rename")
		if !ok {
			t.Fatalf("renameat2 flags %#x reached no Rename", c.flags)
		}
		if call.flags != c.want || call.name != "b>"+c.target {
			t.Errorf("renameat2 flags %#x: Rename got %q flags %#x, want %q flags %#x", c.flags, call.name, call.flags, "b>"+c.target, c.want)
		}
	}
}

func TestSetAttrMapping(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	p := filepath.Join(dir, "file")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	now := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, now, 0); err != nil {
		t.Fatal(err)
	}
	call, _ := fs.lastCall("setattr")
	if call.set.Valid&(fsapi.SetAtimeNow|fsapi.SetMtimeNow) != fsapi.SetAtimeNow|fsapi.SetMtimeNow || call.set.Valid&(fsapi.SetAtime|fsapi.SetMtime) != 0 {
		t.Errorf("utimensat(UTIME_NOW) sent Valid %#x, want SetAtimeNow|SetMtimeNow only", call.set.Valid)
	}

	explicit := []unix.Timespec{{Sec: 1_000_000_000, Nsec: 1}, {Sec: -5, Nsec: 999_999_999}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, explicit, 0); err != nil {
		t.Fatal(err)
	}
	call, _ = fs.lastCall("setattr")
	if call.set.Valid&(fsapi.SetAtime|fsapi.SetMtime) != fsapi.SetAtime|fsapi.SetMtime || call.set.Valid&(fsapi.SetAtimeNow|fsapi.SetMtimeNow) != 0 {
		t.Errorf("utimensat with times sent Valid %#x, want SetAtime|SetMtime only", call.set.Valid)
	}
	if call.set.Atime != 1_000_000_000_000_000_001 || call.set.Mtime != -4_000_000_001 {
		t.Errorf("utimensat with times sent atime %d mtime %d, want 1000000000000000001 and -4000000001", call.set.Atime, call.set.Mtime)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mtim != explicit[1] {
		t.Errorf("stat mtime %v, want %v", st.Mtim, explicit[1])
	}

	if err := f.Truncate(5); err != nil {
		t.Fatal(err)
	}
	call, _ = fs.lastCall("setattr")
	if call.set.Valid != fsapi.SetSize || call.set.Size != 5 {
		t.Errorf("ftruncate sent Valid %#x size %d, want SetSize and 5", call.set.Valid, call.set.Size)
	}
	if call.set.Handle == 0 {
		t.Errorf("ftruncate sent no handle")
	}

	if err := unix.Chmod(p, 0o4751); err != nil {
		t.Fatal(err)
	}
	call, _ = fs.lastCall("setattr")
	if call.set.Valid != fsapi.SetMode || call.set.Mode != 0o4751 {
		t.Errorf("chmod sent Valid %#x mode %o, want SetMode and 04751", call.set.Valid, call.set.Mode)
	}
}

func TestFsyncMapping(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if err := unix.Fsync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if call, ok := fs.lastCall("fsync"); !ok || call.wait {
		t.Errorf("fsync reached Fsync %v with datasync %v, want datasync false", ok, call.wait)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if call, ok := fs.lastCall("fsync"); !ok || !call.wait {
		t.Errorf("fdatasync reached Fsync %v with datasync %v, want datasync true", ok, call.wait)
	}

	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Errorf("syncfs: %v", err)
	}
	if _, ok := fs.lastCall("syncfs"); ok {
		t.Errorf("syncfs reached SyncFS; the package documentation says that Linux does not send it")
	}
}

func TestLockMapping(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	fd := f.Fd()

	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 10, Len: 0}
	if err := unix.FcntlFlock(fd, unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	setlk, _ := fs.lastCall("setlk")
	want := fsapi.Lock{Start: 10, End: math.MaxUint64, Type: unix.F_WRLCK, PID: uint32(os.Getpid())}
	if setlk.lock != want || setlk.wait {
		t.Errorf("F_SETLK to EOF sent %+v wait %v, want %+v wait false", setlk.lock, setlk.wait, want)
	}

	lk = unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 0, Len: 5}
	if err := unix.FcntlFlock(fd, unix.F_SETLKW, &lk); err != nil {
		t.Fatal(err)
	}
	setlkw, _ := fs.lastCall("setlk")
	if setlkw.lock.Start != 0 || setlkw.lock.End != 4 || !setlkw.wait {
		t.Errorf("F_SETLKW [0, +5) sent %+v wait %v, want [0, 4] wait true", setlkw.lock, setlkw.wait)
	}

	for _, reply := range []fsapi.Lock{
		{Start: 5, End: math.MaxUint64, Type: unix.F_RDLCK, PID: uint32(os.Getpid())},
		{Start: 5, End: 14, Type: unix.F_WRLCK, PID: uint32(os.Getpid())},
	} {
		fs.mu.Lock()
		fs.lockReply = reply
		fs.mu.Unlock()
		lk = unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
		if err := unix.FcntlFlock(fd, unix.F_GETLK, &lk); err != nil {
			t.Fatal(err)
		}
		wantLen := int64(0)
		if reply.End != math.MaxUint64 {
			wantLen = int64(reply.End-reply.Start) + 1
		}
		if lk.Type != int16(reply.Type) || lk.Start != 5 || lk.Len != wantLen || lk.Pid != int32(reply.PID) {
			t.Errorf("F_GETLK with reply %+v returned %+v, want start 5 len %d", reply, lk, wantLen)
		}
	}

	for _, c := range []struct {
		operation     int
		wantOperation uint32
		wantWait      bool
	}{
		{unix.LOCK_EX | unix.LOCK_NB, unix.LOCK_EX, false},
		{unix.LOCK_SH, unix.LOCK_SH, true},
		{unix.LOCK_UN, unix.LOCK_UN, false},
		{unix.LOCK_SH | unix.LOCK_NB, unix.LOCK_SH, false},
	} {
		if err := unix.Flock(int(fd), c.operation); err != nil {
			t.Fatalf("flock %#x: %v", c.operation, err)
		}
		call, ok := fs.lastCall("flock")
		if !ok || call.flags != c.wantOperation || (c.wantOperation != unix.LOCK_UN && call.wait != c.wantWait) {
			t.Errorf("flock %#x sent operation %#x wait %v, want operation %#x wait %v", c.operation, call.flags, call.wait, c.wantOperation, c.wantWait)
		}
	}

	flocksBefore := len(fs.callsOf("flock"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	flush, ok := fs.lastCall("flush")
	if !ok || flush.owner != setlk.owner {
		t.Errorf("close sent Flush %v with lock owner %#x, want the owner of the POSIX locks %#x", ok, flush.owner, setlk.owner)
	}
	// RELEASE is asynchronous: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := fs.lastCall("release"); ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	flocks := fs.callsOf("flock")
	if len(flocks) != flocksBefore+1 || flocks[len(flocks)-1].flags != unix.LOCK_UN {
		t.Errorf("the last close of a file with a flock lock sent %d Flock calls, want one LOCK_UN", len(flocks)-flocksBefore)
	}
}

func TestXattrMapping(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	p := filepath.Join(dir, "file")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := unix.Setxattr(p, "user.kept", []byte("AAAA"), unix.XATTR_CREATE); err != nil {
		t.Fatal(err)
	}
	if call, _ := fs.lastCall("setxattr"); call.flags != fsapi.XattrCreate {
		t.Errorf("XATTR_CREATE sent flags %#x, want %#x", call.flags, fsapi.XattrCreate)
	}
	// More requests reuse go-fuse's buffers; the stored value must not change.
	for i := range 20 {
		if err := unix.Setxattr(p, fmt.Sprintf("user.other%d", i), bytes.Repeat([]byte{'B'}, 4), 0); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{'C'}, 100), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 16)
	n, err := unix.Getxattr(p, "user.kept", buf)
	if err != nil || string(buf[:n]) != "AAAA" {
		t.Errorf("getxattr after other requests: %q, %v; want %q", buf[:n], err, "AAAA")
	}

	size, err := unix.Getxattr(p, "user.kept", nil)
	if err != nil || size != 4 {
		t.Errorf("getxattr size probe: %d, %v; want 4", size, err)
	}
	if _, err := unix.Getxattr(p, "user.kept", make([]byte, 2)); !errors.Is(err, unix.ERANGE) {
		t.Errorf("getxattr with a short buffer: %v, want ERANGE", err)
	}
	wantList := len("user.kept") + 1
	for i := range 20 {
		wantList += len(fmt.Sprintf("user.other%d", i)) + 1
	}
	size, err = unix.Listxattr(p, nil)
	if err != nil || size != wantList {
		t.Errorf("listxattr size probe: %d, %v; want %d", size, err, wantList)
	}
}

func TestWriteSplitAtMaxWrite(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}

	largest, total := 0, 0
	for _, c := range fs.callsOf("write") {
		largest = max(largest, c.size)
		total += c.size
	}
	if total != len(data) {
		t.Errorf("Write calls carried %d bytes, want %d", total, len(data))
	}
	if largest != fsapi.MaxWrite {
		t.Errorf("largest Write carried %d bytes, want fsapi.MaxWrite (%d)", largest, fsapi.MaxWrite)
	}
	got, err := os.ReadFile(filepath.Join(dir, "file"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
}

func TestReadDirMapping(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	const count = 500
	for i := range count {
		name := fmt.Sprintf("entry-%03d-%s", i, strings.Repeat("n", i%40))
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Name()] {
			t.Errorf("entry %q listed twice", e.Name())
		}
		seen[e.Name()] = true
	}
	if len(seen) != count {
		t.Errorf("listed %d entries, want %d", len(seen), count)
	}
	calls := fs.callsOf("readdir")
	if len(calls) < 2 {
		t.Errorf("%d ReadDir calls for %d entries, want several", len(calls), count)
	}
	for _, c := range calls {
		if c.lock.End == 0 {
			t.Errorf("ReadDir asked for at most 0 entries")
		}
	}
}

func TestStatfsMapping(t *testing.T) {
	_, dir, _ := mountForTest(t, newMemFS(), Options{})
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 1000 || st.Bfree != 500 || st.Bavail != 400 || st.Files != 100 || st.Ffree != 50 || st.Bsize != 4096 || st.Namelen != 255 {
		t.Errorf("statfs %+v, want memFS's values", st)
	}
}

func TestAccessMapping(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	p := filepath.Join(dir, "file")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Access(p, unix.W_OK|unix.R_OK); err != nil {
		t.Fatal(err)
	}
	// With default_permissions the kernel checks access(2) from the
	// attributes itself and sends no ACCESS request.
	if call, ok := fs.lastCall("access"); ok {
		t.Errorf("access(R_OK|W_OK) reached the file system with mask %#x; the kernel should answer it under default_permissions", call.flags)
	}
	if err := unix.Access(p, unix.X_OK); !errors.Is(err, unix.EACCES) {
		t.Errorf("access(X_OK) on a 0644 file: %v, want EACCES", err)
	}
}

func TestInvalidateInode(t *testing.T) {
	fs := newMemFS()
	srv, dir, _ := mountForTest(t, fs, Options{AttrTimeout: time.Hour, EntryTimeout: time.Hour})
	p := filepath.Join(dir, "file")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := statSize(t, p)
	if st.Size != 10 {
		t.Fatalf("size %d, want 10", st.Size)
	}

	fs.setSizeBehindKernel(fsapi.RootIno, "file", 99)
	if got := statSize(t, p).Size; got != 10 {
		t.Fatalf("size %d right after the change behind the kernel's back; the test expects the kernel to serve the cached 10", got)
	}
	if err := srv.InvalidateInode(fsapi.Ino(st.Ino)); err != nil {
		t.Fatalf("InvalidateInode: %v", err)
	}
	if got := statSize(t, p).Size; got != 99 {
		t.Errorf("size %d after InvalidateInode, want 99", got)
	}

	if err := srv.InvalidateInode(fsapi.Ino(1 << 40)); err != nil {
		t.Errorf("InvalidateInode of an inode the kernel does not know: %v, want nil", err)
	}
}

func TestInvalidateEntry(t *testing.T) {
	fs := newMemFS()
	srv, dir, _ := mountForTest(t, fs, Options{AttrTimeout: time.Hour, EntryTimeout: time.Hour})
	p := filepath.Join(dir, "file")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	statSize(t, p)

	fs.removeBehindKernel(fsapi.RootIno, "file")
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatalf("stat right after the removal behind the kernel's back: %v; the test expects the cached entry", err)
	}
	if err := srv.InvalidateEntry(fsapi.RootIno, "file"); err != nil {
		t.Fatalf("InvalidateEntry: %v", err)
	}
	if err := unix.Stat(p, &st); !errors.Is(err, unix.ENOENT) {
		t.Errorf("stat after InvalidateEntry: %v, want ENOENT", err)
	}
}

func statSize(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFlushOnlyForLockedFiles(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})

	plain, err := os.Create(filepath.Join(dir, "plain"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if calls := fs.callsOf("flush"); len(calls) != 0 {
		t.Errorf("close of a file without locks sent %d Flush calls to the file system, want none", len(calls))
	}

	locked, err := os.Create(filepath.Join(dir, "locked"))
	if err != nil {
		t.Fatal(err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(locked.Fd(), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	setlk, _ := fs.lastCall("setlk")
	if err := locked.Close(); err != nil {
		t.Fatal(err)
	}
	flush, ok := fs.lastCall("flush")
	if !ok {
		t.Fatal("close of a file with a POSIX lock sent no Flush to the file system")
	}
	if flush.owner != setlk.owner {
		t.Errorf("Flush carried lock owner %#x, want the lock's owner %#x", flush.owner, setlk.owner)
	}
}
