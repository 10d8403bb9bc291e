package posixsuite

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Options lists the known differences of the file system under test from
// Linux's local file systems. Every field describes what the target does
// differently, and the zero value means none.
type Options struct {
	// NoDeviceNodes: the target cannot create character or block device
	// nodes, for example because it runs without root. The device node
	// subtest then only logs that it left them out.
	NoDeviceNodes bool

	// LookupCacheTime: the target lets names that one user looked up be
	// used by every user for this long without checking search permission
	// on the directories in between. A FUSE mount without
	// default_permissions does this for its entry timeout, because Linux
	// then checks no search permission itself and the daemon gets no LOOKUP
	// for a name the kernel has cached. The permission subtest waits this
	// long after its setup so that its search check reaches the target.
	LookupCacheTime time.Duration

	// FlockCloseDelay: the target may keep a flock(2) lock for up to this
	// long after the last close(2) of its open file description returned.
	// A FUSE file system releases such a lock when it gets RELEASE, which
	// Linux sends asynchronously after close(2) has returned. The flock
	// subtest then retries for this long before it reports the lock as
	// still held.
	FlockCloseDelay time.Duration
}

// Run runs the suite on files under dir, each subtest in a subdirectory of
// its own. dir must exist and be writable; the suite leaves it as it found
// it unless a subtest fails half-way.
func Run(t *testing.T, dir string, opts Options) {
	s := &suite{dir: dir, opts: opts}
	t.Cleanup(func() { s.removeHelperCopy(t) })
	for _, group := range []struct {
		name  string
		tests []subtest
	}{
		{"names", nameTests},
		{"attrs", attrTests},
		{"data", dataTests},
		{"dirs", dirTests},
		{"xattr", xattrTests},
		{"locks", lockTests},
		{"sync", syncTests},
		{"perms", permTests},
	} {
		t.Run(group.name, func(t *testing.T) {
			for _, test := range group.tests {
				t.Run(test.name, func(t *testing.T) {
					test.run(t, s.env(t, group.name+"-"+test.name))
				})
			}
		})
	}
}

type subtest struct {
	name string
	run  func(t *testing.T, e *env)
}

type suite struct {
	dir  string
	opts Options

	// The copy of the test binary for helpers of another user.
	copyOnce sync.Once
	copyPath string
	copyErr  error
}

// env is the working directory of one subtest.
type env struct {
	dir   string // absolute path of the subtest's own directory
	opts  Options
	suite *suite
}

// env makes the subtest's directory (mode 0755, so that helpers running as
// another user can enter it) and removes it when the subtest ends.
func (s *suite) env(t *testing.T, name string) *env {
	t.Helper()
	dir := filepath.Join(s.dir, strings.ReplaceAll(name, "/", "-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create the subtest directory: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // undo the umask
		t.Fatalf("chmod the subtest directory: %v", err)
	}
	t.Cleanup(func() {
		// Helpers may have left read-only directories behind; make them
		// writable again so that RemoveAll succeeds for non-root users too.
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(path, 0o755)
			}
			return nil
		})
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the subtest directory: %v", err)
		}
	})
	return &env{dir: dir, opts: s.opts, suite: s}
}

// path returns the absolute path of name inside the subtest's directory.
func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// writeFile creates name with data and then sets mode (raw permission
// bits, which os.Chmod would not take for the sticky and set-ID bits),
// failing the test on error.
func (e *env) writeFile(t *testing.T, name string, data []byte, mode uint32) string {
	t.Helper()
	p := e.path(name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatalf("chmod %s: %v", name, err)
	}
	return p
}

// mkdir makes directory name and then sets mode, as writeFile does.
func (e *env) mkdir(t *testing.T, name string, mode uint32) string {
	t.Helper()
	p := e.path(name)
	if err := unix.Mkdir(p, 0o700); err != nil {
		t.Fatalf("mkdir %s: %v", name, err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatalf("chmod %s: %v", name, err)
	}
	return p
}

// open opens path with unix.Open and closes it when the test ends.
func open(t *testing.T, path string, flags int, mode uint32) int {
	t.Helper()
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, mode)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st
}

func fstat(t *testing.T, fd int) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatalf("fstat: %v", err)
	}
	return st
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(data)
}

// wantErrno checks that err is exactly the errno want. call describes the
// system call.
func wantErrno(t *testing.T, call string, err error, want syscall.Errno) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded, want %v (%s)", call, want, errnoName(want))
		return
	}
	var got syscall.Errno
	if !errors.As(err, &got) {
		t.Errorf("%s: %v, want errno %v (%s)", call, err, want, errnoName(want))
		return
	}
	if got != want {
		t.Errorf("%s: errno %s (%v), want %s (%v)", call, errnoName(got), got, errnoName(want), want)
	}
}

// wantOK fails the test unless err is nil.
func wantOK(t *testing.T, call string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", call, err)
	}
}

func errnoName(e syscall.Errno) string {
	if name := unix.ErrnoName(e); name != "" {
		return name
	}
	return "errno " + e.Error()
}

// isRoot reports whether the suite runs with root's file system rights.
func isRoot() bool { return os.Geteuid() == 0 }

// requireRoot skips the test with a message when not root, or fails it
// when CI=true, where every test is expected to run.
func requireRoot(t *testing.T, feature string) {
	t.Helper()
	if isRoot() {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs root, and CI=true requires every test to run", feature)
	}
	t.Skipf("%s needs root; run the tests as root to include it", feature)
}

// umask returns the process's file mode creation mask. It reads
// /proc/self/status because umask(2) can only read the mask by changing it.
func umask(t *testing.T) uint32 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read the umask: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if value, ok := strings.CutPrefix(line, "Umask:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(value), 8, 32)
			if err != nil {
				t.Fatalf("parse the umask %q: %v", value, err)
			}
			return uint32(mask)
		}
	}
	t.Fatalf("no Umask line in /proc/self/status")
	return 0
}
