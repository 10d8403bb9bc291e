package proto

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// step is the outcome of one call in exercise.
type step struct {
	name    string
	results []any
	errno   syscall.Errno
}

// exercise calls every fsapi.FS method at least once, some of them so that
// they fail, and returns what each call returned. Run once through a
// Client and once directly on a memFS, it must return the same.
func exercise(t *testing.T, fs fsapi.FS, c *fsapi.Caller) []step {
	ctx := context.Background()
	var steps []step
	record := func(name string, err error, results ...any) {
		t.Helper()
		if err != nil && errnoOf(err) == 0 {
			t.Fatalf("%s: error without an errno: %v", name, err)
		}
		if err != nil {
			results = nil
		}
		steps = append(steps, step{name: name, results: results, errno: errnoOf(err)})
	}

	dir, err := fs.Mkdir(ctx, c, fsapi.RootIno, "etc", 0o750)
	record("mkdir", err, dir)
	file, h, err := fs.Create(ctx, c, dir.Ino, "hosts", 0o640, syscall.O_RDWR|syscall.O_CREAT)
	record("create", err, file, h)
	n, err := fs.Write(ctx, c, file.Ino, h, 3, []byte("127.0.0.1 localhost\n"))
	record("write", err, n)
	buf := make([]byte, 64)
	n, err = fs.Read(ctx, c, file.Ino, h, 0, buf)
	record("read", err, n, bytes.Clone(buf[:n]))
	attr, err := fs.Lookup(ctx, c, dir.Ino, "hosts")
	record("lookup", err, attr)
	attr, err = fs.Lookup(ctx, c, dir.Ino, "missing")
	record("lookup missing", err, attr)
	attr, err = fs.GetAttr(ctx, c, file.Ino)
	record("getattr", err, attr)
	attr, err = fs.SetAttr(ctx, c, file.Ino, &fsapi.SetAttrIn{
		Valid: fsapi.SetMode | fsapi.SetUID | fsapi.SetGID | fsapi.SetSize | fsapi.SetAtime | fsapi.SetMtime | fsapi.SetCtime,
		Mode:  0o600, UID: 7, GID: 8, Size: 10, Atime: 11, Mtime: -12, Ctime: 13, Handle: h,
	})
	record("setattr", err, attr)
	record("access denied", fs.Access(ctx, c, file.Ino, 4))
	record("access", fs.Access(ctx, c, dir.Ino, 7))

	fifo, err := fs.Mknod(ctx, c, dir.Ino, "fifo", syscall.S_IFIFO|0o644, 0x0801)
	record("mknod", err, fifo)
	link, err := fs.Symlink(ctx, c, dir.Ino, "link", "hosts")
	record("symlink", err, link)
	target, err := fs.Readlink(ctx, c, link.Ino)
	record("readlink", err, target)
	_, err = fs.Readlink(ctx, c, file.Ino)
	record("readlink of a file", err)
	attr, err = fs.Link(ctx, c, file.Ino, fsapi.RootIno, "hosts.hard")
	record("link", err, attr)
	record("rename", fs.Rename(ctx, c, dir.Ino, "fifo", fsapi.RootIno, "fifo2", fsapi.RenameNoReplace))
	record("rename onto an existing name", fs.Rename(ctx, c, fsapi.RootIno, "fifo2", dir.Ino, "hosts", fsapi.RenameNoReplace))

	record("fsync", fs.Fsync(ctx, c, file.Ino, h, true))
	record("flush", fs.Flush(ctx, c, file.Ino, h, 0xabc))
	record("fallocate", fs.Fallocate(ctx, c, file.Ino, h, 0, 100, 50))
	record("fallocate with a mode", fs.Fallocate(ctx, c, file.Ino, h, 3, 0, 1))
	off, err := fs.Lseek(ctx, c, file.Ino, h, 5, seekData)
	record("lseek", err, off)
	copyAttr, h2, err := fs.Create(ctx, c, dir.Ino, "copy", 0o600, syscall.O_WRONLY)
	record("create copy", err, copyAttr, h2)
	copied, err := fs.CopyFileRange(ctx, c, file.Ino, h, 0, copyAttr.Ino, h2, 4, 6, 0)
	record("copy_file_range", err, copied)

	hd, err := fs.OpenDir(ctx, c, dir.Ino, syscall.O_DIRECTORY)
	record("opendir", err, hd)
	entries, err := fs.ReadDir(ctx, c, dir.Ino, hd, 0, 2)
	record("readdir first", err, entries)
	if len(entries) == 2 {
		entries, err = fs.ReadDir(ctx, c, dir.Ino, hd, entries[1].Cookie, 100)
		record("readdir rest", err, entries)
	}
	record("fsyncdir", fs.FsyncDir(ctx, c, dir.Ino, hd))
	record("releasedir", fs.ReleaseDir(ctx, dir.Ino, hd))

	st, err := fs.StatFS(ctx, c, fsapi.RootIno)
	record("statfs", err, st)
	record("syncfs", fs.SyncFS(ctx, c))

	record("setxattr", fs.SetXattr(ctx, c, file.Ino, "user.a", []byte{0, 1, 2}, fsapi.XattrCreate))
	record("setxattr second", fs.SetXattr(ctx, c, file.Ino, "user.b", []byte("bee"), 0))
	record("setxattr create existing", fs.SetXattr(ctx, c, file.Ino, "user.a", []byte{9}, fsapi.XattrCreate))
	value, err := fs.GetXattr(ctx, c, file.Ino, "user.a")
	record("getxattr", err, value)
	names, err := fs.ListXattr(ctx, c, file.Ino)
	record("listxattr", err, names)
	record("removexattr", fs.RemoveXattr(ctx, c, file.Ino, "user.a"))
	_, err = fs.GetXattr(ctx, c, file.Ino, "user.a")
	record("getxattr removed", err)

	h3, err := fs.Open(ctx, c, file.Ino, syscall.O_RDONLY)
	record("open", err, h3)
	write := fsapi.Lock{Start: 0, End: 99, Type: syscall.F_WRLCK, PID: c.PID}
	read := fsapi.Lock{Start: 50, End: math.MaxUint64, Type: syscall.F_RDLCK, PID: c.PID + 1}
	lk, err := fs.GetLk(ctx, c, file.Ino, h3, 5, read)
	record("getlk free", err, lk)
	record("setlk", fs.SetLk(ctx, c, file.Ino, h, 1, write, false))
	lk, err = fs.GetLk(ctx, c, file.Ino, h3, 5, read)
	record("getlk conflict", err, lk)
	record("setlk conflict", fs.SetLk(ctx, c, file.Ino, h3, 5, read, false))
	record("flock", fs.Flock(ctx, c, file.Ino, h, syscall.LOCK_EX, false))
	record("flock conflict", fs.Flock(ctx, c, file.Ino, h3, syscall.LOCK_SH, false))
	record("flock unlock", fs.Flock(ctx, c, file.Ino, h, syscall.LOCK_UN, false))

	record("unlink", fs.Unlink(ctx, c, dir.Ino, "link"))
	record("unlink a directory", fs.Unlink(ctx, c, fsapi.RootIno, "etc"))
	record("rmdir a file", fs.Rmdir(ctx, c, dir.Ino, "hosts"))
	record("rmdir not empty", fs.Rmdir(ctx, c, fsapi.RootIno, "etc"))
	record("mkdir existing", errOnly(fs.Mkdir(ctx, c, fsapi.RootIno, "etc", 0o700)))
	record("release", fs.Release(ctx, file.Ino, h))
	record("release copy", fs.Release(ctx, copyAttr.Ino, h2))
	record("release reader", fs.Release(ctx, file.Ino, h3))
	return steps
}

func errOnly[T any](_ T, err error) error { return err }

// TestClientMatchesDirectCalls runs the same calls through a Client and
// directly on a memFS: every result, and every argument that reaches the
// file system, must be the same.
func TestClientMatchesDirectCalls(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{TrustCallers: trustAll})
	client := dial(t, srv.path)
	caller := sampleCaller

	viaClient := exercise(t, client, &caller)
	direct := newMemFS()
	viaDirect := exercise(t, direct, &caller)

	if len(viaClient) != len(viaDirect) {
		t.Fatalf("%d steps through the client, %d direct", len(viaClient), len(viaDirect))
	}
	for i := range viaClient {
		if !reflect.DeepEqual(viaClient[i], viaDirect[i]) {
			t.Errorf("step %q\nthrough the client %+v\n            direct %+v", viaDirect[i].name, viaClient[i], viaDirect[i])
		}
	}

	got, want := srv.fs.allCalls(), direct.allCalls()
	if len(got) != len(want) {
		t.Fatalf("file system saw %d calls through the client, %d direct", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("call %d (%s) arguments\nthrough the client %+v\n            direct %+v", i, want[i].Op, got[i], want[i])
		}
	}

	seen := make(map[Op]bool)
	for _, r := range got {
		seen[r.Op] = true
	}
	for op := Op(1); op < OpInterrupt; op++ {
		if !seen[op] {
			t.Errorf("exercise never called %s", op)
		}
	}

	// Guard against a script whose results are all zero or all errors.
	wantErrnos := map[string]syscall.Errno{
		"lookup missing":               syscall.ENOENT,
		"access denied":                syscall.EACCES,
		"rename onto an existing name": syscall.EEXIST,
		"rmdir not empty":              syscall.ENOTEMPTY,
		"rmdir a file":                 syscall.ENOTDIR,
		"unlink a directory":           syscall.EISDIR,
		"getxattr removed":             syscall.ENODATA,
		"setlk conflict":               syscall.EAGAIN,
		"readlink of a file":           syscall.EINVAL,
		"fallocate with a mode":        syscall.EOPNOTSUPP,
		"setxattr create existing":     syscall.EEXIST,
		"flock conflict":               syscall.EWOULDBLOCK,
		"mkdir existing":               syscall.EEXIST,
	}
	for _, s := range viaClient {
		if want, ok := wantErrnos[s.name]; ok {
			if s.errno != want {
				t.Errorf("step %q: errno %v, expected %v", s.name, s.errno, want)
			}
		} else if s.errno != 0 {
			t.Errorf("step %q failed with %v", s.name, s.errno)
		}
		if s.name == "read" && !bytes.Equal(s.results[1].([]byte), []byte("\x00\x00\x00127.0.0.1 localhost\n")) {
			t.Errorf("read returned %q", s.results[1])
		}
	}
}

func TestClientErrnosMatchErrorsIs(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}

	dir, err := client.Mkdir(ctx, c, fsapi.RootIno, "d", 0o755)
	if err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	file, _, err := client.Create(ctx, c, dir.Ino, "f", 0o644, 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	cases := []struct {
		name string
		err  error
		want syscall.Errno
		op   string
	}{
		{"ENOENT", errOnly(client.Lookup(ctx, c, fsapi.RootIno, "missing")), syscall.ENOENT, "lookup"},
		{"EEXIST", errOnly(client.Mkdir(ctx, c, fsapi.RootIno, "d", 0o755)), syscall.EEXIST, "mkdir"},
		{"ENOTDIR", errOnly(client.Lookup(ctx, c, file.Ino, "x")), syscall.ENOTDIR, "lookup"},
		{"ENOTEMPTY", client.Rmdir(ctx, c, fsapi.RootIno, "d"), syscall.ENOTEMPTY, "rmdir"},
		{"EISDIR", errOnly(client.Open(ctx, c, dir.Ino, 0)), syscall.EISDIR, "open"},
		{"EACCES", client.Access(ctx, c, file.Ino, 1), syscall.EACCES, "access"},
		{"ENODATA", errOnly(client.GetXattr(ctx, c, file.Ino, "user.none")), syscall.ENODATA, "getxattr"},
		{"EBADF", errOnly(client.Read(ctx, c, file.Ino, 12345, 0, make([]byte, 1))), syscall.EBADF, "read"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Fatalf("error %v does not match %v", tc.err, tc.want)
			}
			var errno syscall.Errno
			if !errors.As(tc.err, &errno) || errno != tc.want {
				t.Errorf("errors.As gives errno %v, expected %v", errno, tc.want)
			}
			var protoErr *Error
			if !errors.As(tc.err, &protoErr) || protoErr.Op.String() != tc.op {
				t.Errorf("error %v is not an *Error of op %s", tc.err, tc.op)
			}
			if !strings.Contains(tc.err.Error(), tc.op) {
				t.Errorf("error %q does not name the op %s", tc.err, tc.op)
			}
		})
	}
}

func TestClientWriteRead1MiB(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}

	attr, h, err := client.Create(ctx, c, fsapi.RootIno, "big", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	data := make([]byte, fsapi.MaxWrite)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	n, err := client.Write(ctx, c, attr.Ino, h, 4096, data)
	if err != nil || n != len(data) {
		t.Fatalf("Write of 1 MiB = %d, %v", n, err)
	}

	dest := make([]byte, fsapi.MaxWrite)
	n, err = client.Read(ctx, c, attr.Ino, h, 4096, dest)
	if err != nil || n != len(dest) {
		t.Fatalf("Read of 1 MiB = %d, %v", n, err)
	}
	if !bytes.Equal(dest, data) {
		t.Errorf("1 MiB read back differs from what was written")
	}

	// A dest larger than MaxWrite gets a short read of MaxWrite bytes.
	larger := make([]byte, fsapi.MaxWrite+100)
	n, err = client.Read(ctx, c, attr.Ino, h, 0, larger)
	if err != nil || n != fsapi.MaxWrite {
		t.Errorf("Read into %d bytes = %d, %v; expected %d", len(larger), n, err, fsapi.MaxWrite)
	}
	reads := srv.fs.callsOf(OpRead)
	if got := reads[len(reads)-1].Size; got != fsapi.MaxWrite {
		t.Errorf("server read %d bytes for a larger dest, expected %d", got, fsapi.MaxWrite)
	}

	// Reading past the end returns 0 bytes without an error.
	n, err = client.Read(ctx, c, attr.Ino, h, 1<<30, dest)
	if err != nil || n != 0 {
		t.Errorf("Read past the end = %d, %v; expected 0, nil", n, err)
	}
}

func TestClientRejectsArgumentsAboveLimits(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}
	long := strings.Repeat("n", fsapi.MaxNameLen+1)
	manyGroups := &fsapi.Caller{Groups: make([]uint32, MaxGroups+1)}

	cases := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"name", errOnly(client.Lookup(ctx, c, fsapi.RootIno, long)), syscall.ENAMETOOLONG},
		{"new name", client.Rename(ctx, c, fsapi.RootIno, "a", fsapi.RootIno, long, 0), syscall.ENAMETOOLONG},
		{"symlink target", errOnly(client.Symlink(ctx, c, fsapi.RootIno, "l", strings.Repeat("t", fsapi.MaxSymlinkLen+1))), syscall.ENAMETOOLONG},
		{"write data", errOnly(client.Write(ctx, c, 2, 1, 0, make([]byte, fsapi.MaxWrite+1))), syscall.EINVAL},
		{"xattr name", errOnly(client.GetXattr(ctx, c, fsapi.RootIno, long)), syscall.ERANGE},
		{"xattr value", client.SetXattr(ctx, c, fsapi.RootIno, "user.x", make([]byte, fsapi.MaxXattrSize+1), 0), syscall.E2BIG},
		{"negative readdir max", errOnly(client.ReadDir(ctx, c, fsapi.RootIno, 1, 0, -1)), syscall.EINVAL},
		{"groups", errOnly(client.GetAttr(ctx, manyGroups, fsapi.RootIno)), syscall.EINVAL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Errorf("error %v does not match %v", tc.err, tc.want)
			}
		})
	}
	if calls := srv.fs.allCalls(); len(calls) != 0 {
		t.Errorf("the file system saw %d calls, expected none: %+v", len(calls), calls)
	}
	// The connection is still usable.
	if _, err := client.GetAttr(ctx, c, fsapi.RootIno); err != nil {
		t.Errorf("GetAttr after rejected requests: %v", err)
	}
}

func TestReadDirMaxIsClamped(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}

	h, err := client.OpenDir(ctx, c, fsapi.RootIno, 0)
	if err != nil {
		t.Fatalf("OpenDir: %v", err)
	}
	if _, err := client.ReadDir(ctx, c, fsapi.RootIno, h, 0, math.MaxInt); err != nil {
		t.Fatalf("ReadDir with max MaxInt: %v", err)
	}
	calls := srv.fs.callsOf(OpReadDir)
	if len(calls) != 1 || calls[0].Max != MaxDirEntries {
		t.Errorf("file system saw ReadDir calls %+v, expected one with max %d", calls, MaxDirEntries)
	}
}

func TestUntrustedPeerActsAsItself(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)

	claimed := sampleCaller // a uid, gid, pid and principal that are not ours
	if _, err := client.GetAttr(context.Background(), &claimed, fsapi.RootIno); err != nil {
		t.Fatalf("GetAttr: %v", err)
	}
	calls := srv.fs.callsOf(OpGetAttr)
	if len(calls) != 1 {
		t.Fatalf("file system saw %d GetAttr calls, expected 1", len(calls))
	}
	got := calls[0].Caller
	if got.UID != uint32(os.Getuid()) {
		t.Errorf("caller UID %d, expected the peer's %d", got.UID, os.Getuid())
	}
	if got.GID != uint32(os.Getgid()) {
		t.Errorf("caller GID %d, expected the peer's %d", got.GID, os.Getgid())
	}
	if got.PID != uint32(os.Getpid()) {
		t.Errorf("caller PID %d, expected the peer's %d", got.PID, os.Getpid())
	}
	if got.Principal != nodePrincipal {
		t.Errorf("caller principal %v, expected the server's %v", got.Principal, nodePrincipal)
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatalf("Getgroups: %v", err)
	}
	want := make([]uint32, len(groups))
	for i, g := range groups {
		want[i] = uint32(g)
	}
	slices.Sort(want)
	gotGroups := slices.Sorted(slices.Values(got.Groups))
	if !slices.Equal(gotGroups, want) {
		t.Errorf("caller groups %v, expected the peer's %v", gotGroups, want)
	}
}

func TestTrustedPeerNamesTheCaller(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{TrustCallers: trustAll})
	client := dial(t, srv.path)
	ctx := context.Background()

	named := sampleCaller
	if _, err := client.GetAttr(ctx, &named, fsapi.RootIno); err != nil {
		t.Fatalf("GetAttr: %v", err)
	}
	noPrincipal := sampleCaller
	noPrincipal.Principal = [32]byte{}
	if _, err := client.GetAttr(ctx, &noPrincipal, fsapi.RootIno); err != nil {
		t.Fatalf("GetAttr: %v", err)
	}

	calls := srv.fs.callsOf(OpGetAttr)
	if len(calls) != 2 {
		t.Fatalf("file system saw %d GetAttr calls, expected 2", len(calls))
	}
	if !reflect.DeepEqual(calls[0].Caller, sampleCaller) {
		t.Errorf("caller %+v, expected the one the peer named %+v", calls[0].Caller, sampleCaller)
	}
	want := noPrincipal
	want.Principal = nodePrincipal
	if !reflect.DeepEqual(calls[1].Caller, want) {
		t.Errorf("caller %+v, expected the named one with the server's principal %+v", calls[1].Caller, want)
	}
}

func TestTrustCallersSeesPeerCredentials(t *testing.T) {
	// The server calls TrustCallers in its own goroutine.
	var gotPID, gotUID atomic.Int64
	gotPID.Store(-1)
	gotUID.Store(-1)
	opts := ServerOptions{TrustCallers: func(cred *unix.Ucred) bool {
		gotPID.Store(int64(cred.Pid))
		gotUID.Store(int64(cred.Uid))
		return false
	}}
	srv := startServer(t, newMemFS(), opts)
	client := dial(t, srv.path)
	if _, err := client.GetAttr(context.Background(), &sampleCaller, fsapi.RootIno); err != nil {
		t.Fatalf("GetAttr: %v", err)
	}
	if gotPID.Load() != int64(os.Getpid()) || gotUID.Load() != int64(os.Getuid()) {
		t.Errorf("TrustCallers saw pid %d uid %d, expected %d %d", gotPID.Load(), gotUID.Load(), os.Getpid(), os.Getuid())
	}
}

func TestClientOpenAttr(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}

	created, h, err := client.Create(ctx, c, fsapi.RootIno, "file", 0o640, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := client.Write(ctx, c, created.Ino, h, 0, []byte("twelve bytes")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := client.Release(ctx, created.Ino, h); err != nil {
		t.Fatalf("Release: %v", err)
	}

	attr, h, err := client.OpenAttr(ctx, c, created.Ino, syscall.O_RDONLY)
	if err != nil {
		t.Fatalf("OpenAttr: %v", err)
	}
	if attr.Ino != created.Ino {
		t.Errorf("OpenAttr returned ino %d, expected %d", attr.Ino, created.Ino)
	}
	if attr.Size != 12 {
		t.Errorf("OpenAttr returned size %d, expected 12", attr.Size)
	}
	if attr.Mode != syscall.S_IFREG|0o640 {
		t.Errorf("OpenAttr returned mode %o, expected %o", attr.Mode, syscall.S_IFREG|0o640)
	}

	dest := make([]byte, 20)
	n, err := client.Read(ctx, c, attr.Ino, h, 0, dest)
	if err != nil {
		t.Fatalf("Read through the handle of OpenAttr: %v", err)
	}
	if string(dest[:n]) != "twelve bytes" {
		t.Errorf("Read through the handle of OpenAttr = %q, expected %q", dest[:n], "twelve bytes")
	}
	if err := client.Release(ctx, attr.Ino, h); err != nil {
		t.Errorf("Release of the handle of OpenAttr: %v", err)
	}

	if _, _, err := client.OpenAttr(ctx, c, 9999, syscall.O_RDONLY); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("OpenAttr of a missing inode: %v, expected ENOENT", err)
	}
}

// TestOpenForExecOnlyFromTrustedPeer checks that the server passes the
// execve(2) open flag on from a trusted peer and drops it from another,
// which could otherwise read a file that it may only run.
func TestOpenForExecOnlyFromTrustedPeer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     ServerOptions
		wantExec bool
	}{
		{"trusted", ServerOptions{TrustCallers: trustAll}, true},
		{"untrusted", ServerOptions{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, newMemFS(), tc.opts)
			client := dial(t, srv.path)
			ctx := context.Background()
			attr, h, err := client.Create(ctx, &sampleCaller, fsapi.RootIno, "program", 0o711, syscall.O_WRONLY)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if err := client.Release(ctx, attr.Ino, h); err != nil {
				t.Fatalf("Release: %v", err)
			}
			flags := uint32(syscall.O_RDONLY | fsapi.OpenForExec)
			if h, err = client.Open(ctx, &sampleCaller, attr.Ino, flags); err != nil {
				t.Fatalf("Open: %v", err)
			}
			if err := client.Release(ctx, attr.Ino, h); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if _, h, err = client.OpenAttr(ctx, &sampleCaller, attr.Ino, flags); err != nil {
				t.Fatalf("OpenAttr: %v", err)
			}
			if err := client.Release(ctx, attr.Ino, h); err != nil {
				t.Fatalf("Release: %v", err)
			}
			// Create and CreateAttrs of an existing name reach the file
			// system, which decides whether it opens the file (this one
			// refuses with EEXIST).
			if _, _, err = client.Create(ctx, &sampleCaller, fsapi.RootIno, "program", 0o711, flags); !errors.Is(err, syscall.EEXIST) {
				t.Fatalf("Create of the existing file: %v, expected EEXIST", err)
			}
			if _, _, _, err = client.CreateAttrs(ctx, &sampleCaller, fsapi.RootIno, "program", 0o711, flags); !errors.Is(err, syscall.EEXIST) {
				t.Fatalf("CreateAttrs of the existing file: %v, expected EEXIST", err)
			}
			creates := srv.fs.callsOf(OpCreate)
			if len(creates) != 3 {
				t.Fatalf("file system saw %d Create calls, expected 3 (the first, Create, and CreateAttrs's fallback)", len(creates))
			}
			for i, call := range creates[1:] {
				if got := call.Flags&fsapi.OpenForExec != 0; got != tc.wantExec {
					t.Errorf("Create call %d has flags %#x: OpenForExec set %v, expected %v", i+1, call.Flags, got, tc.wantExec)
				}
			}
			calls := srv.fs.callsOf(OpOpen)
			if len(calls) != 2 {
				t.Fatalf("file system saw %d Open calls, expected 2 (Open, and OpenAttr's fallback)", len(calls))
			}
			for i, call := range calls {
				if got := call.Flags&fsapi.OpenForExec != 0; got != tc.wantExec {
					t.Errorf("Open call %d has flags %#x: OpenForExec set %v, expected %v", i, call.Flags, got, tc.wantExec)
				}
			}
		})
	}
}

// TestClientDirAttrs checks that each fsapi.DirReporter call returns the
// attributes that the directory has right after the change, over a file
// system that is not a DirReporter itself, so the server's fallback serves
// it.
func TestClientDirAttrs(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}
	dir, err := client.Mkdir(ctx, c, fsapi.RootIno, "dir", 0o755)
	if err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	// wantDir checks a directory Attr against GetAttr of the directory.
	wantDir := func(call string, got fsapi.Attr) {
		t.Helper()
		want, err := client.GetAttr(ctx, c, dir.Ino)
		if err != nil {
			t.Fatalf("GetAttr after %s: %v", call, err)
		}
		if got != want {
			t.Errorf("%s returned directory attributes %+v, expected those of GetAttr %+v", call, got, want)
		}
	}

	file, h, dirAfter, err := client.CreateAttrs(ctx, c, dir.Ino, "file", 0o640, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("CreateAttrs: %v", err)
	}
	if file.Mode != syscall.S_IFREG|0o640 {
		t.Errorf("CreateAttrs returned file mode %o, expected %o", file.Mode, syscall.S_IFREG|0o640)
	}
	wantDir("CreateAttrs", dirAfter)
	if err := client.Release(ctx, file.Ino, h); err != nil {
		t.Fatalf("Release of the handle of CreateAttrs: %v", err)
	}

	sub, dirAfter, err := client.MkdirAttrs(ctx, c, dir.Ino, "sub", 0o750)
	if err != nil {
		t.Fatalf("MkdirAttrs: %v", err)
	}
	if sub.Mode != syscall.S_IFDIR|0o750 {
		t.Errorf("MkdirAttrs returned mode %o, expected %o", sub.Mode, syscall.S_IFDIR|0o750)
	}
	wantDir("MkdirAttrs", dirAfter)

	dirAfter, err = client.UnlinkAttrs(ctx, c, dir.Ino, "file")
	if err != nil {
		t.Fatalf("UnlinkAttrs: %v", err)
	}
	wantDir("UnlinkAttrs", dirAfter)

	dirAfter, err = client.RmdirAttrs(ctx, c, dir.Ino, "sub")
	if err != nil {
		t.Fatalf("RmdirAttrs: %v", err)
	}
	wantDir("RmdirAttrs", dirAfter)

	if _, err := client.UnlinkAttrs(ctx, c, dir.Ino, "file"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("UnlinkAttrs of a removed name: %v, expected ENOENT", err)
	}
}
