//go:build linux

package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// patience bounds every wait for a condition. It is far above the expected
// times, so that a loaded machine slows the tests down but does not fail
// them.
const patience = 20 * time.Second

// fastOptions returns options with short delays, so that restarts happen
// within milliseconds.
func fastOptions() Options {
	return Options{BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
}

// recorder is a console that keeps each line with the time it was written.
type recorder struct {
	mu    sync.Mutex
	lines []string
	times []time.Time
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for _, line := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
		r.lines = append(r.lines, line)
		r.times = append(r.times, now)
	}
	return len(p), nil
}

func (r *recorder) snapshot() ([]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...), append([]time.Time(nil), r.times...)
}

// index returns the index of the first line at or after from that starts
// with prefix, or -1.
func (r *recorder) index(prefix string, from int) int {
	lines, _ := r.snapshot()
	for i := max(from, 0); i < len(lines); i++ {
		if strings.HasPrefix(lines[i], prefix) {
			return i
		}
	}
	return -1
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs a supervisor for one test. Its cleanup stops the supervisor,
// checks that no goroutine is left and prints the console and the log if
// the test failed.
type harness struct {
	t       *testing.T
	sup     *Supervisor
	console *recorder
	log     *syncBuffer
	runDone chan struct{}
	runErr  error
}

func startSupervisor(t *testing.T, opts Options, services ...Service) *harness {
	t.Helper()
	h := &harness{t: t, console: &recorder{}, log: &syncBuffer{}, runDone: make(chan struct{})}
	opts.Console = h.console
	opts.Logger = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sup, err := New(opts, services...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.sup = sup

	go func() {
		h.runErr = sup.Run(context.Background())
		close(h.runDone)
	}()
	t.Cleanup(h.cleanup)
	return h
}

func (h *harness) cleanup() {
	if err := h.stop(); err != nil {
		h.t.Errorf("Stop in cleanup: %v", err)
	}
	checkNoLeaks(h.t)
	if h.t.Failed() {
		lines, _ := h.console.snapshot()
		h.t.Logf("console:\n%s", strings.Join(lines, "\n"))
		h.t.Logf("log:\n%s", h.log.String())
	}
}

// stop stops the supervisor and waits for Run to return.
func (h *harness) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := h.sup.Stop(ctx); err != nil {
		return err
	}
	select {
	case <-h.runDone:
		return h.runErr
	case <-ctx.Done():
		return fmt.Errorf("Run did not return after Stop: %w", ctx.Err())
	}
}

func (h *harness) waitReady(names ...string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	for _, name := range names {
		if err := h.sup.WaitReady(ctx, name); err != nil {
			h.t.Fatalf("WaitReady(%s): %v", name, err)
		}
	}
}

func (h *harness) status(name string) Status {
	h.t.Helper()
	for _, st := range h.sup.Status() {
		if st.Name == name {
			return st
		}
	}
	h.t.Fatalf("Status has no service %s", name)
	return Status{}
}

// waitFor polls cond until it holds, and fails the test after patience.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", patience, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLine waits for a console line that starts with prefix at or after
// index from, and returns its index.
func (h *harness) waitLine(prefix string, from int) int {
	h.t.Helper()
	index := -1
	h.waitFor(fmt.Sprintf("console line %q", prefix), func() bool {
		index = h.console.index(prefix, from)
		return index >= 0
	})
	return index
}

// checkNoLeaks fails the test if a goroutine still runs code of this
// package, other than tests, once Stop has returned.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked := supervisorGoroutines()
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines left after Stop:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func supervisorGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}

	var found []string
	for _, stack := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(stack, "\n") {
			if strings.Contains(line, "/init/supervise/") && !strings.Contains(line, "_test.go:") && strings.Contains(line, ".go:") {
				found = append(found, stack)
				break
			}
		}
	}
	return found
}

func TestWaitReadyAfterNotify(t *testing.T) {
	slow := notifyingChild(t, "slow", "CHILD_DELAY_MS=200", "CHILD_LINES=2")
	plain := childService(t, "plain", "CHILD_DELAY_MS=60000")
	h := startSupervisor(t, fastOptions(), slow, plain)

	h.waitReady("slow", "plain")

	st := h.status("slow")
	if st.State != StateReady {
		t.Errorf("slow: State = %s, want ready", st.State)
	}
	if st.PID == 0 {
		t.Error("slow: PID = 0 while ready")
	}
	if st.Restarts != 0 {
		t.Errorf("slow: Restarts = %d, want 0", st.Restarts)
	}
	// A service without NotifyReady is ready at start, long before its
	// child's 60 s delay ends.
	if st := h.status("plain"); st.State != StateReady {
		t.Errorf("plain: State = %s, want ready", st.State)
	}

	h.waitFor("slow's output in its ring", func() bool {
		return strings.Contains(strings.Join(h.sup.Logs("slow"), "\n"), "child notified")
	})
	logs := h.sup.Logs("slow")
	for _, want := range []string{"child started", `ready fd env "3"`, "line 1", "line 2", "child notified"} {
		if !containsLine(logs, want) {
			t.Errorf("Logs(slow) = %q, missing %q", logs, want)
		}
	}
	if !containsLine(h.sup.Logs("plain"), `ready fd env ""`) {
		t.Errorf("Logs(plain) = %q, want an empty BT_READY_FD", h.sup.Logs("plain"))
	}
	if i := h.console.index("slow: line 2", 0); i < 0 {
		t.Error(`console has no line "slow: line 2" (a stderr line)`)
	}
}

func containsLine(lines []string, want string) bool {
	for _, line := range lines {
		if line == want {
			return true
		}
	}
	return false
}

func TestNotReadyWithoutNotify(t *testing.T) {
	silent := notifyingChild(t, "silent", "CHILD_NOTIFY=0")
	h := startSupervisor(t, fastOptions(), silent)

	h.waitFor("the child's last line", func() bool { return containsLine(h.sup.Logs("silent"), "child skipped notify") })

	// The child is past the point where it would have notified.
	if st := h.status("silent"); st.State != StateStarting {
		t.Errorf("State = %s, want starting", st.State)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.sup.WaitReady(ctx, "silent"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady = %v, want a deadline error", err)
	}
}

func TestReadyFDNotInherited(t *testing.T) {
	t.Setenv(ReadyFDEnv, "99")
	h := startSupervisor(t, fastOptions(), childService(t, "plain"))

	h.waitReady("plain")
	h.waitFor("the child's environment line", func() bool {
		return len(h.sup.Logs("plain")) >= 2
	})
	if logs := h.sup.Logs("plain"); !containsLine(logs, `ready fd env ""`) {
		t.Errorf("Logs = %q, want BT_READY_FD removed", logs)
	}
}

// TestFilesInherited checks that Files reach every start of the child at
// the descriptor FileDescriptor names, beside the readiness pipe.
func TestFilesInherited(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "inherited")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("handed over"); err != nil {
		t.Fatal(err)
	}

	svc := notifyingChild(t, "reader", "CHILD_EXIT_AFTER_MS=50")
	svc.Files = []*os.File{f}
	if got := svc.FileDescriptor(0); got != 4 {
		t.Fatalf("FileDescriptor(0) with NotifyReady = %d, expected 4", got)
	}
	svc.Env = append(svc.Env, fmt.Sprintf("CHILD_READ_FD=%d", svc.FileDescriptor(0)))
	h := startSupervisor(t, fastOptions(), svc)

	want := `fd 4 contains "handed over" (EOF)`
	h.waitFor("two starts that read the file", func() bool {
		n := 0
		for _, line := range h.sup.Logs("reader") {
			if line == want {
				n++
			}
		}
		return n >= 2
	})
	if plain := (Service{}); plain.FileDescriptor(1) != 4 {
		t.Errorf("FileDescriptor(1) without NotifyReady = %d, expected 4", plain.FileDescriptor(1))
	}
}

func TestDependencyOrder(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "a-ready")
	a := notifyingChild(t, "a", "CHILD_DELAY_MS=300", "CHILD_READY_FILE="+marker)
	b := notifyingChild(t, "b", "CHILD_REQUIRE_FILE="+marker)
	b.After = []string{"a"}
	c := childService(t, "c")
	c.After = []string{"b"}
	// The order given to New is not the start order.
	h := startSupervisor(t, fastOptions(), c, b, a)

	h.waitReady("c")

	// b exits 3 if it starts before a has created the marker, which a
	// does before it notifies.
	st := h.status("b")
	if st.Restarts != 0 {
		t.Errorf("b: Restarts = %d, want 0", st.Restarts)
	}
	if st.LastExit != "" {
		t.Errorf("b: LastExit = %q, want no exit", st.LastExit)
	}
	aReady := h.console.index("supervise: a ready", 0)
	bStarted := h.console.index("supervise: b started", 0)
	bReady := h.console.index("supervise: b ready", 0)
	cStarted := h.console.index("supervise: c started", 0)
	if aReady < 0 || bStarted < aReady {
		t.Errorf("console line index of a ready = %d, b started = %d; want a ready first", aReady, bStarted)
	}
	if bReady < 0 || cStarted < bReady {
		t.Errorf("console line index of b ready = %d, c started = %d; want b ready first", bReady, cStarted)
	}
}

var restartLine = regexp.MustCompile(`^supervise: crash exited \(exit status 1\); restart (\d+) in (\S+)$`)

func TestRestartDelaysGrow(t *testing.T) {
	opts := Options{BackoffMin: 20 * time.Millisecond, BackoffMax: 5 * time.Second, CrashLoopLimit: -1}
	h := startSupervisor(t, opts, childService(t, "crash", "CHILD_EXIT_AFTER_MS=0"))

	h.waitFor("5 restarts", func() bool { return h.status("crash").Restarts >= 5 })
	if err := h.stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	lines, times := h.console.snapshot()
	var delays []time.Duration
	for i, line := range lines {
		m := restartLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if want := fmt.Sprint(len(delays) + 1); m[1] != want {
			t.Fatalf("line %q: restart number %s, want %s", line, m[1], want)
		}
		delay, err := time.ParseDuration(m[2])
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		delays = append(delays, delay)

		// The next start comes after the delay. Only half of it is
		// required, because the line is written a moment after the delay
		// is computed.
		next := h.console.index("supervise: crash started", i)
		if next >= 0 && times[next].Sub(times[i]) < delay/2 {
			t.Errorf("restart %d: started %s after the exit line, want about %s", len(delays), times[next].Sub(times[i]), delay)
		}
	}
	if len(delays) < 5 {
		t.Fatalf("found %d restart lines, want at least 5", len(delays))
	}

	// The nominal delays are 20, 40, 80, 160 and 320 ms, each ±20%, and
	// rounded to the millisecond on the console.
	nominal := 20 * time.Millisecond
	for i, delay := range delays[:5] {
		low := max(nominal*8/10, opts.BackoffMin) - time.Millisecond
		high := nominal*12/10 + time.Millisecond
		if delay < low || delay > high {
			t.Errorf("restart %d: delay %s, want %s..%s", i+1, delay, low, high)
		}
		nominal *= 2
	}
	if delays[4] < 4*delays[0] {
		t.Errorf("delay of restart 5 = %s, want at least 4 × %s", delays[4], delays[0])
	}
}

func TestBackoffResetsAfterLongReady(t *testing.T) {
	opts := Options{BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, CrashLoopLimit: -1}
	// Each run is ready for 500 ms, longer than BackoffMax, so every
	// restart starts over at BackoffMin.
	crash := notifyingChild(t, "crash", "CHILD_EXIT_AFTER_MS=500")
	h := startSupervisor(t, opts, crash)

	h.waitFor("3 restarts", func() bool { return h.status("crash").Restarts >= 3 })

	lines, _ := h.console.snapshot()
	count := 0
	for _, line := range lines {
		m := restartLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		count++
		delay, err := time.ParseDuration(m[2])
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		// BackoffMin plus 20% jitter is 24 ms, and the console rounds it.
		if maxDelay := 25 * time.Millisecond; delay > maxDelay {
			t.Errorf("restart %s: delay %s, want at most %s (BackoffMin with jitter)", m[1], delay, maxDelay)
		}
	}
	if count < 3 {
		t.Errorf("found %d restart lines, want at least 3", count)
	}
}

func TestCrashLoopGivesUp(t *testing.T) {
	opts := fastOptions()
	opts.CrashLoopLimit = 3
	opts.CrashLoopWindow = 30 * time.Second
	crash := notifyingChild(t, "crash", "CHILD_LINES=30", "CHILD_NOTIFY=0", "CHILD_EXIT_AFTER_MS=0")
	dependent := childService(t, "dependent")
	dependent.After = []string{"crash"}
	h := startSupervisor(t, opts, crash, dependent)

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	err := h.sup.WaitReady(ctx, "crash")
	var failed *FailedError
	if !errors.As(err, &failed) {
		t.Fatalf("WaitReady(crash) = %v, want a *FailedError", err)
	}
	if failed.Service != "crash" {
		t.Errorf("FailedError.Service = %q, want crash", failed.Service)
	}
	if failed.Reason != "3 restarts within 30s" {
		t.Errorf("FailedError.Reason = %q, want %q", failed.Reason, "3 restarts within 30s")
	}

	err = h.sup.WaitReady(ctx, "dependent")
	if !errors.As(err, &failed) {
		t.Fatalf("WaitReady(dependent) = %v, want a *FailedError", err)
	}
	if failed.Reason != "dependency crash failed" {
		t.Errorf("dependent: Reason = %q, want %q", failed.Reason, "dependency crash failed")
	}

	st := h.status("crash")
	if st.State != StateFailed {
		t.Errorf("crash: State = %s, want failed", st.State)
	}
	if st.Restarts != 3 {
		t.Errorf("crash: Restarts = %d, want 3", st.Restarts)
	}
	if st.LastExit != "exit status 1" {
		t.Errorf("crash: LastExit = %q, want exit status 1", st.LastExit)
	}
	st = h.status("dependent")
	if st.State != StateFailed {
		t.Errorf("dependent: State = %s, want failed", st.State)
	}
	if st.PID != 0 {
		t.Errorf("dependent: PID = %d, want 0", st.PID)
	}
	if h.console.index("supervise: dependent started", 0) >= 0 {
		t.Error("dependent started, want it never started")
	}

	giveUp := h.console.index("supervise: crash exited (exit status 1); giving up after 3 restarts within 30s", 0)
	if giveUp < 0 {
		t.Fatal("console has no giving-up line")
	}
	header := h.console.index("supervise: last 20 output lines of crash:", giveUp)
	if header < 0 {
		t.Fatal("console has no header for the last output lines")
	}
	var output []string
	for i := 1; i <= 30; i++ {
		output = append(output, fmt.Sprintf("    crash: line %d", i))
	}
	output = append(output, "    crash: child skipped notify")
	want := output[len(output)-20:]
	lines, _ := h.console.snapshot()
	tail := lines[header+1 : min(header+21, len(lines))]
	for i := range want {
		if i >= len(tail) || tail[i] != want[i] {
			t.Errorf("console after the header = %q, want %q", tail, want)
			break
		}
	}
	if h.console.index("supervise: crash started", giveUp) >= 0 {
		t.Error("crash started again after giving up")
	}
	for _, want := range []string{
		"supervise: crash failed: 3 restarts within 30s",
		"supervise: dependent failed: dependency crash failed",
	} {
		if h.console.index(want, giveUp) < 0 {
			t.Errorf("console has no line %q after giving up", want)
		}
	}
}

func TestFailedDependencyStopsDependent(t *testing.T) {
	opts := fastOptions()
	opts.CrashLoopLimit = 1
	a := notifyingChild(t, "a", "CHILD_EXIT_AFTER_MS=300")
	b := notifyingChild(t, "b")
	b.After = []string{"a"}
	h := startSupervisor(t, opts, a, b)

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var failed *FailedError
	if err := h.sup.WaitReady(ctx, "b"); err != nil {
		t.Fatalf("WaitReady(b) before a fails: %v", err)
	}
	h.waitFor("b failed", func() bool { return h.status("b").State == StateFailed })

	st := h.status("a")
	if st.State != StateFailed {
		t.Errorf("a: State = %s, want failed", st.State)
	}
	if st.Restarts != 1 {
		t.Errorf("a: Restarts = %d, want 1", st.Restarts)
	}
	st = h.status("b")
	if st.PID != 0 {
		t.Errorf("b: PID = %d, want 0", st.PID)
	}
	if st.FailReason != "dependency a failed" {
		t.Errorf("b: FailReason = %q, want %q", st.FailReason, "dependency a failed")
	}
	if st.Restarts != 0 {
		t.Errorf("b: Restarts = %d, want 0", st.Restarts)
	}
	if err := h.sup.WaitReady(ctx, "b"); !errors.As(err, &failed) {
		t.Errorf("WaitReady(b) = %v, want a *FailedError", err)
	}
}

func TestDependencyRestartStopsDependents(t *testing.T) {
	a := notifyingChild(t, "a")
	b := notifyingChild(t, "b")
	b.After = []string{"a"}
	c := notifyingChild(t, "c")
	c.After = []string{"b"}
	h := startSupervisor(t, fastOptions(), a, b, c)

	h.waitReady("a", "b", "c")
	oldA, oldB, oldC := h.status("a").PID, h.status("b").PID, h.status("c").PID

	if err := unix.Kill(oldA, unix.SIGKILL); err != nil {
		t.Fatalf("kill a: %v", err)
	}
	exit := h.waitLine("supervise: a exited (killed by signal 9); restart 1 in ", 0)
	h.waitFor("c restarted", func() bool {
		st := h.status("c")
		return st.State == StateReady && st.PID != oldC
	})

	cStopped := h.waitLine("supervise: c stopped (exit status 0); it starts again when b is ready", exit)
	bStopping := h.waitLine("supervise: b stopping with SIGTERM (dependency a exited)", exit)
	bStopped := h.waitLine("supervise: b stopped (exit status 0); it starts again when a is ready", exit)
	aStarted := h.waitLine("supervise: a started", exit)
	aReady := h.waitLine("supervise: a ready", aStarted)
	bStarted := h.waitLine("supervise: b started", exit)
	bReady := h.waitLine("supervise: b ready", bStarted)
	cStarted := h.waitLine("supervise: c started", exit)
	order := []struct {
		name  string
		index int
	}{
		{"a exited", exit},
		{"c stopped", cStopped},
		{"b stopping", bStopping},
		{"b stopped", bStopped},
		{"a started", aStarted},
		{"a ready", aReady},
		{"b started", bStarted},
		{"b ready", bReady},
		{"c started", cStarted},
	}
	for i := 1; i < len(order); i++ {
		if order[i].index <= order[i-1].index {
			t.Errorf("console: %q (line %d) comes before %q (line %d)", order[i].name, order[i].index, order[i-1].name, order[i-1].index)
		}
	}

	st := h.status("a")
	if st.Restarts != 1 {
		t.Errorf("a: Restarts = %d, want 1", st.Restarts)
	}
	if st.LastExit != "killed by signal 9" {
		t.Errorf("a: LastExit = %q, want killed by signal 9", st.LastExit)
	}
	if st.PID == oldA {
		t.Errorf("a: PID = %d, want a new PID", st.PID)
	}
	st = h.status("b")
	if st.Restarts != 0 {
		t.Errorf("b: Restarts = %d, want 0 because a dependency stop is no crash", st.Restarts)
	}
	if st.PID == oldB {
		t.Errorf("b: PID = %d, want a new PID", st.PID)
	}
	if logs := h.sup.Logs("b"); !containsLine(logs, "stopping on SIGTERM") {
		t.Errorf("Logs(b) = %q, want the SIGTERM line", logs)
	}
}

func TestStopReverseOrderAndKill(t *testing.T) {
	a := notifyingChild(t, "a")
	b := notifyingChild(t, "b")
	b.After = []string{"a"}
	c := notifyingChild(t, "c")
	c.After = []string{"b"}
	stubborn := notifyingChild(t, "stubborn", "CHILD_IGNORE_TERM=1")
	stubborn.StopTimeout = 300 * time.Millisecond
	h := startSupervisor(t, fastOptions(), a, b, c, stubborn)

	h.waitReady("a", "b", "c", "stubborn")
	if err := h.stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	cStopped := h.console.index("supervise: c stopped (exit status 0)", 0)
	bStopping := h.console.index("supervise: b stopping with SIGTERM (supervisor stopping)", 0)
	bStopped := h.console.index("supervise: b stopped (exit status 0)", 0)
	aStopping := h.console.index("supervise: a stopping with SIGTERM (supervisor stopping)", 0)
	aStopped := h.console.index("supervise: a stopped (exit status 0)", 0)
	if cStopped < 0 || bStopping < cStopped || bStopped < bStopping || aStopping < bStopped || aStopped < aStopping {
		t.Errorf("console line indexes: c stopped %d, b stopping %d, b stopped %d, a stopping %d, a stopped %d; want increasing",
			cStopped, bStopping, bStopped, aStopping, aStopped)
	}
	if h.console.index("supervise: stubborn did not exit within 300ms of SIGTERM; sending SIGKILL", 0) < 0 {
		t.Error("console has no SIGKILL line for stubborn")
	}
	if st := h.status("stubborn"); st.LastExit != "killed by signal 9" {
		t.Errorf("stubborn: LastExit = %q, want killed by signal 9", st.LastExit)
	}
	for _, st := range h.sup.Status() {
		if st.State != StateStopped {
			t.Errorf("%s: State = %s, want stopped", st.Name, st.State)
		}
		if st.PID != 0 {
			t.Errorf("%s: PID = %d, want 0", st.Name, st.PID)
		}
	}

	if err := h.sup.WaitReady(context.Background(), "a"); !errors.Is(err, ErrStopped) {
		t.Errorf("WaitReady after Stop = %v, want ErrStopped", err)
	}
	if err := h.sup.Stop(context.Background()); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
	if h.console.index("supervise: a started", h.console.index("supervise: a stopped", 0)) >= 0 {
		t.Error("a started again after Stop")
	}
}

func TestReadyTimeoutKills(t *testing.T) {
	opts := fastOptions()
	opts.CrashLoopLimit = 1
	never := notifyingChild(t, "never", "CHILD_NOTIFY=0")
	never.ReadyTimeout = 300 * time.Millisecond
	h := startSupervisor(t, opts, never)

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var failed *FailedError
	if err := h.sup.WaitReady(ctx, "never"); !errors.As(err, &failed) {
		t.Fatalf("WaitReady = %v, want a *FailedError", err)
	}

	const exit = "killed by signal 9, not ready within 300ms"
	st := h.status("never")
	if st.LastExit != exit {
		t.Errorf("LastExit = %q, want %q", st.LastExit, exit)
	}
	if st.Restarts != 1 {
		t.Errorf("Restarts = %d, want 1", st.Restarts)
	}
	first := h.console.index("supervise: never not ready within 300ms; sending SIGKILL", 0)
	if first < 0 {
		t.Fatal("console has no ready-timeout line")
	}
	if h.console.index("supervise: never exited ("+exit+"); restart 1 in ", first) < 0 {
		t.Error("console has no restart line after the ready timeout")
	}
}

func TestBeforeStartErrorRetries(t *testing.T) {
	var calls atomic.Int32
	svc := childService(t, "a")
	svc.BeforeStart = func() error {
		switch calls.Add(1) {
		case 1:
			return errors.New("mount point busy")
		case 2:
			panic("boom")
		}
		return nil
	}
	h := startSupervisor(t, fastOptions(), svc)

	h.waitReady("a")

	if n := calls.Load(); n != 3 {
		t.Errorf("BeforeStart calls = %d, want 3", n)
	}
	if st := h.status("a"); st.Restarts != 2 {
		t.Errorf("Restarts = %d, want 2", st.Restarts)
	}
	for _, want := range []string{
		"supervise: a failed to start (before start: mount point busy); restart 1 in ",
		"supervise: a failed to start (before start: panic: boom); restart 2 in ",
	} {
		if h.console.index(want, 0) < 0 {
			t.Errorf("console has no line starting with %q", want)
		}
	}
}

func TestOutputRingAndLongLines(t *testing.T) {
	opts := fastOptions()
	opts.RingLines = 5
	h := startSupervisor(t, opts, childService(t, "out", "CHILD_LINES=10", "CHILD_LONG_LINE=10000"))

	h.waitFor("the last output line", func() bool { return containsLine(h.sup.Logs("out"), "child notified") })

	logs := h.sup.Logs("out")
	if len(logs) != 5 {
		t.Fatalf("Logs has %d lines, want 5: %q", len(logs), logs)
	}
	for i, want := range []string{"line 8", "line 9", "line 10"} {
		if logs[i] != want {
			t.Errorf("Logs[%d] = %q, want %q", i, logs[i], want)
		}
	}
	if want := strings.Repeat("x", maxLineBytes) + truncatedMark; logs[3] != want {
		t.Errorf("Logs[3] has %d bytes, want %d x and the mark", len(logs[3]), maxLineBytes)
	}
	if logs[4] != "child notified" {
		t.Errorf("Logs[4] = %q, want %q: the rest of the long line must be dropped", logs[4], "child notified")
	}
	if h.console.index("out: line 1", 0) < 0 {
		t.Error(`console has no line "out: line 1"`)
	}
}

func TestTruncateLineKeepsWholeCharacters(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"abc", "abc"},
		{"ab\xc3", "ab"},              // first byte of é
		{"ab\xe2\x82", "ab"},          // two bytes of €
		{"ab\xe2\x82\xac", "ab€"},     // all of €
		{"ab\xf0\x9f\x98", "ab"},      // three bytes of 😀
		{"ab\xf0\x9f\x98\x80", "ab😀"}, // all of 😀
	}
	for _, c := range cases {
		if got := truncateLine([]byte(c.in)); got != c.want+truncatedMark {
			t.Errorf("truncateLine(%q) = %q, want %q", c.in, got, c.want+truncatedMark)
		}
	}
}

// startWithWait4 starts children the way a PID 1 does: it never calls
// exec.Cmd.Wait and collects the status with wait4 on the child's PID.
func startWithWait4(starts *atomic.Int32) StartFunc {
	return func(cmd *exec.Cmd) (<-chan unix.WaitStatus, error) {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		starts.Add(1)
		exited := make(chan unix.WaitStatus, 1)
		pid := cmd.Process.Pid
		go func() {
			var status unix.WaitStatus
			for {
				_, err := unix.Wait4(pid, &status, 0, nil)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					close(exited)
					return
				}
				exited <- status
				return
			}
		}()
		return exited, nil
	}
}

func TestCustomStartWithWait4(t *testing.T) {
	var starts atomic.Int32
	opts := fastOptions()
	opts.Start = startWithWait4(&starts)
	a := notifyingChild(t, "a")
	h := startSupervisor(t, opts, a)

	h.waitReady("a")
	old := h.status("a").PID
	if err := unix.Kill(old, unix.SIGKILL); err != nil {
		t.Fatalf("kill a: %v", err)
	}
	h.waitLine("supervise: a exited (killed by signal 9); restart 1 in ", 0)
	h.waitFor("a ready again", func() bool {
		st := h.status("a")
		return st.State == StateReady && st.PID != old
	})

	if err := h.stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if n := starts.Load(); n != 2 {
		t.Errorf("Start calls = %d, want 2", n)
	}
	if st := h.status("a"); st.LastExit != "exit status 0" {
		t.Errorf("LastExit = %q, want exit status 0 from the SIGTERM handler", st.LastExit)
	}
}

func TestStartErrorRetriesThenFails(t *testing.T) {
	opts := fastOptions()
	opts.CrashLoopLimit = 2
	svc := Service{Name: "missing", Path: filepath.Join(t.TempDir(), "no-such-program")}
	h := startSupervisor(t, opts, svc)

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var failed *FailedError
	if err := h.sup.WaitReady(ctx, "missing"); !errors.As(err, &failed) {
		t.Fatalf("WaitReady = %v, want a *FailedError", err)
	}
	if st := h.status("missing"); !strings.Contains(st.LastExit, "no such file or directory") {
		t.Errorf("LastExit = %q, want the exec error", st.LastExit)
	}
	if h.console.index("supervise: missing wrote no output", 0) < 0 {
		t.Error("console has no line for the empty ring")
	}
}

func TestRunStopsOnContextCancel(t *testing.T) {
	// Ready means the child has installed its SIGTERM handler.
	a := notifyingChild(t, "a")
	sup, err := New(fastOptions(), a)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sup.Run(ctx) }()

	waitCtx, waitCancel := context.WithTimeout(context.Background(), patience)
	defer waitCancel()
	if err := sup.WaitReady(waitCtx, "a"); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if err := sup.Run(context.Background()); err == nil {
		t.Error("second Run returned nil, want an error")
	}

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-waitCtx.Done():
		t.Fatal("Run did not return after its context was canceled")
	}
	st := sup.Status()[0]
	if st.State != StateStopped {
		t.Errorf("State = %s, want stopped", st.State)
	}
	if st.LastExit != "exit status 0" {
		t.Errorf("LastExit = %q, want exit status 0 from the SIGTERM handler", st.LastExit)
	}
	checkNoLeaks(t)
}

func TestStopBeforeRun(t *testing.T) {
	sup, err := New(Options{}, childService(t, "a"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sup.Stop(context.Background()); err != nil {
		t.Fatalf("Stop = %v, want nil", err)
	}
	if err := sup.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Run after Stop = %v, want ErrStopped", err)
	}
	if err := sup.WaitReady(context.Background(), "a"); !errors.Is(err, ErrStopped) {
		t.Errorf("WaitReady = %v, want ErrStopped", err)
	}
	if st := sup.Status()[0]; st.State != StateStopped {
		t.Errorf("State = %s, want stopped", st.State)
	}
	if err := sup.WaitReady(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("WaitReady(nope) = %v, want an error naming the service", err)
	}
	if logs := sup.Logs("nope"); logs != nil {
		t.Errorf("Logs(nope) = %q, want nil", logs)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	ok := func(name string, after ...string) Service {
		return Service{Name: name, Path: "/bin/true", After: after}
	}
	cases := []struct {
		name     string
		opts     Options
		services []Service
		want     string
	}{
		{"empty name", Options{}, []Service{{Path: "/bin/true"}}, `service with Path "/bin/true": missing Name`},
		{"bad name", Options{}, []Service{ok("a b")}, `invalid service name "a b"`},
		{"duplicate", Options{}, []Service{ok("a"), ok("a")}, `duplicate service name "a"`},
		{"missing path", Options{}, []Service{{Name: "a"}}, `service "a": missing Path`},
		{"unknown after", Options{}, []Service{ok("a", "b")}, `service "a": After names unknown service "b"`},
		{"self after", Options{}, []Service{ok("a", "a")}, `service "a": After names the service itself`},
		{"cycle", Options{}, []Service{ok("a", "c"), ok("b", "a"), ok("c", "b")}, "dependency cycle in After: a -> c -> b -> a"},
		{"negative ready timeout", Options{}, []Service{{Name: "a", Path: "/bin/true", ReadyTimeout: -time.Second}}, `service "a": invalid ReadyTimeout -1s`},
		{"negative stop timeout", Options{}, []Service{{Name: "a", Path: "/bin/true", StopTimeout: -time.Second}}, `service "a": invalid StopTimeout -1s`},
		{"bad signal", Options{}, []Service{{Name: "a", Path: "/bin/true", StopSignal: 99}}, `service "a": invalid StopSignal 99: must be from 1 to 64, or 0 for SIGTERM`},
		{"backoff order", Options{BackoffMin: time.Second, BackoffMax: time.Millisecond}, nil, "invalid BackoffMin 1s: greater than BackoffMax 1ms"},
		{"negative ring", Options{RingLines: -1}, nil, "invalid RingLines -1"},
		{"negative window", Options{CrashLoopWindow: -time.Second}, nil, "invalid CrashLoopWindow -1s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.opts, c.services...)
			if err == nil {
				t.Fatalf("New returned no error, want %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %q, want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans several lines", err)
			}
		})
	}

	if _, err := New(Options{}, ok("a"), ok("b", "a", "a"), ok("c", "a", "b")); err != nil {
		t.Errorf("New with a valid graph: %v", err)
	}
}

func TestNotifyReady(t *testing.T) {
	t.Run("no variable", func(t *testing.T) {
		t.Setenv(ReadyFDEnv, "")
		os.Unsetenv(ReadyFDEnv)
		if err := NotifyReady(); err != nil {
			t.Errorf("NotifyReady = %v, want nil", err)
		}
	})

	t.Run("invalid value", func(t *testing.T) {
		t.Setenv(ReadyFDEnv, "three")
		err := NotifyReady()
		if err == nil || !strings.Contains(err.Error(), `"three"`) {
			t.Errorf("NotifyReady = %v, want an error naming the value", err)
		}
		if _, set := os.LookupEnv(ReadyFDEnv); set {
			t.Error("BT_READY_FD is still set")
		}
	})

	t.Run("pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		// NotifyReady closes the descriptor, so hand it a duplicate.
		fd, err := unix.Dup(int(w.Fd()))
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(ReadyFDEnv, fmt.Sprint(fd))

		if err := NotifyReady(); err != nil {
			t.Fatalf("NotifyReady: %v", err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "READY\n" {
			t.Errorf("pipe got %q, want %q", got, "READY\n")
		}
		if err := NotifyReady(); err != nil {
			t.Errorf("second NotifyReady = %v, want nil", err)
		}
	})
}

func TestGuardMarksServiceFailed(t *testing.T) {
	console := &recorder{}
	a := Service{Name: "a", Path: "/bin/true"}
	b := Service{Name: "b", Path: "/bin/true", After: []string{"a"}}
	sup, err := New(Options{Console: console}, a, b)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	sup.mu.Lock()
	sup.guard(nil, func() { panic("loop bug") })
	sup.mu.Unlock()
	for _, st := range sup.Status() {
		if st.State != StateWaiting {
			t.Errorf("%s: State = %s after a panic outside any service, want waiting", st.Name, st.State)
		}
	}
	if console.index("supervise: internal error: panic: loop bug", 0) < 0 {
		lines, _ := console.snapshot()
		t.Errorf("console = %q, want the internal error line without a service", lines)
	}

	sup.mu.Lock()
	sup.guard(sup.byName["a"], func() { panic("boom") })
	sup.mu.Unlock()

	status := sup.Status()
	for i, want := range []string{"supervisor panic: boom", "dependency a failed"} {
		st := status[i]
		if st.State != StateFailed {
			t.Errorf("%s: State = %s, want failed", st.Name, st.State)
		}
		if st.FailReason != want {
			t.Errorf("%s: FailReason = %q, want %q", st.Name, st.FailReason, want)
		}
	}
	if console.index("supervise: internal error while handling a: panic: boom", 0) < 0 {
		lines, _ := console.snapshot()
		t.Errorf("console = %q, want the internal error line", lines)
	}
}

// panickingWriter panics on every write.
type panickingWriter struct{}

func (panickingWriter) Write([]byte) (int, error) { panic("console broken") }

func TestPanickingConsoleIgnored(t *testing.T) {
	sup, err := New(Options{Console: panickingWriter{}}, notifyingChild(t, "a", "CHILD_LINES=3"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- sup.Run(context.Background()) }()

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := sup.WaitReady(ctx, "a"); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if err := sup.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-runErr; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if logs := sup.Logs("a"); !containsLine(logs, "line 3") {
		t.Errorf("Logs = %q, want the output despite the console", logs)
	}
	checkNoLeaks(t)
}

func TestStopDuringBeforeStart(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	svc := childService(t, "a")
	svc.BeforeStart = func() error {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-release
		return nil
	}
	h := startSupervisor(t, fastOptions(), svc)

	select {
	case <-entered:
	case <-time.After(patience):
		t.Fatal("BeforeStart was not called")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	h.waitFor("a stopping", func() bool { return h.status("a").State == StateStopping })
	close(release)

	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("Stop did not return after BeforeStart returned")
	}
	st := h.status("a")
	if st.State != StateStopped {
		t.Errorf("State = %s, want stopped", st.State)
	}
	if st.LastExit != "" {
		t.Errorf("LastExit = %q, want empty because no process ran", st.LastExit)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("BeforeStart calls = %d, want 1", n)
	}
	if h.console.index("supervise: a started", 0) >= 0 {
		t.Error("a started although Stop began during BeforeStart")
	}
	if logs := h.sup.Logs("a"); len(logs) != 0 {
		t.Errorf("Logs = %q, want no output", logs)
	}
	if h.console.index("supervise: a stopped (not started)", 0) < 0 {
		t.Error(`console has no line "supervise: a stopped (not started)"`)
	}
}

func TestReadOutputLineLimit(t *testing.T) {
	sup, err := New(Options{}, Service{Name: "out", Path: "/bin/true"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("create pipe: %v", err)
	}
	done := make(chan struct{})
	go sup.readOutput(sup.byName["out"], r, done)

	full := strings.Repeat("x", maxLineBytes)
	input := []string{
		full + "\n",
		full + "\r\n",
		strings.Repeat("y", maxLineBytes-1) + "\r\n",
		full + "z\n",
		full + "z\r\n",
		full + strings.Repeat("z", 3*maxLineBytes) + "\n",
		"last line without ending",
	}
	want := []string{
		full,
		full,
		strings.Repeat("y", maxLineBytes-1),
		full + truncatedMark,
		full + truncatedMark,
		full + truncatedMark,
		"last line without ending",
	}
	if _, err := w.WriteString(strings.Join(input, "")); err != nil {
		t.Fatalf("write to pipe: %v", err)
	}
	w.Close()
	<-done
	r.Close()

	logs := sup.Logs("out")
	if len(logs) != len(want) {
		t.Fatalf("Logs has %d lines, want %d", len(logs), len(want))
	}
	for i := range want {
		if logs[i] != want[i] {
			t.Errorf("line %d: got %d bytes ending in %q, want %d bytes ending in %q",
				i, len(logs[i]), tail(logs[i]), len(want[i]), tail(want[i]))
		}
	}
}

// tail returns the last 16 bytes of s, for messages about long lines.
func tail(s string) string {
	return s[max(0, len(s)-16):]
}
