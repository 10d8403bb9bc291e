package posixsuite

import (
	"fmt"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Subtests on locks. POSIX record locks conflict only between processes,
// so a helper process holds the other side. flock(2) locks conflict
// between open file descriptions, so one process can test them alone.
var lockTests = []subtest{
	{"posix conflicts", testPosixLockConflicts},
	{"posix setlkw waits", testPosixLockWait},
	{"posix shared", testPosixLockShared},
	{"posix released on close", testPosixLockCloseReleases},
	{"flock", testFlock},
	{"flock waits", testFlockWait},
}

// helperLockTimeout bounds how long a helper may take to start and lock.
const helperLockTimeout = 30 * time.Second

// lockInHelper starts a helper that takes a POSIX lock on name and holds
// it until release.
func (e *env) lockInHelper(t *testing.T, name, typ string, start, length int64) *helper {
	t.Helper()
	h := e.startHelper(t, e.dir, nil, "lock", name, typ, fmt.Sprint(start), fmt.Sprint(length), "0")
	if line := h.readLine(t, helperLockTimeout); line != "locked" {
		t.Fatalf("helper could not take the %s lock on [%d, +%d): %s", typ, start, length, line)
	}
	return h
}

func setlk(fd int, typ int16, start, length int64) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: start, Len: length}
	return unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk)
}

func testPosixLockConflicts(t *testing.T, e *env) {
	e.writeFile(t, "file", make([]byte, 100), 0o644)
	h := e.lockInHelper(t, "file", "w", 10, 20)

	fd := open(t, e.path("file"), unix.O_RDWR, 0)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 0, Len: 100}
	wantOK(t, "F_GETLK", unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &lk))
	if lk.Type != unix.F_WRLCK {
		t.Errorf("F_GETLK type %d, want F_WRLCK (%d) held by the helper", lk.Type, unix.F_WRLCK)
	}
	if int(lk.Pid) != h.cmd.Process.Pid {
		t.Errorf("F_GETLK pid %d, want the helper's %d", lk.Pid, h.cmd.Process.Pid)
	}
	if lk.Start != 10 || lk.Len != 20 {
		t.Errorf("F_GETLK range [%d, +%d), want [10, +20)", lk.Start, lk.Len)
	}

	wantErrno(t, "F_SETLK write lock overlapping the helper's", setlk(fd, unix.F_WRLCK, 25, 10), unix.EAGAIN)
	wantErrno(t, "F_SETLK read lock overlapping the helper's write lock", setlk(fd, unix.F_RDLCK, 0, 11), unix.EAGAIN)
	wantOK(t, "F_SETLK write lock beside the helper's", setlk(fd, unix.F_WRLCK, 30, 10))
	wantOK(t, "F_SETLK write lock before the helper's", setlk(fd, unix.F_WRLCK, 0, 10))

	// A range to the end of the file (length 0) conflicts too.
	wantErrno(t, "F_SETLK to the end of file over the helper's lock", setlk(fd, unix.F_WRLCK, 5, 0), unix.EAGAIN)

	// F_GETLK in the helper reports this process's lock and pid.
	probe := e.startHelper(t, e.dir, nil, "getlk", "file", "w", "30", "10")
	want := fmt.Sprintf("%d %d 30 10", unix.F_WRLCK, unix.Getpid())
	if got := probe.readLine(t, helperLockTimeout); got != want {
		t.Errorf("F_GETLK from another process %q, want %q (type pid start len)", got, want)
	}
	probe.release(t)

	wantOK(t, "F_SETLK unlock", setlk(fd, unix.F_UNLCK, 0, 0))
	h.release(t)
	wantOK(t, "F_SETLK after the helper exited", setlk(fd, unix.F_WRLCK, 0, 0))
}

func testPosixLockWait(t *testing.T, e *env) {
	e.writeFile(t, "file", nil, 0o644)
	h := e.lockInHelper(t, "file", "w", 0, 0)
	fd := open(t, e.path("file"), unix.O_RDWR, 0)

	acquired := make(chan error, 1)
	go func() {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
		acquired <- unix.FcntlFlock(uintptr(fd), unix.F_SETLKW, &lk)
	}()
	select {
	case err := <-acquired:
		t.Fatalf("F_SETLKW returned %v while the helper held the lock", err)
	case <-time.After(300 * time.Millisecond):
	}

	h.release(t)
	select {
	case err := <-acquired:
		wantOK(t, "F_SETLKW after the holder exited", err)
	case <-time.After(helperLockTimeout):
		t.Fatalf("F_SETLKW still waiting %v after the holder exited", helperLockTimeout)
	}

	// Now this process holds the lock, so a helper cannot take it.
	probe := e.startHelper(t, e.dir, nil, "lock", "file", "r", "0", "1", "0")
	if got, want := probe.readLine(t, helperLockTimeout), fmt.Sprintf("errno %d", unix.EAGAIN); got != want {
		t.Errorf("helper lock against ours: %q, want %q", got, want)
	}
	probe.release(t)
}

func testPosixLockShared(t *testing.T, e *env) {
	e.writeFile(t, "file", nil, 0o644)
	h := e.lockInHelper(t, "file", "r", 0, 100)
	fd := open(t, e.path("file"), unix.O_RDWR, 0)

	wantOK(t, "F_SETLK read lock beside another read lock", setlk(fd, unix.F_RDLCK, 50, 100))
	wantErrno(t, "F_SETLK write lock over another's read lock", setlk(fd, unix.F_WRLCK, 0, 10), unix.EAGAIN)
	// Converting our read lock to a write lock outside the helper's range
	// works: locks of one owner split and merge.
	wantOK(t, "F_SETLK write lock over our own read lock", setlk(fd, unix.F_WRLCK, 100, 50))

	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 0, Len: 10}
	wantOK(t, "F_GETLK", unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &lk))
	if lk.Type != unix.F_RDLCK || int(lk.Pid) != h.cmd.Process.Pid {
		t.Errorf("F_GETLK type %d pid %d, want the helper's read lock (pid %d)", lk.Type, lk.Pid, h.cmd.Process.Pid)
	}
	h.release(t)
}

// testPosixLockCloseReleases checks the POSIX rule that closing any
// descriptor of a file releases all of the process's locks on it.
func testPosixLockCloseReleases(t *testing.T, e *env) {
	e.writeFile(t, "file", nil, 0o644)
	fd := open(t, e.path("file"), unix.O_RDWR, 0)
	wantOK(t, "F_SETLK", setlk(fd, unix.F_WRLCK, 0, 0))

	probe := e.startHelper(t, e.dir, nil, "getlk", "file", "w", "0", "0")
	if got := probe.readLine(t, helperLockTimeout); got == fmt.Sprintf("%d 0 0 0", unix.F_UNLCK) {
		t.Fatalf("F_GETLK from another process found no lock while this process held one")
	}
	probe.release(t)

	other, err := unix.Open(e.path("file"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	wantOK(t, "open a second descriptor", err)
	wantOK(t, "close the second descriptor", unix.Close(other))

	probe = e.startHelper(t, e.dir, nil, "getlk", "file", "w", "0", "0")
	if got, want := probe.readLine(t, helperLockTimeout), fmt.Sprintf("%d 0 0 0", unix.F_UNLCK); got != want {
		t.Errorf("F_GETLK after closing another descriptor of the file %q, want %q (no lock)", got, want)
	}
	probe.release(t)
}

func testFlock(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)
	a := open(t, p, unix.O_RDONLY, 0)
	b := open(t, p, unix.O_RDONLY, 0)

	wantOK(t, "flock LOCK_EX", unix.Flock(a, unix.LOCK_EX|unix.LOCK_NB))
	wantErrno(t, "flock LOCK_EX of a second open file description", unix.Flock(b, unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
	wantErrno(t, "flock LOCK_SH of a second open file description", unix.Flock(b, unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)

	// A duplicated descriptor shares the open file description and its lock.
	dup, err := unix.Dup(a)
	wantOK(t, "dup", err)
	wantOK(t, "flock LOCK_EX through a dup", unix.Flock(dup, unix.LOCK_EX|unix.LOCK_NB))
	unix.Close(dup)

	// Shared locks coexist; an exclusive one then waits for all of them.
	wantOK(t, "convert to LOCK_SH", unix.Flock(a, unix.LOCK_SH|unix.LOCK_NB))
	wantOK(t, "second LOCK_SH", unix.Flock(b, unix.LOCK_SH|unix.LOCK_NB))
	c := open(t, p, unix.O_RDONLY, 0)
	wantErrno(t, "LOCK_EX while two LOCK_SH are held", unix.Flock(c, unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)

	wantOK(t, "LOCK_UN", unix.Flock(a, unix.LOCK_UN))
	wantErrno(t, "LOCK_EX while one LOCK_SH is held", unix.Flock(c, unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)

	// Closing the last descriptor of an open file description drops its lock.
	d, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	wantOK(t, "open", err)
	wantOK(t, "LOCK_SH on d", unix.Flock(d, unix.LOCK_SH|unix.LOCK_NB))
	wantOK(t, "LOCK_UN on b", unix.Flock(b, unix.LOCK_UN))
	wantErrno(t, "LOCK_EX while d holds LOCK_SH", unix.Flock(c, unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
	wantOK(t, "close d", unix.Close(d))
	wantOK(t, "LOCK_EX after the holder closed", e.flockAfterClose(t, c, unix.LOCK_EX))

	// flock and POSIX locks do not conflict with each other on Linux.
	rw := open(t, p, unix.O_RDWR, 0)
	wantOK(t, "F_SETLK while a flock is held", setlk(rw, unix.F_WRLCK, 0, 0))
}

// flockAfterClose takes a flock lock without waiting, right after another
// open file description that held a conflicting lock was closed. With
// FlockCloseDelay it retries for that long.
func (e *env) flockAfterClose(t *testing.T, fd int, operation int) error {
	t.Helper()
	deadline := time.Now().Add(e.opts.FlockCloseDelay)
	for {
		err := unix.Flock(fd, operation|unix.LOCK_NB)
		if err != unix.EWOULDBLOCK || !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

func testFlockWait(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)
	a := open(t, p, unix.O_RDONLY, 0)
	b := open(t, p, unix.O_RDONLY, 0)
	wantOK(t, "LOCK_EX", unix.Flock(a, unix.LOCK_EX))

	acquired := make(chan error, 1)
	go func() { acquired <- unix.Flock(b, unix.LOCK_EX) }()
	select {
	case err := <-acquired:
		t.Fatalf("blocking LOCK_EX returned %v while another open file description held the lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	wantOK(t, "LOCK_UN", unix.Flock(a, unix.LOCK_UN))
	select {
	case err := <-acquired:
		wantOK(t, "blocking LOCK_EX after LOCK_UN", err)
	case <-time.After(helperLockTimeout):
		t.Fatalf("blocking LOCK_EX still waiting %v after the holder unlocked", helperLockTimeout)
	}
}
