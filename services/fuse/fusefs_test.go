package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// requireFUSE skips the test when it cannot mount (no /dev/fuse, not
// root), or fails it when CI=true, where every test must run.
func requireFUSE(t *testing.T) {
	t.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root (the tests mount with allow_other and run helpers as uid 1000)"
	default:
		if _, err := os.Stat("/dev/fuse"); err != nil {
			missing = "/dev/fuse (" + err.Error() + ")"
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("FUSE test needs %s, and CI=true requires every test to run", missing)
	}
	t.Skipf("FUSE test needs %s; skipped outside CI", missing)
}

// logBuffer collects log output of a mount for checks, and copies it to
// the test log.
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mountForTest mounts fs on a new directory and unmounts it when the test
// ends, lazily if a process still uses the mount.
func mountForTest(t *testing.T, fs fsapi.FS, opts Options) (*Server, string, *logBuffer) {
	t.Helper()
	requireFUSE(t)
	dir := mountpointForTest(t)
	logs := &logBuffer{t: t}
	opts.FS = fs
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := Mount(dir, opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("Unmount: %v; detaching the mount lazily", err)
			if err := syscall.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("lazy unmount of %s: %v", dir, err)
			}
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return srv, dir, logs
}

// mountpointForTest makes an empty directory that every user can reach by
// path (t.TempDir's parents are 0700), so that processes running as
// uid 1000 can use the mount. It is removed when the test ends.
func mountpointForTest(t *testing.T) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "fusefs-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Remove only the empty mount point and its parent: should the
		// unmount have failed, RemoveAll could reach into the mount.
		if err := os.Remove(filepath.Join(parent, "mnt")); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove the mount point: %v", err)
		}
		if err := os.Remove(parent); err != nil {
			t.Errorf("remove the mount point's parent: %v", err)
		}
	})
	dir := filepath.Join(parent, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMountMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := Mount(dir, Options{FS: newMemFS()})
	if err == nil {
		t.Fatalf("Mount on a missing directory succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, dir) || !strings.Contains(msg, "does not exist") {
		t.Errorf("error %q does not name %s and say that it does not exist", msg, dir)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q spans several lines", msg)
	}
}

func TestMountOnRegularFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Mount(file, Options{FS: newMemFS()})
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Mount on a regular file: %v, want an error naming %s as not a directory", err, file)
	}
}

func TestMountBusy(t *testing.T) {
	_, dir, _ := mountForTest(t, newMemFS(), Options{})
	_, err := Mount(dir, Options{FS: newMemFS()})
	if err == nil {
		t.Fatalf("second Mount on %s succeeded", dir)
	}
	msg := err.Error()
	if !strings.Contains(msg, dir) || !strings.Contains(msg, "busy") {
		t.Errorf("error %q does not name %s and say that it is busy", msg, dir)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q spans several lines", msg)
	}
}

func TestMountNilFS(t *testing.T) {
	if _, err := Mount(t.TempDir(), Options{}); err == nil {
		t.Errorf("Mount without an FS succeeded")
	}
}

func TestUnmountEndsWait(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	srv, err := Mount(dir, Options{FS: newMemFS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	mounted, fstype, err := isMountpoint(dir)
	if err != nil || !mounted || fstype != "fuse.blocktree" {
		_ = srv.Unmount()
		t.Fatalf("after Mount: mounted %v, type %q, error %v; want a fuse.blocktree mount", mounted, fstype, err)
	}

	waited := make(chan struct{})
	go func() {
		srv.Wait()
		close(waited)
	}()
	if err := srv.Unmount(); err != nil {
		_ = syscall.Unmount(dir, unix.MNT_DETACH)
		t.Fatalf("Unmount: %v", err)
	}
	<-waited
	if mounted, _, _ := isMountpoint(dir); mounted {
		t.Errorf("%s is still a mount point after Unmount", dir)
	}
}

func TestUnmountBusy(t *testing.T) {
	srv, dir, _ := mountForTest(t, newMemFS(), Options{})
	f, err := os.Create(filepath.Join(dir, "open"))
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Unmount()
	f.Close()
	if err == nil {
		t.Fatalf("Unmount succeeded while a file was open")
	}
	if !errors.Is(err, syscall.EBUSY) && !strings.Contains(err.Error(), "busy") {
		t.Errorf("Unmount with an open file: %v, want EBUSY", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("Unmount error %q does not name %s", err, dir)
	}
}

func TestMountOptionsInMountinfo(t *testing.T) {
	_, dir, _ := mountForTest(t, newMemFS(), Options{})
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(l); len(fields) > 4 && fields[4] == dir {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("%s not in /proc/self/mountinfo", dir)
	}
	for _, want := range []string{" - fuse.blocktree blocktree ", "allow_other", "max_read=1048576"} {
		if !strings.Contains(line, want) {
			t.Errorf("mountinfo line %q lacks %q", line, want)
		}
	}
	if !strings.Contains(line, "default_permissions") {
		t.Errorf("mountinfo line %q lacks default_permissions; without it cached names skip search permission checks", line)
	}
}

func TestMountRaisesReadAhead(t *testing.T) {
	_, dir, _ := mountForTest(t, newMemFS(), Options{})
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	device := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	data, err := os.ReadFile(readAheadFile(device))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(data)), strconv.Itoa(maxReadAhead/1024); got != want {
		t.Errorf("read_ahead_kb of the mount is %s, want %s", got, want)
	}
}

// TestReserveReaderProcs checks the count of go-fuse readers that
// ReserveReaderProcs reserves Ps for against the goroutines waiting in
// read(2) after a burst of concurrent requests, and how it sets GOMAXPROCS.
func TestReserveReaderProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	t.Setenv("GOMAXPROCS", "")
	srv, dir, _ := mountForTest(t, newMemFS(), Options{})
	if got := srv.BlockingReaders(); got != 3 {
		t.Errorf("BlockingReaders with GOMAXPROCS 2 at the mount = %d, want 3", got)
	}

	var wg sync.WaitGroup
	deadline := time.Now().Add(300 * time.Millisecond)
	for i := range 16 {
		wg.Go(func() {
			name := filepath.Join(dir, fmt.Sprintf("missing-%d", i))
			for time.Now().Before(deadline) {
				var st unix.Stat_t
				_ = unix.Stat(name, &st)
			}
		})
	}
	wg.Wait()
	buf := make([]byte, 1<<20)
	var waiting int
	for range 50 {
		waiting = 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "syscall.Read(") && strings.Contains(g, "fuse.(*Server).loop(") {
				waiting++
			}
		}
		if waiting > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if waiting < 1 || waiting > srv.BlockingReaders() {
		t.Errorf("%d go-fuse goroutines wait for requests after a burst, want 1 to BlockingReaders (%d)", waiting, srv.BlockingReaders())
	}

	if got := srv.ReserveReaderProcs(); got != 5 || runtime.GOMAXPROCS(0) != 5 {
		t.Errorf("ReserveReaderProcs = %d with GOMAXPROCS %d, want 5 for 2 Ps at the mount and 3 readers", got, runtime.GOMAXPROCS(0))
	}
	if got := srv.ReserveReaderProcs(); got != 5 {
		t.Errorf("second ReserveReaderProcs = %d, want 5 again", got)
	}
	runtime.GOMAXPROCS(2)
	t.Setenv("GOMAXPROCS", "2")
	if got := srv.ReserveReaderProcs(); got != 2 {
		t.Errorf("ReserveReaderProcs with GOMAXPROCS set in the environment = %d, want 2 (unchanged)", got)
	}
}
