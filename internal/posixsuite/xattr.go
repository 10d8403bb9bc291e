package posixsuite

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Subtests on extended attributes. They use the user namespace, which
// every target supports for regular files and directories.
var xattrTests = []subtest{
	{"set get remove", testXattrSetGetRemove},
	{"flags", testXattrFlags},
	{"size probe", testXattrSizeProbe},
	{"list", testXattrList},
}

func testXattrSetGetRemove(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)

	wantOK(t, "setxattr", unix.Setxattr(p, "user.color", []byte("blue"), 0))
	buf := make([]byte, 64)
	n, err := unix.Getxattr(p, "user.color", buf)
	wantOK(t, "getxattr", err)
	if string(buf[:n]) != "blue" {
		t.Errorf("getxattr %q, want %q", buf[:n], "blue")
	}

	// Values are bytes: NULs and an empty value survive.
	binary := []byte{0, 1, 2, 0, 255}
	wantOK(t, "setxattr binary", unix.Setxattr(p, "user.binary", binary, 0))
	n, err = unix.Getxattr(p, "user.binary", buf)
	wantOK(t, "getxattr binary", err)
	if !bytes.Equal(buf[:n], binary) {
		t.Errorf("getxattr %v, want %v", buf[:n], binary)
	}
	wantOK(t, "setxattr empty", unix.Setxattr(p, "user.empty", nil, 0))
	n, err = unix.Getxattr(p, "user.empty", buf)
	wantOK(t, "getxattr empty", err)
	if n != 0 {
		t.Errorf("empty value read back as %d bytes", n)
	}

	large := pattern(4000, 2)
	wantOK(t, "setxattr 4000 bytes", unix.Setxattr(p, "user.large", large, 0))
	big := make([]byte, 8000)
	n, err = unix.Getxattr(p, "user.large", big)
	wantOK(t, "getxattr 4000 bytes", err)
	if !bytes.Equal(big[:n], large) {
		t.Errorf("large value read back as %d different bytes", n)
	}

	// Overwrite, then remove.
	wantOK(t, "setxattr overwrite", unix.Setxattr(p, "user.color", []byte("green"), 0))
	n, err = unix.Getxattr(p, "user.color", buf)
	wantOK(t, "getxattr", err)
	if string(buf[:n]) != "green" {
		t.Errorf("getxattr after overwrite %q, want %q", buf[:n], "green")
	}
	wantOK(t, "removexattr", unix.Removexattr(p, "user.color"))
	_, err = unix.Getxattr(p, "user.color", buf)
	wantErrno(t, "getxattr after removexattr", err, unix.ENODATA)
	wantErrno(t, "removexattr of a missing name", unix.Removexattr(p, "user.color"), unix.ENODATA)
	_, err = unix.Getxattr(p, "user.never", buf)
	wantErrno(t, "getxattr of a missing name", err, unix.ENODATA)

	// Directories carry xattrs too, and a descriptor reaches them.
	dir := e.mkdir(t, "dir", 0o755)
	wantOK(t, "setxattr on a directory", unix.Setxattr(dir, "user.d", []byte("dir"), 0))
	fd := open(t, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	n, err = unix.Fgetxattr(fd, "user.d", buf)
	wantOK(t, "fgetxattr", err)
	if string(buf[:n]) != "dir" {
		t.Errorf("fgetxattr %q, want %q", buf[:n], "dir")
	}

	// The kernel checks name lengths before any file system gets them.
	err = unix.Setxattr(p, "user."+strings.Repeat("n", 251), []byte("x"), 0)
	wantErrno(t, "setxattr with a 256-byte name", err, unix.ERANGE)
	err = unix.Setxattr(p, "nonamespace", []byte("x"), 0)
	wantErrno(t, "setxattr without a namespace", err, unix.EOPNOTSUPP)
}

func testXattrFlags(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)

	err := unix.Setxattr(p, "user.a", []byte("1"), unix.XATTR_REPLACE)
	wantErrno(t, "XATTR_REPLACE of a missing name", err, unix.ENODATA)
	wantOK(t, "XATTR_CREATE of a new name", unix.Setxattr(p, "user.a", []byte("1"), unix.XATTR_CREATE))
	err = unix.Setxattr(p, "user.a", []byte("2"), unix.XATTR_CREATE)
	wantErrno(t, "XATTR_CREATE of an existing name", err, unix.EEXIST)
	wantOK(t, "XATTR_REPLACE of an existing name", unix.Setxattr(p, "user.a", []byte("3"), unix.XATTR_REPLACE))

	buf := make([]byte, 8)
	n, err := unix.Getxattr(p, "user.a", buf)
	wantOK(t, "getxattr", err)
	if string(buf[:n]) != "3" {
		t.Errorf("value %q, want %q (the refused XATTR_CREATE must not change it)", buf[:n], "3")
	}
}

func testXattrSizeProbe(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)
	wantOK(t, "setxattr", unix.Setxattr(p, "user.probe", []byte("0123456789"), 0))

	n, err := unix.Getxattr(p, "user.probe", nil)
	wantOK(t, "getxattr with size 0", err)
	if n != 10 {
		t.Errorf("getxattr with size 0 returned %d, want the value size 10", n)
	}
	_, err = unix.Getxattr(p, "user.probe", make([]byte, 4))
	wantErrno(t, "getxattr with a 4-byte buffer for a 10-byte value", err, unix.ERANGE)
	n, err = unix.Getxattr(p, "user.probe", make([]byte, 10))
	wantOK(t, "getxattr with an exact buffer", err)
	if n != 10 {
		t.Errorf("getxattr with an exact buffer returned %d, want 10", n)
	}

	listSize := len("user.probe") + 1
	n, err = unix.Listxattr(p, nil)
	wantOK(t, "listxattr with size 0", err)
	if n != listSize {
		t.Errorf("listxattr with size 0 returned %d, want %d", n, listSize)
	}
	_, err = unix.Listxattr(p, make([]byte, 3))
	wantErrno(t, "listxattr with a 3-byte buffer", err, unix.ERANGE)
}

func testXattrList(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)
	if names := listXattr(t, p); len(names) != 0 {
		t.Errorf("new file lists xattrs %q, want none", names)
	}

	want := []string{"user.a", "user.b", "user.long." + strings.Repeat("x", 200)}
	for _, name := range want {
		wantOK(t, "setxattr "+name, unix.Setxattr(p, name, []byte("v"), 0))
	}
	got := listXattr(t, p)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("listxattr %q, want %q", got, want)
	}

	wantOK(t, "removexattr", unix.Removexattr(p, "user.b"))
	got = listXattr(t, p)
	slices.Sort(got)
	if !slices.Equal(got, []string{want[0], want[2]}) {
		t.Errorf("listxattr after removexattr %q, want %q", got, []string{want[0], want[2]})
	}

	// xattrs of a symlink itself need the l* calls; user xattrs are not
	// allowed on symlinks.
	wantOK(t, "symlink", unix.Symlink("file", e.path("link")))
	err := unix.Lsetxattr(e.path("link"), "user.x", []byte("v"), 0)
	wantErrno(t, "lsetxattr user.x on a symlink", err, unix.EPERM)
}

// listXattr returns the names that listxattr(2) reports, other than those
// of the security and system namespaces, which the host may add (SELinux
// labels, ACLs).
func listXattr(t *testing.T, path string) []string {
	t.Helper()
	size, err := unix.Listxattr(path, nil)
	wantOK(t, "listxattr size", err)
	buf := make([]byte, size)
	n, err := unix.Listxattr(path, buf)
	wantOK(t, "listxattr", err)
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "system.") {
			continue
		}
		names = append(names, name)
	}
	return names
}
