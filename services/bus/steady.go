package bus

import (
	"slices"
	"time"
)

// A receiver that sleeps between messages pays for a wake-up with each
// one: on the virtual machines that Blocktree is measured on, the peer's
// eventfd write takes tens of microseconds to get the receiver running
// again, far more than the ring itself costs. When messages come at a
// steady rate, the receiver can instead sleep with a timer until just
// before the next one is due. It then polls the ring, so that the message
// finds it running.
//
// arrivalClock learns the rate from the times at which Recv takes
// messages. It offers a polling window from the spread of the latest
// intervals. The shortest and the longest few are left out, so that a late
// message and the one that follows it at once do not widen the window.
// The clock offers it only while it is a small share of the interval. A connection with
// irregular or fast traffic keeps the plain sleep on the eventfd.
type arrivalClock struct {
	last      time.Time                     // when the latest message arrived, as estimated
	intervals [arrivalHistory]time.Duration // the latest times between messages, as a ring
	samples   int                           // intervals recorded, of which the ring keeps the latest
	wake      time.Duration                 // smoothed time from a timer's expiry to running
}

const (
	// arrivalHistory is how many intervals the clock keeps; it offers a
	// window once it has them all.
	arrivalHistory = 16
	// arrivalOutliers is how many of the shortest and of the longest kept
	// intervals the window leaves out.
	arrivalOutliers = 2
	// maxSteadyInterval is the longest interval that the clock offers a
	// window for. Beyond it, a wake-up is a small part of the time between
	// messages.
	maxSteadyInterval = 10 * time.Millisecond
	// windowDivisor limits the window to the median interval divided by
	// it, so that polling takes at most a quarter of a core per
	// connection.
	windowDivisor = 4
	// initialWake is the wake-up time assumed before any timer sleep
	// measured it. It is an estimate for a virtual machine.
	initialWake = 50 * time.Microsecond
	// pollMargin is added on both sides of the window.
	pollMargin = 10 * time.Microsecond
)

func newArrivalClock() arrivalClock { return arrivalClock{wake: initialWake} }

// record notes a message taken from the ring at now. woken is true when
// Recv slept on the eventfd for it, and the message then arrived about one
// wake-up earlier. The clock takes a timer's wake-up time for that of the
// eventfd, which it cannot measure: an estimate.
func (a *arrivalClock) record(now time.Time, woken bool) {
	if woken {
		now = now.Add(-a.wake)
	}
	last := a.last
	a.last = now
	if last.IsZero() {
		return
	}
	a.intervals[a.samples%arrivalHistory] = now.Sub(last)
	a.samples++
}

// recordWake notes that a timer set to expire at deadline had the
// receiver running again at now.
func (a *arrivalClock) recordWake(deadline, now time.Time) {
	late := max(now.Sub(deadline), 0)
	a.wake += (late - a.wake) / 4
}

// window returns when Recv should start polling for the next message
// (from) and when it should give up and sleep on the eventfd (until). ok
// is false while the rate is not steady or the window would be too long.
func (a *arrivalClock) window() (from, until time.Time, ok bool) {
	if a.samples < arrivalHistory {
		return time.Time{}, time.Time{}, false
	}
	sorted := a.intervals
	slices.Sort(sorted[:])
	shortest, median, longest := sorted[arrivalOutliers], sorted[arrivalHistory/2], sorted[arrivalHistory-1-arrivalOutliers]
	if median > maxSteadyInterval {
		return time.Time{}, time.Time{}, false
	}
	from = a.last.Add(shortest - a.wake - pollMargin)
	until = a.last.Add(longest + pollMargin)
	if until.Sub(from) > median/windowDivisor {
		return time.Time{}, time.Time{}, false
	}
	return from, until, true
}
