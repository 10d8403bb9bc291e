// Package ratelog limits repeated log lines, such as one per rejected
// peer, so that a flood of bad input cannot flood the log.
package ratelog

import (
	"sync"
	"time"
)

// Burst is the number of lines allowed in each one-second window. Lines
// beyond it are counted and reported by the next line allowed.
const Burst = 10

// Limiter allows at most Burst lines in each one-second window. The zero
// value is ready to use.
type Limiter struct {
	mu         sync.Mutex
	window     time.Time
	lines      int
	suppressed int
}

// Allow reports whether a line may be logged at now, and the number of
// lines suppressed since the last one allowed.
func (r *Limiter) Allow(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.window) >= time.Second {
		r.window = now
		r.lines = 0
	}
	if r.lines >= Burst {
		r.suppressed++
		return false, 0
	}
	r.lines++
	suppressed := r.suppressed
	r.suppressed = 0
	return true, suppressed
}
