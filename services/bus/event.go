package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// waiter sleeps on an eventfd through Go's netpoller. The fd is
// non-blocking, so os.NewFile registers it with the poller, and a wait
// that finds the counter at 0 parks the goroutine instead of blocking its
// thread.
//
// The peer holds the same open file description and could clear its
// O_NONBLOCK flag with fcntl(2), which would turn a plain read(2) into one
// that blocks a thread. The waiter therefore reads with preadv2(2) and
// RWF_NOWAIT, which returns EAGAIN whether or not O_NONBLOCK is set.
//
// A waiter of a connection whose peer is this process sleeps on a channel
// instead (see localLink), and interrupt then sends to its own channel.
type waiter struct {
	f   *os.File
	raw syscall.RawConn

	local       chan struct{} // wake-ups from the peer, or nil when the waiter reads its eventfd
	interrupted chan struct{} // interrupts of a waiter that uses local
}

// useLocal makes the waiter sleep on ch instead of its eventfd.
func (w *waiter) useLocal(ch chan struct{}) {
	w.local = ch
	w.interrupted = make(chan struct{}, 1)
}

// aLongTimeAgo is a read deadline in the past; setting it makes a pending
// read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// newWaiter takes ownership of fd, which must be an eventfd.
func newWaiter(fd int, name string) (*waiter, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set eventfd %s non-blocking: %w", name, err)
	}
	// A non-blocking read also drains what a peer may have written before
	// the setup, which costs at most one spurious wake-up.
	if err := readNoWait(fd); err != nil && !errors.Is(err, unix.EAGAIN) {
		unix.Close(fd)
		return nil, fmt.Errorf("read eventfd %s with RWF_NOWAIT (the kernel must support it for eventfds): %w", name, err)
	}

	f := os.NewFile(uintptr(fd), name)
	// SetReadDeadline fails with os.ErrNoDeadline on a file that the
	// poller did not take.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("eventfd %s is not pollable: %w", name, err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("eventfd %s: %w", name, err)
	}
	return &waiter{f: f, raw: raw}, nil
}

// readNoWait resets the counter of an eventfd, or returns EAGAIN if it is 0.
func readNoWait(fd int) error {
	var buf [8]byte
	_, err := unix.Preadv2(fd, [][]byte{buf[:]}, -1, unix.RWF_NOWAIT)
	return err
}

// wait sleeps until the eventfd is signalled, interrupt is called, or ctx
// is done, and resets the eventfd's counter. It returns ctx.Err() for a
// done ctx and nil otherwise, also for a spurious wake-up; the caller
// checks its condition again. stopped reports a condition under which the
// caller must not sleep. wait checks it after clearing the deadline, so an
// interrupt that follows the condition is never lost.
func (w *waiter) wait(ctx context.Context, stopped func() bool) error {
	if w.local != nil {
		return w.waitLocal(ctx, stopped)
	}
	if err := w.f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("wait on eventfd %s: %w", w.f.Name(), err)
	}
	if stopped() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, w.interrupt)
	defer stop()

	var readErr error
	err := w.raw.Read(func(fd uintptr) bool {
		readErr = readNoWait(int(fd))
		return !errors.Is(readErr, unix.EAGAIN)
	})
	if err == nil {
		err = readErr
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		// An interrupt, or a late one from an earlier wait.
		return ctx.Err()
	default:
		return fmt.Errorf("read eventfd %s: %w", w.f.Name(), err)
	}
}

// sleepUntil blocks the calling thread in ppoll(2) until deadline or until
// the eventfd is signalled, and reports whether it was (resetting its
// counter then). Unlike wait, it has the precision of a kernel timer
// rather than the millisecond of Go's poller, but interrupt does not cut
// it short.
func (w *waiter) sleepUntil(deadline time.Time) (bool, error) {
	signalled := false
	var pollErr error
	err := w.raw.Control(func(fd uintptr) {
		// Linux lets a poll's timer expire up to the thread's timer slack
		// late, 50 µs by default. The thread gets a slack of 1 µs for
		// this sleep and its own slack back afterwards.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err == nil {
			_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(time.Microsecond), 0, 0, 0)
			defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(slack), 0, 0, 0)
		}
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return
			}
			timeout := unix.NsecToTimespec(left.Nanoseconds())
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Ppoll(fds, &timeout, nil)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				pollErr = err
				return
			case n > 0:
				signalled = true
				if err := readNoWait(int(fd)); err != nil && !errors.Is(err, unix.EAGAIN) {
					pollErr = err
				}
				return
			}
		}
	})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return false, fmt.Errorf("sleep on eventfd %s: %w", w.f.Name(), err)
	}
	return signalled, nil
}

// waitLocal is wait on the channel of a local link. An interrupt from
// before the call is dropped first, as wait clears the deadline.
func (w *waiter) waitLocal(ctx context.Context, stopped func() bool) error {
	select {
	case <-w.interrupted:
	default:
	}
	if stopped() {
		return nil
	}
	select {
	case <-w.local:
		return nil
	case <-w.interrupted:
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// interrupt makes a pending or the next wait return. It may race with
// Close, after which it does nothing.
func (w *waiter) interrupt() {
	if w.local != nil {
		wakeLocal(w.interrupted)
		return
	}
	_ = w.f.SetReadDeadline(aLongTimeAgo)
}

func (w *waiter) close() error { return w.f.Close() }

// signalEventfd adds 1 to the counter of an eventfd. EAGAIN means the
// counter is at its maximum, so the sleeper will wake anyway.
//
// A write blocks only when the counter is at its maximum and O_NONBLOCK is
// clear. The peer could arrange both, because it shares the open file
// description, so signalEventfd sets O_NONBLOCK again when it finds it
// clear. Writes have no RWF_NOWAIT for eventfds (pwritev2 returns
// EOPNOTSUPP on Linux 6.18).
//
// NOTE: a peer that clears O_NONBLOCK between the check and the write can
// still block the signalling thread until it reads the counter.
func signalEventfd(fd int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("signal eventfd %d: read flags: %w", fd, err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_NONBLOCK); err != nil {
			return fmt.Errorf("signal eventfd %d: set O_NONBLOCK: %w", fd, err)
		}
	}

	var increment [8]byte
	binary.NativeEndian.PutUint64(increment[:], 1)
	_, err = unix.Write(fd, increment[:])
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("signal eventfd %d: %w", fd, err)
	}
	return nil
}

func newEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("create eventfd: %w", err)
	}
	return fd, nil
}

// checkEventfd checks that a received fd is an eventfd, so that a peer
// cannot make this side block on or write into some other file.
func checkEventfd(fd int) error {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return fmt.Errorf("check received fd %d: %w", fd, err)
	}
	if target != "anon_inode:[eventfd]" {
		return fmt.Errorf("received fd %d is %q, want an eventfd", fd, target)
	}
	return nil
}
