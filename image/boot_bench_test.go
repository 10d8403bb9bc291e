package image

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// stepTimesLine is PID 1's log line with the duration of each boot step.
var stepTimesLine = regexp.MustCompile(`blocktree-init: boot step times ([^\n]*)`)

// BenchmarkApplianceBoot boots one device in QEMU under TCG with swtpm, as
// make run does. It splits each boot into the kernel's part (QEMU start to
// PID 1 start, the baseline) and PID 1's part (PID 1 start to the ready
// line). The first boot, which creates the keys, is reported on its own.
// Run it with: BT_IMAGE_TEST=1 go test -run '^$' -bench ApplianceBoot -benchtime 5x ./image/
func BenchmarkApplianceBoot(b *testing.B) {
	requireImageTest(b, "apt-get", "dpkg-deb", "depmod", "qemu-system-x86_64", "swtpm", "mkfs.ext4")
	art := buildImage(b)
	dev := newAppliance(b)

	first := dev.boot(b, art, defaultCmdline)
	_, firstPID1 := first.waitReady()
	first.poweroff()

	var total, pid1 time.Duration
	steps := map[string]time.Duration{}
	b.ResetTimer()
	for range b.N {
		v := dev.boot(b, art, defaultCmdline)
		boot, pid1Part := v.waitReady()
		total += boot
		pid1 += pid1Part
		for name, d := range parseStepTimes(b, v.waitMatch(0, commandTimeout, stepTimesLine)[1]) {
			steps[name] += d
		}
		b.StopTimer()
		v.poweroff()
		b.StartTimer()
	}

	// After the loop, because ResetTimer drops metrics reported before it.
	b.ReportMetric(float64(firstPID1.Milliseconds()), "first-boot-pid1-ms")
	n := float64(b.N)
	kernel := total - pid1
	b.ReportMetric(float64(total.Milliseconds())/n, "qemu-to-ready-ms")
	b.ReportMetric(float64(kernel.Milliseconds())/n, "qemu-to-pid1-ms")
	b.ReportMetric(float64(pid1.Milliseconds())/n, "pid1-to-ready-ms")
	b.ReportMetric(float64(pid1)/float64(kernel), "pid1/kernel")
	for name, d := range steps {
		b.ReportMetric(float64(d.Milliseconds())/n, "step-"+name+"-ms")
	}
}

// parseStepTimes parses "mount=3ms modules=120ms ..." from PID 1's boot
// step times line.
func parseStepTimes(tb testing.TB, text string) map[string]time.Duration {
	tb.Helper()
	steps := map[string]time.Duration{}
	for _, field := range strings.Fields(text) {
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			tb.Fatalf("boot step times: invalid field %q in %q", field, text)
		}
		d, err := time.ParseDuration(value)
		if err != nil {
			tb.Fatalf("boot step times: invalid duration in %q: %v", field, err)
		}
		steps[name] = d
	}
	return steps
}
