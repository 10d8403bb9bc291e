package fsys

import (
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestXattrSetGetListRemove(t *testing.T) {
	e, j := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, nil)
	before := getattr(t, e, file)

	mustOK(t, e.SetXattr(ctx, userCaller, file, "user.b", []byte("two"), 0))
	mustOK(t, e.SetXattr(ctx, userCaller, file, "user.a", []byte("one"), fsapi.XattrCreate))
	mustOK(t, e.SetXattr(ctx, userCaller, file, "user.empty", nil, 0))
	if ctime := getattr(t, e, file).Ctime; ctime <= before.Ctime {
		t.Errorf("ctime did not advance on setxattr")
	}

	value, err := e.GetXattr(ctx, userCaller, file, "user.a")
	mustOK(t, err)
	if string(value) != "one" {
		t.Errorf("GetXattr(user.a) = %q, expected one", value)
	}
	names, err := e.ListXattr(ctx, userCaller, file)
	mustOK(t, err)
	if !slices.Equal(names, []string{"user.a", "user.b", "user.empty"}) {
		t.Errorf("ListXattr = %v, expected the three names sorted", names)
	}

	wantErrno(t, e.SetXattr(ctx, userCaller, file, "user.a", []byte("x"), fsapi.XattrCreate), syscall.EEXIST)
	wantErrno(t, e.SetXattr(ctx, userCaller, file, "user.none", []byte("x"), fsapi.XattrReplace), syscall.ENODATA)
	mustOK(t, e.SetXattr(ctx, userCaller, file, "user.a", []byte("uno"), fsapi.XattrReplace))
	mustOK(t, e.RemoveXattr(ctx, userCaller, file, "user.b"))
	wantErrno(t, e.RemoveXattr(ctx, userCaller, file, "user.b"), syscall.ENODATA)
	_, err = e.GetXattr(ctx, userCaller, file, "user.b")
	wantErrno(t, err, syscall.ENODATA)

	if ent := j.lastEntry(t); ent.Op != OpRemoveXattr || ent.Name != "user.b" {
		t.Errorf("entry = %s %q, expected removexattr user.b", ent.Op, ent.Name)
	}
	compareEngines(t, "replay of xattrs", e, replay(t, j.snapshot()))
}

func TestXattrNamespaces(t *testing.T) {
	e, _ := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, nil)
	fifo, err := e.Mknod(ctx, userCaller, fsapi.RootIno, "fifo", syscall.S_IFIFO|0o666, 0)
	mustOK(t, err)
	link, err := e.Symlink(ctx, userCaller, fsapi.RootIno, "link", "f")
	mustOK(t, err)
	mustOK(t, e.SetXattr(ctx, rootCaller, file, "trusted.t", []byte("t"), 0))

	tests := []struct {
		name   string
		caller *fsapi.Caller
		ino    fsapi.Ino
		xattr  string
		want   syscall.Errno
	}{
		{"user on a file", userCaller, file, "user.x", 0},
		{"user on a fifo", userCaller, fifo.Ino, "user.x", syscall.EPERM},
		{"user on a symlink", rootCaller, link.Ino, "user.x", syscall.EPERM},
		{"user without write permission", otherCaller, file, "user.x", syscall.EACCES},
		{"trusted by user", userCaller, file, "trusted.x", syscall.EPERM},
		{"trusted by root", rootCaller, file, "trusted.x", 0},
		{"security by user", userCaller, file, "security.x", syscall.EPERM},
		{"security by root", rootCaller, file, "security.x", 0},
		{"system namespace", rootCaller, file, "system.posix_acl_access", syscall.EOPNOTSUPP},
		{"no namespace", rootCaller, file, "plain", syscall.EOPNOTSUPP},
		{"empty name", rootCaller, file, "", syscall.ERANGE},
		{"long name", rootCaller, file, "user." + strings.Repeat("x", 251), syscall.ERANGE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.SetXattr(ctx, tt.caller, tt.ino, tt.xattr, []byte("v"), 0)
			if tt.want == 0 {
				mustOK(t, err)
				return
			}
			wantErrno(t, err, tt.want)
		})
	}

	_, err = e.GetXattr(ctx, userCaller, file, "trusted.t")
	wantErrno(t, err, syscall.ENODATA)
	names, err := e.ListXattr(ctx, userCaller, file)
	mustOK(t, err)
	if slices.Contains(names, "trusted.t") {
		t.Errorf("ListXattr for a user = %v, expected trusted.t hidden", names)
	}
	names, err = e.ListXattr(ctx, rootCaller, file)
	mustOK(t, err)
	if !slices.Contains(names, "trusted.t") {
		t.Errorf("ListXattr for root = %v, expected trusted.t", names)
	}
	wantErrno(t, e.SetXattr(ctx, userCaller, file, "user.big", make([]byte, fsapi.MaxXattrSize+1), 0), syscall.E2BIG)
	wantErrno(t, e.SetXattr(ctx, userCaller, file, "user.x", nil, fsapi.XattrCreate|fsapi.XattrReplace), syscall.EINVAL)
}
