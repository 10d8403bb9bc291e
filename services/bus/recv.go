package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/blocktree/blocktree/services/bus/ring"
)

// Message is a received message.
type Message struct {
	Kind uint32
	// Data is the payload. A payload below the connection's copy threshold
	// is a private copy. A larger one is a view into the shared memory,
	// valid until Release or the connection's Close. The peer can still
	// write to that memory, so a decoder must read each value once or copy
	// what it checks.
	Data []byte

	hold *holdToken // nil for a copied payload
}

// holdToken tracks a message whose record is still held in the ring.
type holdToken struct {
	c        *Conn
	released bool
}

// InPlace reports whether Data is a view into the shared memory.
func (m Message) InPlace() bool { return m.hold != nil }

// Release frees the message's space in the ring for the peer. The ring
// frees space in the order of receipt, so the space of a message comes back
// once every earlier message is released too. Release of a copied message,
// a second Release, and Release after Close do nothing.
func (m Message) Release() {
	if m.hold == nil {
		return
	}
	c := m.hold.c
	if c.begin() != nil {
		return
	}
	defer c.end()

	c.consumerMu.Lock()
	defer c.consumerMu.Unlock()
	m.hold.released = true
	c.releaseHeld()
}

// releaseHeld releases, in ring order, every held record at the front of
// the queue whose message is released. The caller holds consumerMu.
func (c *Conn) releaseHeld() {
	n := 0
	for n < len(c.heldRecords) && c.heldRecords[n].released {
		// The ring holds exactly the records in c.heldRecords, so Release
		// does not fail.
		_ = c.consumer.Release()
		n++
	}
	if n == 0 {
		return
	}
	copy(c.heldRecords, c.heldRecords[n:])
	clear(c.heldRecords[len(c.heldRecords)-n:])
	c.heldRecords = c.heldRecords[:len(c.heldRecords)-n]
}

// Recv returns the next message, waiting until one arrives, ctx is done or
// the connection stops. After the peer is gone, Recv returns the messages
// it committed before and then ErrPeerGone.
func (c *Conn) Recv(ctx context.Context) (Message, error) {
	if err := c.begin(); err != nil {
		return Message{}, err
	}
	defer c.end()
	if err := c.acquire(ctx, c.recvSlot); err != nil {
		return Message{}, err
	}
	defer func() { <-c.recvSlot }()

	// Poll the ring for up to spinTime before requesting a wake-up, so a
	// reply that comes within that time costs no system call on either
	// side, unless polling has stopped paying off on this connection.
	spin := c.recvSpin.shouldSpin()
	var spinUntil time.Time
	slept, inWindow := false, false
	for {
		spinning := spin && (spinUntil.IsZero() || time.Now().Before(spinUntil))
		msg, err := c.tryRecv(!spinning)
		if err == nil && c.recvWaiter.local == nil {
			c.recvClock.record(time.Now(), slept)
		}
		if err == nil || !errors.Is(err, ring.ErrEmpty) {
			c.recvSpin.record(slept)
			return msg, err
		}
		if spinning {
			if err := ctx.Err(); err != nil {
				return Message{}, err
			}
			if spinUntil.IsZero() {
				spinUntil = time.Now().Add(spinTime)
			}
			runtime.Gosched()
			continue
		}
		// At a steady rate, sleep until the next message is due and poll
		// from then on (see arrivalClock). tryRecv armed the wake-up, so
		// a message that comes earlier still ends the sleep. A signal
		// before the window with no message behind it (one left over from
		// an earlier wake-up, or a peer's stray write) leads to another
		// timed sleep, not to polling.
		if !inWindow && c.recvWaiter.local == nil {
			if from, until, ok := c.recvClock.window(); ok && time.Now().Before(until) && acquireTimedSleep() {
				c.timedSleeps.Add(1)
				woken, err := c.sleepUntil(ctx, from)
				releaseTimedSleep()
				if err != nil {
					return Message{}, err
				}
				if woken {
					slept = true
					continue
				}
				inWindow, slept = true, false
				spin, spinUntil = true, until
				continue
			}
		}
		if err := c.recvWaiter.wait(ctx, c.stopped); err != nil {
			return Message{}, err
		}
		slept = true
	}
}

// sleepUntil sleeps until from unless the peer commits a message before,
// Close or a dead peer stops the connection, or ctx ends. It then disarms
// the wake-up that the caller armed, so that the peer does not signal
// while Recv polls, and reports whether the peer's signal ended the sleep.
// It returns ctx's error when ctx ended first, also when ctx's deadline
// has passed and its timer has not fired yet. Because interrupt cannot end
// the waiter's timed sleep, it sleeps in pieces of at most maxTimedSleep
// and checks the connection and ctx between them.
func (c *Conn) sleepUntil(ctx context.Context, from time.Time) (bool, error) {
	deadline := from
	ctxDeadline, hasDeadline := ctx.Deadline()
	if hasDeadline && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	}
	woken := false
	for !woken && !c.stopped() && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		piece := now.Add(maxTimedSleep)
		if deadline.Before(piece) {
			piece = deadline
		}
		var err error
		if woken, err = c.recvWaiter.sleepUntil(piece); err != nil {
			return false, err
		}
		if !woken && piece.Equal(from) {
			c.recvClock.recordWake(from, time.Now())
		}
	}
	c.consumerMu.Lock()
	c.consumer.DisarmWakeup()
	c.consumerMu.Unlock()
	if err := ctx.Err(); err != nil {
		return woken, err
	}
	if !woken && hasDeadline && !time.Now().Before(ctxDeadline) {
		return false, context.DeadlineExceeded
	}
	return woken, nil
}

// timedSleepSlots limits the Recvs of this process that sleep with a
// timer at once. Such a sleep blocks an OS thread, where a sleep on the
// eventfd parks only a goroutine, so a process with many steady
// connections must not spend a thread on each. The slot is not held while
// Recv polls: the limit on polling is per connection (see window).
var timedSleepSlots = make(chan struct{}, maxTimedSleepers)

const maxTimedSleepers = 4

// acquireTimedSleep takes a slot for a timed sleep if one is free.
func acquireTimedSleep() bool {
	select {
	case timedSleepSlots <- struct{}{}:
		return true
	default:
		return false
	}
}

func releaseTimedSleep() { <-timedSleepSlots }

// maxTimedSleep is the longest piece of a timed sleep, and so how long a
// Close or a context's end may wait for a Recv in one.
const maxTimedSleep = time.Millisecond

// tryRecv returns the next message, or an error wrapping ring.ErrEmpty.
// With arm set, it requests a wake-up from the peer before it returns
// ring.ErrEmpty.
func (c *Conn) tryRecv(arm bool) (Message, error) {
	c.consumerMu.Lock()
	defer c.consumerMu.Unlock()

	if err := c.failure(); err != nil && !errors.Is(err, ErrPeerGone) {
		return Message{}, err
	}

	rec, err := c.consumer.Next()
	if arm && errors.Is(err, ring.ErrEmpty) {
		// Sleep only if the ring is still empty after requesting a wake-up,
		// as the package ring documentation explains.
		c.consumer.ArmWakeup()
		rec, err = c.consumer.Next()
		if err == nil {
			c.consumer.DisarmWakeup()
		}
	}
	if errors.Is(err, ring.ErrEmpty) {
		failure := c.failure()
		if failure == nil {
			return Message{}, err
		}
		// The peer's last commits came before its socket closed, so a head
		// read after the failure was seen includes all of them.
		rec, err = c.consumer.Next()
		if errors.Is(err, ring.ErrEmpty) {
			return Message{}, failure
		}
	}
	if err != nil {
		err = fmt.Errorf("bus receive from pid %d: %w", c.peer.PID, err)
		c.fail(err)
		return Message{}, err
	}

	if len(rec.Data) < c.copyThreshold {
		msg := Message{Kind: rec.Kind, Data: bytes.Clone(rec.Data)}
		c.heldRecords = append(c.heldRecords, &c.copied)
		c.releaseHeld()
		return msg, nil
	}
	token := &holdToken{c: c}
	c.heldRecords = append(c.heldRecords, token)
	return Message{Kind: rec.Kind, Data: rec.Data, hold: token}, nil
}

const spinTime = 20 * time.Microsecond

// Polling pays off on a busy stream. It wastes a core's time on a
// connection whose messages come further apart than spinTime, such as a
// FUSE request after the kernel has handled the previous one. On two
// cores the poll then takes time from the very processes that would send.
// A Recv therefore stops polling after maxSpinMisses polls in a row ended
// in a sleep. It polls again once a message is waiting when a Recv starts,
// and every spinProbeEvery Recvs, to notice a stream that got busy.
const (
	maxSpinMisses  = 2
	spinProbeEvery = 16
)

// spinPolicy is the state behind that rule.
type spinPolicy struct {
	misses  int
	skipped int
}

// shouldSpin reports whether the next Recv polls.
func (p *spinPolicy) shouldSpin() bool {
	if p.misses < maxSpinMisses {
		return true
	}
	p.skipped++
	if p.skipped >= spinProbeEvery {
		p.skipped = 0
		return true
	}
	return false
}

// record updates the policy after a Recv got its message, with slept
// telling whether the Recv had to sleep for it.
func (p *spinPolicy) record(slept bool) {
	if slept {
		p.misses = min(p.misses+1, maxSpinMisses)
		return
	}
	p.misses, p.skipped = 0, 0
}
