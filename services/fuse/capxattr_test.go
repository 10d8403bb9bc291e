package fusefs

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestNoCapabilityIgnoresStaleAnswer(t *testing.T) {
	n := newNoCapability()
	generation := n.current()
	n.changed(5) // an xattr of some inode changed while the read was out
	n.add(7, generation)
	if n.has(7, time.Hour) {
		t.Error("an ENODATA read before a change was remembered")
	}
	n.add(7, n.current())
	if !n.has(7, time.Hour) {
		t.Error("an ENODATA read after the last change was not remembered")
	}
}

func TestNoCapabilityForgetsChangedInode(t *testing.T) {
	n := newNoCapability()
	n.add(5, n.current())
	n.add(6, n.current())
	n.changed(5)
	if n.has(5, time.Hour) {
		t.Error("inode 5 is still known after its xattrs changed")
	}
	if !n.has(6, time.Hour) {
		t.Error("inode 6 was forgotten when inode 5 changed")
	}
	n.forget(6)
	if n.has(6, time.Hour) {
		t.Error("inode 6 is still known after the kernel forgot it")
	}
	n.add(7, n.current())
	n.changedAll()
	if n.has(7, time.Hour) {
		t.Error("inode 7 is still known after every inode changed")
	}
}

func TestNoCapabilityExpires(t *testing.T) {
	n := newNoCapability()
	n.add(5, n.current())
	time.Sleep(time.Millisecond)
	if n.has(5, time.Millisecond) {
		t.Error("an entry older than maxAge still counts")
	}
	if n.has(5, time.Hour) {
		t.Error("an expired entry counts again with a longer maxAge")
	}
}

// quietFS is a memFS that claims to report changes and never reports one,
// so that the mount treats its cached knowledge as current.
type quietFS struct{ *memFS }

func (quietFS) Subscribe(context.Context) (fsapi.Subscription, error) {
	return quietSubscription{}, nil
}

type quietSubscription struct{}

func (quietSubscription) Next(ctx context.Context) ([]fsapi.Change, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// capabilityReads counts the reads of security.capability that reached fs
// for ino.
func capabilityReads(fs *memFS, ino fsapi.Ino) int {
	n := 0
	for _, c := range fs.callsOf("getxattr") {
		if c.ino == ino && c.name == capabilityXattr {
			n++
		}
	}
	return n
}

// TestCapabilityReadsStayLocal checks that the reads of
// security.capability that Linux makes before writes reach the file system
// only when the server cannot be sure that there is none. It also checks
// that the next write still removes a capability set on the file, as
// Linux does.
func TestCapabilityReadsStayLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set security.capability")
	}
	fs := newMemFS()
	_, dir, _ := mountForTest(t, quietFS{fs}, Options{})
	path := filepath.Join(dir, "program")
	f, ino := createForWriting(t, path, os.O_EXCL, 0o755)
	for range 3 {
		if _, err := f.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
	}
	if got := capabilityReads(fs, ino); got != 0 {
		t.Errorf("writes to a file created through the mount read security.capability from the file system %d times, expected none", got)
	}

	// A version 2 capability set (VFS_CAP_REVISION_2) with CAP_NET_RAW
	// (bit 13) permitted.
	capability := make([]byte, 20)
	binary.LittleEndian.PutUint32(capability[0:], 0x02000000)
	binary.LittleEndian.PutUint32(capability[4:], 1<<13)
	if err := unix.Setxattr(path, capabilityXattr, capability, 0); err != nil {
		t.Fatalf("set %s: %v", capabilityXattr, err)
	}
	if _, err := f.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	// Linux reads it once to decide, and again in the SETATTR that
	// removes it.
	if got := capabilityReads(fs, ino); got == 0 {
		t.Error("the write after setting a capability did not read it from the file system")
	}
	if _, err := unix.Getxattr(path, capabilityXattr, make([]byte, 64)); err != unix.ENODATA {
		t.Errorf("read of %s after the write: %v, expected ENODATA because the write removed it", capabilityXattr, err)
	}
	before := capabilityReads(fs, ino)
	for range 3 {
		if _, err := f.Write([]byte("again")); err != nil {
			t.Fatal(err)
		}
	}
	if got := capabilityReads(fs, ino) - before; got != 0 {
		t.Errorf("writes after the capability was removed read it from the file system %d times, expected none", got)
	}
}

// TestCapabilityReadsOfOthersStayLocal checks that a user other than root,
// who may not read security.capability, never sends that read to the file
// system when writing.
func TestCapabilityReadsOfOthersStayLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to write as uid 1000")
	}
	fs := newMemFS()
	_, dir, _ := mountForTest(t, fs, Options{})
	path := filepath.Join(dir, "shared")
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `echo one >> "$1" && echo two >> "$1"`, "sh", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}}
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write as uid 1000: %v: %s", err, output)
	}
	for _, c := range fs.callsOf("getxattr") {
		if c.caller.UID == 1000 {
			t.Errorf("uid 1000 read %s from the file system; the server should answer ENODATA", c.name)
		}
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "one\ntwo\n" {
		t.Errorf("file after the writes: %q, %v; expected %q", data, err, "one\ntwo\n")
	}
}

// TestCapabilityReadAfterCreateWithoutExcl checks that a file created
// without O_EXCL is not taken to have no capability: the daemon may have
// opened a file that another client had created meanwhile.
func TestCapabilityReadAfterCreateWithoutExcl(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, quietFS{fs}, Options{})
	f, ino := createForWriting(t, filepath.Join(dir, "file"), 0, 0o644)
	for range 2 {
		if _, err := f.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() != 0 {
		return // others' reads never reach the file system
	}
	if got := capabilityReads(fs, ino); got != 1 {
		t.Errorf("writes to a file created without O_EXCL read security.capability from the file system %d times, expected once", got)
	}
}

// createForWriting creates path for writing with the extra open flags, and
// returns the open file, closed when the test ends, and its inode number.
func createForWriting(t *testing.T, path string, flags int, mode os.FileMode) (*os.File, fsapi.Ino) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|flags, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fsapi.Ino(st.Ino)
}
