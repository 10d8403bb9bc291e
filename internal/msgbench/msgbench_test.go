package msgbench

import (
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 1000; i++ {
		sorted = append(sorted, time.Duration(i))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 500},
		{0.99, 990},
		{0.999, 999},
		{1, 1000},
		{0.0001, 1},
	} {
		if got := Percentile(sorted, tc.q); got != tc.want {
			t.Errorf("Percentile(1..1000, %v) = %d, want %d", tc.q, got, tc.want)
		}
	}
}

func TestPercentileFewValues(t *testing.T) {
	sorted := []time.Duration{10, 20, 30}
	if got := Percentile(sorted, 0.999); got != 30 {
		t.Errorf("Percentile of 3 values at 0.999 = %d, want the largest, 30", got)
	}
	if got := Percentile(sorted, 0.5); got != 20 {
		t.Errorf("Percentile of 3 values at 0.5 = %d, want 20", got)
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile of no values = %d, want 0", got)
	}
}

func TestMedianOddAndEven(t *testing.T) {
	if got := median([]float64{5, 1, 900}); got != 5 {
		t.Errorf("median(5, 1, 900) = %v, want 5", got)
	}
	if got := median([]float64{4, 2, 8, 6}); got != 5 {
		t.Errorf("median(4, 2, 8, 6) = %v, want 5", got)
	}
	if got := median([]float64{3}); got != 3 {
		t.Errorf("median(3) = %v, want 3", got)
	}
}

func TestBaselinesKeepFinalCall(t *testing.T) {
	var bl Baselines
	var finals []float64
	for range 3 {
		var last float64
		testing.Benchmark(func(b *testing.B) {
			bl.Record(b, "base", float64(b.N))
			last = float64(b.N)
		})
		finals = append(finals, last)
	}
	got := bl.figures["base"]
	if len(got) != 3 {
		t.Fatalf("%d figures after 3 benchmark runs, want 3: %v", len(got), got)
	}
	for i := range got {
		if got[i] != finals[i] {
			t.Errorf("figure %d = %v, want the final b.N of run %d, %v", i, got[i], i, finals[i])
		}
		if got[i] == 1 {
			t.Errorf("figure %d is the b.N = 1 call, want the final call", i)
		}
	}
}
