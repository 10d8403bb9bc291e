package fsys

import (
	"context"
	"math"
	"slices"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// maxDeadlockSteps bounds the walk along the chain of waiting lock owners,
// with the value of MAX_DEADLK_ITERATIONS in Linux's fs/locks.c. A longer
// cycle goes undetected, and its waiters wait until their contexts end.
const maxDeadlockSteps = 10

// posixLock is one byte range held by a lock owner, [start, end] inclusive.
type posixLock struct {
	owner      uint64
	pid        uint32
	start, end uint64
	typ        uint32 // syscall.F_RDLCK or syscall.F_WRLCK
}

func (l *posixLock) overlaps(start, end uint64) bool { return l.start <= end && start <= l.end }

// inodeLocks are the locks of one inode.
type inodeLocks struct {
	posix  []posixLock
	flocks map[fsapi.HandleID]uint32 // handle → LOCK_SH or LOCK_EX

	// changed is closed, and replaced, whenever a lock is released or
	// weakened, to wake every waiter; each waiter then checks again.
	changed chan struct{}
}

// lockTable holds the POSIX record locks and flock locks of every inode.
// Locks live only in this daemon's memory: they are not journaled and do not
// survive a restart, as on a local file system after a reboot. e.mu guards
// the table.
type lockTable struct {
	inodes map[fsapi.Ino]*inodeLocks
	// waitingFor maps an owner blocked in SetLk to the owner that holds the
	// lock it waits for, for deadlock detection.
	waitingFor map[uint64]uint64
}

func (t *lockTable) init() {
	t.inodes = make(map[fsapi.Ino]*inodeLocks)
	t.waitingFor = make(map[uint64]uint64)
}

func (t *lockTable) get(ino fsapi.Ino) *inodeLocks {
	il := t.inodes[ino]
	if il == nil {
		il = &inodeLocks{flocks: make(map[fsapi.HandleID]uint32), changed: make(chan struct{})}
		t.inodes[ino] = il
	}
	return il
}

// forget drops the locks of a freed inode and wakes its waiters.
func (t *lockTable) forget(ino fsapi.Ino) {
	if il := t.inodes[ino]; il != nil {
		close(il.changed)
		delete(t.inodes, ino)
	}
}

func (il *inodeLocks) notify() {
	close(il.changed)
	il.changed = make(chan struct{})
}

// conflict returns the first lock of another owner that keeps owner from
// taking a lock of typ over [start, end], or nil.
func (il *inodeLocks) conflict(owner uint64, typ uint32, start, end uint64) *posixLock {
	for i := range il.posix {
		l := &il.posix[i]
		if l.owner != owner && l.overlaps(start, end) && (typ == syscall.F_WRLCK || l.typ == syscall.F_WRLCK) {
			return l
		}
	}
	return nil
}

// set makes owner hold typ over [start, end], or nothing there for
// F_UNLCK: the owner's locks over the range are cut out (splitting a lock
// that covers more), the new lock goes in, and it merges with the owner's
// adjacent or overlapping locks of the same type, as fcntl(2) describes.
func (il *inodeLocks) set(owner uint64, pid uint32, typ uint32, start, end uint64) {
	var kept []posixLock
	for _, l := range il.posix {
		if l.owner != owner || !l.overlaps(start, end) {
			kept = append(kept, l)
			continue
		}
		if l.start < start {
			left := l
			left.end = start - 1
			kept = append(kept, left)
		}
		if l.end > end {
			right := l
			right.start = end + 1
			kept = append(kept, right)
		}
	}
	if typ != syscall.F_UNLCK {
		kept = append(kept, posixLock{owner: owner, pid: pid, start: start, end: end, typ: typ})
	}
	il.posix = mergeLocks(kept)
	// Any change may let a waiter in: an unlock frees a range and a
	// downgrade from write to read admits readers.
	il.notify()
}

// mergeLocks sorts locks and joins the adjacent or overlapping locks of one
// owner and type.
func mergeLocks(locks []posixLock) []posixLock {
	slices.SortFunc(locks, func(a, b posixLock) int {
		switch {
		case a.owner != b.owner:
			return cmpUint64(a.owner, b.owner)
		case a.typ != b.typ:
			return cmpUint64(uint64(a.typ), uint64(b.typ))
		default:
			return cmpUint64(a.start, b.start)
		}
	})
	var merged []posixLock
	for _, l := range locks {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if last.owner == l.owner && last.typ == l.typ && (last.end == math.MaxUint64 || l.start <= last.end+1) {
				last.end = max(last.end, l.end)
				last.pid = l.pid
				continue
			}
		}
		merged = append(merged, l)
	}
	return merged
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// releaseOwner drops every POSIX lock of owner on ino.
func (t *lockTable) releaseOwner(ino fsapi.Ino, owner uint64) {
	il := t.inodes[ino]
	if il == nil {
		return
	}
	il.posix = slices.DeleteFunc(il.posix, func(l posixLock) bool { return l.owner == owner })
	il.notify()
}

// deadlocks reports whether owner waiting for holder would close a cycle
// of owners that wait for each other.
func (t *lockTable) deadlocks(owner, holder uint64) bool {
	for range maxDeadlockSteps {
		if holder == owner {
			return true
		}
		next, waiting := t.waitingFor[holder]
		if !waiting {
			return false
		}
		holder = next
	}
	return false
}

func checkLockRange(lk fsapi.Lock) error {
	if lk.Start > lk.End {
		return syscall.EINVAL
	}
	return nil
}

// GetLk returns the first lock of another owner that conflicts with lk, or
// lk with type F_UNLCK when none does (F_GETLK).
func (e *Engine) GetLk(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, owner uint64, lk fsapi.Lock) (fsapi.Lock, error) {
	if lk.Type != syscall.F_RDLCK && lk.Type != syscall.F_WRLCK {
		return fsapi.Lock{}, syscall.EINVAL
	}
	if err := checkLockRange(lk); err != nil {
		return fsapi.Lock{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.handleFor(id, ino); err != nil {
		return fsapi.Lock{}, err
	}
	if _, err := e.node(ino); err != nil {
		return fsapi.Lock{}, err
	}
	if il := e.locks.inodes[ino]; il != nil {
		if l := il.conflict(owner, lk.Type, lk.Start, lk.End); l != nil {
			return fsapi.Lock{Start: l.start, End: l.end, Type: l.typ, PID: l.pid}, nil
		}
	}
	lk.Type = syscall.F_UNLCK
	return lk, nil
}

// SetLk takes or releases a POSIX record lock (F_SETLK, and F_SETLKW with
// wait). Without wait, a lock that conflicts with another owner's returns
// EAGAIN. With wait, SetLk blocks without holding the engine lock until the
// lock is granted (nil), ctx ends (EINTR) or waiting would deadlock (EDEADLK).
// A read lock needs a handle open for reading and a write lock one open for
// writing (EBADF), as fcntl(2) requires.
func (e *Engine) SetLk(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, owner uint64, lk fsapi.Lock, wait bool) error {
	if lk.Type != syscall.F_RDLCK && lk.Type != syscall.F_WRLCK && lk.Type != syscall.F_UNLCK {
		return syscall.EINVAL
	}
	if err := checkLockRange(lk); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		h, err := e.handleFor(id, ino)
		if err != nil {
			return err
		}
		if lk.Type == syscall.F_RDLCK && !h.readable() || lk.Type == syscall.F_WRLCK && !h.writable() {
			return syscall.EBADF
		}
		il := e.locks.get(ino)
		if lk.Type == syscall.F_UNLCK {
			il.set(owner, lk.PID, lk.Type, lk.Start, lk.End)
			return nil
		}
		if _, err := e.node(ino); err != nil {
			return err
		}
		holder := il.conflict(owner, lk.Type, lk.Start, lk.End)
		if holder == nil {
			il.set(owner, lk.PID, lk.Type, lk.Start, lk.End)
			return nil
		}
		if !wait {
			return syscall.EAGAIN
		}
		if e.locks.deadlocks(owner, holder.owner) {
			return syscall.EDEADLK
		}
		if err := e.waitForLocks(ctx, il, owner, holder.owner); err != nil {
			return err
		}
	}
}

// waitForLocks waits, with e.mu released, until a lock of il changes or ctx
// ends. e.mu is held on entry and on return.
func (e *Engine) waitForLocks(ctx context.Context, il *inodeLocks, owner, holder uint64) error {
	changed := il.changed
	e.locks.waitingFor[owner] = holder
	e.mu.Unlock()
	var err error
	select {
	case <-changed:
	case <-ctx.Done():
		err = syscall.EINTR
	}
	e.mu.Lock()
	delete(e.locks.waitingFor, owner)
	return err
}

// Flock takes (LOCK_SH, LOCK_EX) or releases (LOCK_UN) the whole-file lock
// of the open file description id; LOCK_NB in how means the same as wait
// false. Converting a held lock keeps it when the new one cannot be had
// without waiting and wait is false (EAGAIN). With wait, the old lock is
// dropped before waiting, as Linux does, so two holders of shared locks who
// both ask for an exclusive one do not deadlock.
func (e *Engine) Flock(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, id fsapi.HandleID, how uint32, wait bool) error {
	if how&syscall.LOCK_NB != 0 {
		how &^= syscall.LOCK_NB
		wait = false
	}
	if how != syscall.LOCK_SH && how != syscall.LOCK_EX && how != syscall.LOCK_UN {
		return syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		h, err := e.handleFor(id, ino)
		if err != nil {
			return err
		}
		if how == syscall.LOCK_UN {
			e.releaseFlock(h)
			return nil
		}
		if _, err := e.node(ino); err != nil {
			return err
		}
		il := e.locks.get(ino)
		if !flockConflicts(il, id, how) {
			weaker := h.flock == syscall.LOCK_EX && how == syscall.LOCK_SH
			il.flocks[id] = how
			h.flock = how
			if weaker {
				il.notify()
			}
			return nil
		}
		if !wait {
			return syscall.EAGAIN
		}
		e.releaseFlock(h)
		changed := il.changed
		e.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			err = syscall.EINTR
		}
		e.mu.Lock()
		if err != nil {
			return err
		}
	}
}

// flockConflicts reports whether another handle's flock keeps id from
// taking how.
func flockConflicts(il *inodeLocks, id fsapi.HandleID, how uint32) bool {
	for other, held := range il.flocks {
		if other != id && (how == syscall.LOCK_EX || held == syscall.LOCK_EX) {
			return true
		}
	}
	return false
}

// releaseFlock drops the flock of h, if it holds one. e.mu is held.
func (e *Engine) releaseFlock(h *handle) {
	if h.flock == 0 {
		return
	}
	h.flock = 0
	if il := e.locks.inodes[h.ino]; il != nil {
		delete(il.flocks, h.id)
		il.notify()
	}
}
