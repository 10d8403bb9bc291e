package fsys

import (
	"context"
	"math"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

const (
	ownerA uint64 = 0xa
	ownerB uint64 = 0xb
)

func lockRange(typ uint32, start, end uint64) fsapi.Lock {
	return fsapi.Lock{Start: start, End: end, Type: typ, PID: 42}
}

// lockFixture is a file with one read-write handle.
func lockFixture(t *testing.T) (*Engine, fsapi.Ino, fsapi.HandleID) {
	t.Helper()
	e, _ := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o666)
	return e, ino, h
}

// ownerLocks returns the POSIX locks of owner on ino, sorted.
func ownerLocks(e *Engine, ino fsapi.Ino, owner uint64) []posixLock {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []posixLock
	if il := e.locks.inodes[ino]; il != nil {
		for _, l := range il.posix {
			if l.owner == owner {
				out = append(out, l)
			}
		}
	}
	slices.SortFunc(out, func(a, b posixLock) int { return cmpUint64(a.start, b.start) })
	return out
}

func ranges(locks []posixLock) [][3]uint64 {
	var out [][3]uint64
	for _, l := range locks {
		out = append(out, [3]uint64{l.start, l.end, uint64(l.typ)})
	}
	return out
}

func TestPosixLockConflicts(t *testing.T) {
	e, ino, h := lockFixture(t)
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 10, 19), false))

	wantErrno(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_RDLCK, 15, 30), false), syscall.EAGAIN)
	wantErrno(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_WRLCK, 0, 10), false), syscall.EAGAIN)
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_WRLCK, 20, 29), false))

	got, err := e.GetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_RDLCK, 0, math.MaxUint64))
	mustOK(t, err)
	if got.Type != syscall.F_WRLCK || got.Start != 10 || got.End != 19 || got.PID != 42 {
		t.Errorf("GetLk = %+v, expected owner A's write lock 10-19", got)
	}
	got, err = e.GetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_RDLCK, 0, 19))
	mustOK(t, err)
	if got.Type != syscall.F_UNLCK {
		t.Errorf("GetLk of the owner's own range = %+v, expected F_UNLCK", got)
	}

	// Read locks of different owners share.
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_RDLCK, 100, 200), false))
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_RDLCK, 150, 250), false))
	wantErrno(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_WRLCK, 150, 250), false), syscall.EAGAIN)
}

func TestPosixLockSplitAndMerge(t *testing.T) {
	e, ino, h := lockFixture(t)
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 0, 99), false))

	// Unlock a middle sub-range: the lock splits in two.
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_UNLCK, 40, 59), false))
	want := [][3]uint64{{0, 39, syscall.F_WRLCK}, {60, 99, syscall.F_WRLCK}}
	if got := ranges(ownerLocks(e, ino, ownerA)); !slices.Equal(got, want) {
		t.Errorf("after unlocking 40-59: %v, expected %v", got, want)
	}

	// Downgrade part to a read lock: three pieces of two types.
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_RDLCK, 30, 69), false))
	want = [][3]uint64{{0, 29, syscall.F_WRLCK}, {30, 69, syscall.F_RDLCK}, {70, 99, syscall.F_WRLCK}}
	if got := ranges(ownerLocks(e, ino, ownerA)); !slices.Equal(got, want) {
		t.Errorf("after downgrading 30-69: %v, expected %v", got, want)
	}
	// Owner B can now read the downgraded middle.
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_RDLCK, 40, 50), false))
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_UNLCK, 0, math.MaxUint64), false))

	// Upgrade the middle back: adjacent write locks merge into one.
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 30, 69), false))
	want = [][3]uint64{{0, 99, syscall.F_WRLCK}}
	if got := ranges(ownerLocks(e, ino, ownerA)); !slices.Equal(got, want) {
		t.Errorf("after upgrading 30-69: %v, expected %v", got, want)
	}

	// A lock to the end of the file merges with an adjacent one.
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 100, math.MaxUint64), false))
	want = [][3]uint64{{0, math.MaxUint64, syscall.F_WRLCK}}
	if got := ranges(ownerLocks(e, ino, ownerA)); !slices.Equal(got, want) {
		t.Errorf("after locking to the end: %v, expected %v", got, want)
	}
}

func TestPosixLockErrors(t *testing.T) {
	e, ino, h := lockFixture(t)
	readOnly, err := e.Open(ctx, userCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)

	wantErrno(t, e.SetLk(ctx, userCaller, ino, readOnly, ownerA, lockRange(syscall.F_WRLCK, 0, 1), false), syscall.EBADF)
	wantErrno(t, e.SetLk(ctx, userCaller, ino, 999, ownerA, lockRange(syscall.F_RDLCK, 0, 1), false), syscall.EBADF)
	wantErrno(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_RDLCK, 5, 1), false), syscall.EINVAL)
	wantErrno(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(77, 0, 1), false), syscall.EINVAL)
	_, err = e.GetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_UNLCK, 0, 1))
	wantErrno(t, err, syscall.EINVAL)
}

func TestPosixLockWaitGranted(t *testing.T) {
	e, ino, h := lockFixture(t)
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 0, 99), false))

	done := make(chan error, 1)
	go func() {
		done <- e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_WRLCK, 50, 60), true)
	}()
	select {
	case err := <-done:
		t.Fatalf("waiting SetLk returned %v while the range was locked", err)
	case <-time.After(50 * time.Millisecond):
	}
	// The engine must stay usable while a waiter blocks.
	if _, err := e.GetAttr(ctx, userCaller, ino); err != nil {
		t.Fatalf("GetAttr during a lock wait: %v", err)
	}
	mustOK(t, e.Flush(ctx, userCaller, ino, h, ownerA))
	select {
	case err := <-done:
		mustOK(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("waiting SetLk was not granted after the holder's Flush")
	}
	if got := ranges(ownerLocks(e, ino, ownerB)); !slices.Equal(got, [][3]uint64{{50, 60, syscall.F_WRLCK}}) {
		t.Errorf("owner B holds %v, expected 50-60", got)
	}
}

func TestPosixLockWaitCancelled(t *testing.T) {
	e, ino, h := lockFixture(t)
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 0, 0), false))

	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	err := e.SetLk(waitCtx, userCaller, ino, h, ownerB, lockRange(syscall.F_RDLCK, 0, 0), true)
	wantErrno(t, err, syscall.EINTR)
	if got := ownerLocks(e, ino, ownerB); len(got) != 0 {
		t.Errorf("owner B holds %v after a cancelled wait, expected nothing", got)
	}
}

func TestPosixLockDeadlock(t *testing.T) {
	e, ino, h := lockFixture(t)
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 0, 0), false))
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_WRLCK, 1, 1), false))

	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- e.SetLk(waitCtx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 1, 1), true)
	}()
	// Wait until A is recorded as waiting for B.
	for deadline := time.Now().Add(5 * time.Second); ; {
		e.mu.Lock()
		_, waiting := e.locks.waitingFor[ownerA]
		e.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("owner A never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	err := e.SetLk(ctx, userCaller, ino, h, ownerB, lockRange(syscall.F_WRLCK, 0, 0), true)
	wantErrno(t, err, syscall.EDEADLK)
	cancel()
	wantErrno(t, <-done, syscall.EINTR)
}

func TestFlockConversions(t *testing.T) {
	e, ino, h1 := lockFixture(t)
	h2, err := e.Open(ctx, userCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)

	mustOK(t, e.Flock(ctx, userCaller, ino, h1, syscall.LOCK_SH, false))
	mustOK(t, e.Flock(ctx, userCaller, ino, h2, syscall.LOCK_SH, false))
	wantErrno(t, e.Flock(ctx, userCaller, ino, h1, syscall.LOCK_EX, false), syscall.EAGAIN)
	wantErrno(t, e.Flock(ctx, userCaller, ino, h2, syscall.LOCK_EX|syscall.LOCK_NB, true), syscall.EAGAIN)

	mustOK(t, e.Flock(ctx, userCaller, ino, h2, syscall.LOCK_UN, false))
	mustOK(t, e.Flock(ctx, userCaller, ino, h1, syscall.LOCK_EX, false))
	wantErrno(t, e.Flock(ctx, userCaller, ino, h2, syscall.LOCK_SH, false), syscall.EAGAIN)

	// Downgrade wakes a waiting shared locker.
	done := make(chan error, 1)
	go func() { done <- e.Flock(ctx, userCaller, ino, h2, syscall.LOCK_SH, true) }()
	time.Sleep(20 * time.Millisecond)
	mustOK(t, e.Flock(ctx, userCaller, ino, h1, syscall.LOCK_SH, false))
	select {
	case err := <-done:
		mustOK(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("shared flock was not granted after the downgrade")
	}
	wantErrno(t, e.Flock(ctx, userCaller, ino, h1, 0x40, false), syscall.EINVAL)
}

func TestFlockReleasedOnRelease(t *testing.T) {
	e, ino, h1 := lockFixture(t)
	h2, err := e.Open(ctx, userCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)
	mustOK(t, e.Flock(ctx, userCaller, ino, h1, syscall.LOCK_EX, false))

	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	wantErrno(t, e.Flock(waitCtx, userCaller, ino, h2, syscall.LOCK_EX, true), syscall.EINTR)

	mustOK(t, e.Release(ctx, ino, h1))
	mustOK(t, e.Flock(ctx, userCaller, ino, h2, syscall.LOCK_EX, false))
}

func TestLocksAreNotJournaled(t *testing.T) {
	e, ino, h := lockFixture(t)
	j := e.journal.(*memJournal)
	entries := len(j.snapshot())
	mustOK(t, e.SetLk(ctx, userCaller, ino, h, ownerA, lockRange(syscall.F_WRLCK, 0, 9), false))
	mustOK(t, e.Flock(ctx, userCaller, ino, h, syscall.LOCK_EX, false))
	if got := len(j.snapshot()); got != entries {
		t.Errorf("journal grew from %d to %d entries on locking, expected no entries", entries, got)
	}
}
