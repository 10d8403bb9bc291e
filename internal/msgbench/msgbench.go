// Package msgbench measures message round trips for the benchmarks of the
// bus (services/bus) and of netd (tests/netns), so that both report the
// same figures. These are latency percentiles of single round trips, back
// to back or paced at a fixed request rate, and ratios against a baseline
// measured earlier in the same run.
package msgbench

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// Baselines stores the figures of baseline sub-benchmarks, so that the
// sub-benchmarks after them in the same process can report a ratio. The
// zero value is ready to use.
//
// With -count N, go test runs each sub-benchmark N times in a row, so all
// runs of a baseline come before the runs compared with it. The ratio is
// taken against the median of the baseline's runs, so that one disturbed
// run of the baseline does not skew every ratio after it.
type Baselines struct {
	mu      sync.Mutex
	figures map[string][]float64
}

// Record stores value, measured in b, as a figure of the baseline name,
// usually the full name of a sub-benchmark (testing.B.Name). go test
// calls a benchmark first with b.N = 1 and then with larger b.N until it
// runs long enough, so a call with b.N = 1 starts a new figure and each
// later call replaces it. That keeps the figure of the final call.
func (bl *Baselines) Record(b *testing.B, name string, value float64) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if bl.figures == nil {
		bl.figures = make(map[string][]float64)
	}
	figures := bl.figures[name]
	if b.N == 1 || len(figures) == 0 {
		figures = append(figures, value)
	} else {
		figures[len(figures)-1] = value
	}
	bl.figures[name] = figures
}

// ReportRatio reports the median of the baseline's figures divided by
// value as the metric unit. It reports nothing when the baseline did not
// run, as when a -bench pattern selects only some sub-benchmarks.
func (bl *Baselines) ReportRatio(b *testing.B, baseline string, value float64, unit string) {
	bl.mu.Lock()
	figures := slices.Clone(bl.figures[baseline])
	bl.mu.Unlock()
	if len(figures) == 0 || value == 0 {
		return
	}
	b.ReportMetric(median(figures)/value, unit)
}

// median returns the median of values, which must not be empty.
func median(values []float64) float64 {
	slices.Sort(values)
	n := len(values)
	if n%2 == 1 {
		return values[n/2]
	}
	return (values[n/2-1] + values[n/2]) / 2
}

// NsPerOp returns b's elapsed time per iteration in nanoseconds, 0 before
// any iteration.
func NsPerOp(b *testing.B) float64 {
	if b.N == 0 {
		return 0
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}

// RoundTrips calls roundTrip b.N times, starting one call every interval,
// or back to back when interval is 0, and times each call. It reports the
// 50th, 99th and 99.9th percentiles of those times as p50-ns, p99-ns and
// p99.9-ns, and returns the 50th percentile in nanoseconds. With fewer
// than 1000 calls the 99.9th percentile is the slowest call.
func RoundTrips(b *testing.B, interval time.Duration, roundTrip func() error) float64 {
	if interval == 0 {
		return timeRoundTrips(b, func() {}, roundTrip)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	return timeRoundTrips(b, func() { <-ticker.C }, roundTrip)
}

// IrregularRoundTrips is RoundTrips with a random gap between shortest and
// longest from the start of one call to the start of the next, so that a
// receiver cannot foresee when the next request comes. The gaps come from
// time.Sleep. Go's poller on Linux waits in whole milliseconds
// (runtime/netpoll_epoll.go), so in an idle process they end near whole
// milliseconds.
func IrregularRoundTrips(b *testing.B, shortest, longest time.Duration, roundTrip func() error) float64 {
	next := time.Now()
	return timeRoundTrips(b, func() {
		time.Sleep(time.Until(next))
		next = time.Now().Add(shortest + rand.N(longest-shortest))
	}, roundTrip)
}

// timeRoundTrips calls wait and then roundTrip b.N times, timing each call
// of roundTrip, and reports as RoundTrips does.
func timeRoundTrips(b *testing.B, wait func(), roundTrip func() error) float64 {
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		wait()
		start := time.Now()
		if err := roundTrip(); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()

	slices.Sort(times)
	p50 := Percentile(times, 0.50)
	b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(Percentile(times, 0.99).Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(Percentile(times, 0.999).Nanoseconds()), "p99.9-ns")
	return float64(p50.Nanoseconds())
}

// Percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method: the smallest value that at least q of the values
// do not exceed. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
