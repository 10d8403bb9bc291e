package fusefs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// TestSetIDClearedOnChange checks that set-ID bits go when Linux clears
// them, and that the kernel's copy of the mode loses them at once. A
// statx(2) that requests the mode alone would otherwise get the cached mode
// until the attribute timeout, because the kernel drops only its cached
// size and times after a write.
func TestSetIDClearedOnChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as other users and without CAP_FSETID")
	}
	engine, _ := newEngine(t)
	_, dir, _ := mountForTest(t, engine, Options{AttrTimeout: time.Hour, EntryTimeout: time.Hour})
	modeOnly := func(path string) uint32 {
		t.Helper()
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_MODE, &st); err != nil {
			t.Fatal(err)
		}
		return uint32(st.Mode) & 0o7777
	}
	asUser := func(ambient ...uintptr) *syscall.SysProcAttr {
		return &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}},
			AmbientCaps: ambient,
		}
	}
	// For the first three, Linux requests the clearing from the file
	// system before the change (a SETATTR that changes nothing). A user with
	// CAP_FSETID keeps them on Linux, but the daemon decides by uid, so the
	// write clears them without the kernel knowing.
	for _, tc := range []struct {
		name   string
		attr   *syscall.SysProcAttr
		change string
		mode   uint32
	}{
		{"append by another user", asUser(), `echo more >> "$1"`, 0o4777},
		{"fallocate by another user", asUser(), `fallocate -l 8192 "$1"`, 0o2777},
		{"append by root without CAP_FSETID", nil, `setpriv --bounding-set=-fsetid sh -c 'echo more >> "$1"' sh "$1"`, 0o6777},
		{"append by another user with CAP_FSETID", asUser(unix.CAP_FSETID), `echo more >> "$1"`, 0o4777},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		if got := modeOnly(path); got != tc.mode {
			t.Fatalf("%s: mode %#o before the change, expected %#o", tc.name, got, tc.mode)
		}
		cmd := exec.Command("sh", "-c", tc.change, "sh", path)
		cmd.SysProcAttr = tc.attr
		if output, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", tc.name, err, output)
		}
		if got := modeOnly(path); got != 0o777 {
			t.Errorf("%s: mode %#o after the change, expected 0o777", tc.name, got)
		}
	}

	// chown(2) that keeps both ids clears the bits too.
	path := filepath.Join(dir, "chown-keeping-ids")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(path, 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chown(path, -1, -1); err != nil {
		t.Fatal(err)
	}
	if got := modeOnly(path); got != 0o755 {
		t.Errorf("mode %#o after chown to the same ids, expected 0o755", got)
	}
}

// TestWriteRemovesCapabilitySetElsewhere checks that a write through the
// mount removes a capability that another client of the file system set.
// Once Linux has checked a file for a capability before a write, it skips
// the check until it next refreshes the file's attributes (SB_NOSEC), and a
// notification only invalidates them, so here the daemon has to remove it.
func TestWriteRemovesCapabilitySetElsewhere(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set security.capability")
	}
	engine, _ := newEngine(t)
	_, dir, _ := mountForTest(t, engine, Options{AttrTimeout: time.Hour, EntryTimeout: time.Hour})
	path := filepath.Join(dir, "program")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	ino := fsapi.Ino(st.Ino)

	// No stat from here on: it would refresh the attributes and so make
	// Linux check again.
	for range 2 {
		if _, err := f.Write([]byte("code")); err != nil {
			t.Fatal(err)
		}
	}

	other := &fsapi.Caller{PID: 1}
	if err := engine.SetXattr(context.Background(), other, ino, fsapi.CapabilityXattr, []byte{0, 0, 0, 2}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("changed")); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.GetXattr(context.Background(), other, ino, fsapi.CapabilityXattr); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("capability after a write through the mount: %v, expected ENODATA", err)
	}
}
