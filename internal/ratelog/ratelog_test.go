package ratelog

import (
	"testing"
	"time"
)

func TestLimiterBurstPerSecond(t *testing.T) {
	var limiter Limiter
	start := time.Unix(1000, 0)
	allowed := 0
	for i := range 15 {
		ok, suppressed := limiter.Allow(start.Add(time.Duration(i) * time.Millisecond))
		if ok {
			allowed++
		}
		if suppressed != 0 {
			t.Errorf("line %d reports %d suppressed lines in the first window", i, suppressed)
		}
	}
	if allowed != Burst {
		t.Errorf("allowed %d lines in one second, expected %d", allowed, Burst)
	}

	ok, suppressed := limiter.Allow(start.Add(time.Second))
	if !ok {
		t.Error("first line of the next second was suppressed")
	}
	if suppressed != 15-Burst {
		t.Errorf("next line reports %d suppressed lines, expected %d", suppressed, 15-Burst)
	}
}
