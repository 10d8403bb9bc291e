package fusefs

import (
	"errors"
	"math"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Tests of the conversions, without a mount.

func TestParseStatusGroups(t *testing.T) {
	status := []byte("Name:\tcat\nUmask:\t0022\nGid:\t5\t5\t5\t5\nGroups:\t4 24 1000 \nNgid:\t0\n")
	groups, err := parseStatusGroups(status)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(groups, []uint32{4, 24, 1000}) {
		t.Errorf("groups %v, want [4 24 1000]", groups)
	}

	groups, err = parseStatusGroups([]byte("Groups:\n"))
	if err != nil || len(groups) != 0 {
		t.Errorf("empty Groups line: %v, %v; want no groups", groups, err)
	}
	if _, err := parseStatusGroups([]byte("Name:\tx\n")); err == nil {
		t.Errorf("status without a Groups line parsed")
	}
	if _, err := parseStatusGroups([]byte("Groups:\t1 x\n")); err == nil {
		t.Errorf("Groups line with a non-number parsed")
	}
}

func TestReadProcGroupsOfSelf(t *testing.T) {
	groups, err := readProcGroups(uint32(syscall.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	want, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != len(want) {
		t.Fatalf("groups from /proc %v, getgroups(2) %v", groups, want)
	}
	for i := range want {
		if groups[i] != uint32(want[i]) {
			t.Errorf("groups from /proc %v, getgroups(2) %v", groups, want)
		}
	}
}

func TestGroupCache(t *testing.T) {
	reads := 0
	cache := newGroupCache(50 * time.Millisecond)
	cache.read = func(pid uint32) ([]uint32, error) {
		reads++
		if pid == 99 {
			return nil, errors.New("thread exited")
		}
		return []uint32{pid * 10}, nil
	}

	if got := cache.lookup(0, 0, 0); got != nil || reads != 0 {
		t.Errorf("pid 0 gave %v after %d reads, want nil without reading", got, reads)
	}
	if got := cache.lookup(7, 1, 1); !slices.Equal(got, []uint32{70}) {
		t.Errorf("lookup %v, want [70]", got)
	}
	cache.lookup(7, 1, 1)
	if reads != 1 {
		t.Errorf("%d reads for two lookups within the TTL, want 1", reads)
	}
	cache.lookup(7, 2, 1)
	if reads != 2 {
		t.Errorf("%d reads after the uid changed, want 2", reads)
	}
	time.Sleep(60 * time.Millisecond)
	cache.lookup(7, 1, 1)
	if reads != 3 {
		t.Errorf("%d reads after the TTL passed, want 3", reads)
	}
	if got := cache.lookup(99, 1, 1); got != nil {
		t.Errorf("failed read gave %v, want nil", got)
	}
	cache.lookup(99, 1, 1)
	if reads != 5 {
		t.Errorf("%d reads, want 5: failures are not cached", reads)
	}
}

func TestDeviceNumberRoundTrip(t *testing.T) {
	for _, dev := range []struct{ major, minor uint32 }{
		{0, 0}, {1, 3}, {8, 17}, {259, 0}, {300, 70000}, {4095, 0xfffff},
	} {
		stat := unix.Mkdev(dev.major, dev.minor)
		kernel := kernelDev(stat)
		// The kernel's new_decode_dev.
		major := (kernel & 0xfff00) >> 8
		minor := kernel&0xff | (kernel>>12)&0xfff00
		if major != dev.major || minor != dev.minor {
			t.Errorf("%d:%d encoded as %#x, which the kernel reads as %d:%d", dev.major, dev.minor, kernel, major, minor)
		}
		if back := statDev(kernel); back != stat {
			t.Errorf("%d:%d: statDev(%#x) = %#x, want %#x", dev.major, dev.minor, kernel, back, stat)
		}
	}
}

func TestNanosRoundTrip(t *testing.T) {
	for _, ns := range []int64{0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789, -1, -1_000_000_000, -4_000_000_001} {
		sec, nsec := splitNanos(ns)
		if nsec >= 1e9 {
			t.Errorf("splitNanos(%d) nsec %d, want below 1e9", ns, nsec)
		}
		if back := joinNanos(sec, nsec); back != ns {
			t.Errorf("joinNanos(splitNanos(%d)) = %d", ns, back)
		}
	}
	if sec, nsec := splitNanos(-1); int64(sec) != -1 || nsec != 999_999_999 {
		t.Errorf("splitNanos(-1) = %d, %d; want -1 s and 999999999 ns", int64(sec), nsec)
	}
}

func TestLockRangeConversion(t *testing.T) {
	toEnd := apiLock(&fuse.FileLock{Start: 7, End: math.MaxInt64, Typ: unix.F_WRLCK, Pid: 42})
	if toEnd.End != math.MaxUint64 || toEnd.Start != 7 || toEnd.PID != 42 {
		t.Errorf("kernel lock to OFFSET_MAX became %+v, want End math.MaxUint64", toEnd)
	}
	bounded := apiLock(&fuse.FileLock{Start: 7, End: 9, Typ: unix.F_RDLCK})
	if bounded.End != 9 {
		t.Errorf("kernel lock [7, 9] became %+v", bounded)
	}
	back := kernelLock(fsapi.Lock{Start: 7, End: math.MaxUint64, Type: unix.F_WRLCK, PID: 42})
	if back.End != math.MaxInt64 || back.Start != 7 || back.Pid != 42 {
		t.Errorf("fsapi lock to the end became %+v, want End OFFSET_MAX", back)
	}
}

func TestSetAttrInTranslation(t *testing.T) {
	in := fuse.SetAttrInCommon{
		Valid: fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_SIZE | fuse.FATTR_ATIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME | fuse.FATTR_FH,
		Mode:  syscall.S_IFREG | 0o6755, Owner: fuse.Owner{Uid: 5}, Size: 99,
		Mtime: 3, Mtimensec: 4, Fh: 12,
	}
	set := setAttrIn(&in)
	want := fsapi.SetMode | fsapi.SetUID | fsapi.SetSize | fsapi.SetAtimeNow | fsapi.SetMtime
	if set.Valid != want {
		t.Errorf("Valid %#x, want %#x", set.Valid, want)
	}
	if set.Mode != 0o6755 || set.UID != 5 || set.Size != 99 || set.Mtime != 3_000_000_004 || set.Handle != 12 {
		t.Errorf("translated %+v", set)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:               "/plain",
		`/with\040space`:       "/with space",
		`/tab\011and\134slash`: "/tab\tand\\slash",
		`/short\04`:            `/short\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCacheTimeout(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{0: NamedEntryTimeout, -1: 0, 5 * time.Second: 5 * time.Second} {
		if got := cacheTimeout(in, true, NamedEntryTimeout); got != want {
			t.Errorf("cacheTimeout(%v, notified) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[time.Duration]time.Duration{0: ShortTimeout, -1: 0, 5 * time.Second: 5 * time.Second} {
		if got := cacheTimeout(in, false, NamedEntryTimeout); got != want {
			t.Errorf("cacheTimeout(%v, not notified) = %v, want %v", in, got, want)
		}
	}
}

func TestFusermountCause(t *testing.T) {
	cases := map[string]string{
		"/usr/bin/fusermount3: failed to unmount /tmp/busy: device: Device or resource busy (code exit status 1)": "device or resource busy",
		"/usr/bin/fusermount3: failed to unmount /tmp/x: Invalid argument (code exit status 1)":                   "invalid argument",
		"exec: \"fusermount3\": executable file not found in $PATH":                                               "executable file not found in $path",
	}
	for text, want := range cases {
		if got := fusermountCause(text); got != want {
			t.Errorf("fusermountCause(%q) = %q, expected %q", text, got, want)
		}
	}
}
