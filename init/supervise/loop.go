//go:build linux

package supervise

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// service is one Service with its runtime state. Supervisor.mu guards the
// fields after ring. Only the event loop writes them, except that New sets
// since and a Stop before Run sets state and since, while no loop runs.
type service struct {
	Service
	deps       []*service // direct dependencies
	dependents []*service // direct and indirect dependents
	ring       *ring

	state State
	since time.Time

	// run is the number of the current start. Events carry it, so that the
	// loop can ignore events of an earlier process. launching is true from
	// launch until the loop handles eventStarted. pid is nonzero while the
	// child runs.
	run        uint64
	launching  bool
	pid        int
	startedAt  time.Time
	readySince time.Time

	// Deadlines. The zero time means none.
	readyDeadline time.Time
	killDeadline  time.Time
	backoffUntil  time.Time
	readyTimedOut bool

	// A pending stop. The child gets StopSignal once none of its dependents
	// runs, and signaled records that it was sent. When the child exits,
	// the service enters stopTarget.
	stopRequested bool
	stopTarget    State
	stopReason    string
	signaled      bool

	// attempt counts consecutive crashes for the backoff. restartTimes
	// contains the times of the restarts that were within CrashLoopWindow
	// at the last crash, oldest first.
	attempt      int
	restarts     int
	restartTimes []time.Time
	lastExit     string
	failReason   string
}

func (svc *service) setState(state State) {
	svc.state = state
	svc.since = time.Now()
}

func (svc *service) running() bool {
	return svc.launching || svc.pid != 0
}

type eventKind int

const (
	eventStarted eventKind = iota // the worker started the child, or failed to
	eventReady                    // the child wrote READY
	eventExited                   // the child exited and its output is read
)

type event struct {
	kind eventKind
	svc  *service
	run  uint64

	pid         int             // eventStarted
	err         error           // eventStarted: the start failed
	status      unix.WaitStatus // eventExited
	statusKnown bool            // eventExited: false if the Start channel closed without a status
}

// send delivers ev to the loop. It gives up once the loop has returned,
// which happens only after every child has exited.
func (s *Supervisor) send(ev event) {
	select {
	case s.events <- ev:
	case <-s.loopDone:
	}
}

// loop owns every state change. Workers, the readiness readers and the
// timer only send events to it, so no state change races with another.
func (s *Supervisor) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ctxDone := ctx.Done()
	stopRequest := s.stopRequest
	if ctx.Err() != nil {
		s.mu.Lock()
		s.beginStop("context canceled")
		s.mu.Unlock()
	}

	for {
		// reconcile and nextDeadline must see the same time, or a backoff
		// that expires between them would be neither started nor timed.
		now := time.Now()
		s.mu.Lock()
		s.guard(nil, func() { s.reconcile(now) })
		finished := s.stopping && s.allStopped()
		next := s.nextDeadline(now)
		s.notifyLocked()
		s.mu.Unlock()

		if finished {
			return
		}
		if next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}

		select {
		case ev := <-s.events:
			s.mu.Lock()
			s.guard(ev.svc, func() { s.handle(ev) })
			s.mu.Unlock()

		case now := <-timer.C:
			s.mu.Lock()
			s.guard(nil, func() { s.handleDeadlines(now) })
			s.mu.Unlock()

		case <-ctxDone:
			ctxDone = nil
			s.mu.Lock()
			s.guard(nil, func() { s.beginStop("context canceled") })
			s.mu.Unlock()

		case <-stopRequest:
			stopRequest = nil
			s.mu.Lock()
			s.guard(nil, func() { s.beginStop("Stop called") })
			s.mu.Unlock()
		}
	}
}

// guard runs fn and recovers a panic, which it logs and writes to the
// console. A panic while handling an event of svc stops svc and its
// dependents and marks them failed, because the state of svc may be
// inconsistent. The other services carry on.
func (s *Supervisor) guard(svc *service, fn func()) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		stack := string(debug.Stack())
		if svc == nil {
			s.log.Error("supervisor panic", "panic", r, "stack", stack)
			s.out.event("internal error: panic: %v", r)
			return
		}

		s.log.Error("supervisor panic", "service", svc.Name, "panic", r, "stack", stack)
		s.out.event("internal error while handling %s: panic: %v", svc.Name, r)
		s.guard(nil, func() { s.fail(svc, fmt.Sprintf("supervisor panic: %v", r)) })
	}()
	fn()
}

func (s *Supervisor) handle(ev event) {
	svc := ev.svc
	if ev.run != svc.run {
		s.log.Warn("event of an earlier run ignored", "service", svc.Name, "run", ev.run, "current", svc.run)
		return
	}
	switch ev.kind {
	case eventStarted:
		s.handleStarted(svc, ev)
	case eventReady:
		if svc.state == StateStarting && svc.pid != 0 && !svc.stopRequested {
			s.becomeReady(svc)
		}
	case eventExited:
		s.handleExited(svc, ev)
	}
}

func (s *Supervisor) handleStarted(svc *service, ev event) {
	svc.launching = false
	if ev.err != nil {
		// A start canceled for a pending stop is no exit of the service.
		if !errors.Is(ev.err, errStartCanceled) {
			svc.lastExit = "start failed: " + ev.err.Error()
		}
		if svc.stopRequested {
			s.finishStop(svc, "not started")
			return
		}
		s.crashed(svc, fmt.Sprintf("failed to start (%v)", ev.err))
		return
	}

	svc.pid = ev.pid
	svc.startedAt = time.Now()
	s.out.event("%s started (pid %d)", svc.Name, svc.pid)
	s.log.Info("service started", "service", svc.Name, "pid", svc.pid, "run", svc.run)

	switch {
	case svc.stopRequested:
		// reconcile sends the stop signal.
	case !svc.NotifyReady:
		s.becomeReady(svc)
	case svc.ReadyTimeout > 0:
		svc.readyDeadline = svc.startedAt.Add(svc.ReadyTimeout)
	}
}

func (s *Supervisor) becomeReady(svc *service) {
	svc.readySince = time.Now()
	svc.readyDeadline = time.Time{}
	svc.setState(StateReady)
	if !svc.NotifyReady {
		s.out.event("%s ready (pid %d)", svc.Name, svc.pid)
		s.log.Info("service ready", "service", svc.Name, "pid", svc.pid)
		return
	}
	took := svc.readySince.Sub(svc.startedAt)
	s.out.event("%s ready (pid %d, %s after start)", svc.Name, svc.pid, formatDuration(took))
	s.log.Info("service ready", "service", svc.Name, "pid", svc.pid, "after", took)
}

func (s *Supervisor) handleExited(svc *service, ev event) {
	status := "exit status unknown"
	if ev.statusKnown {
		status = describeStatus(ev.status)
	}
	if svc.readyTimedOut {
		status += fmt.Sprintf(", not ready within %s", svc.ReadyTimeout)
	}
	svc.pid = 0
	svc.lastExit = status
	svc.readyDeadline = time.Time{}
	svc.killDeadline = time.Time{}

	if svc.stopRequested {
		s.finishStop(svc, status)
		return
	}
	s.crashed(svc, "exited ("+status+")")
}

// crashed schedules a restart of svc after an unrequested exit or a failed
// start, or marks it failed once it is in a crash loop. Its dependents are
// stopped either way. outcome describes the exit or failed start for the
// console.
func (s *Supervisor) crashed(svc *service, outcome string) {
	now := time.Now()
	if svc.state == StateReady && now.Sub(svc.readySince) > s.opts.BackoffMax {
		svc.attempt = 0
	}

	window := now.Add(-s.opts.CrashLoopWindow)
	svc.restartTimes = slices.DeleteFunc(svc.restartTimes, func(t time.Time) bool { return t.Before(window) })
	if s.opts.CrashLoopLimit >= 0 && len(svc.restartTimes) >= s.opts.CrashLoopLimit {
		reason := fmt.Sprintf("%s within %s", countRestarts(len(svc.restartTimes)), s.opts.CrashLoopWindow)
		s.out.event("%s %s; giving up after %s", svc.Name, outcome, reason)
		s.log.Error("service exited; giving up", "service", svc.Name, "exit", outcome, "restarts", len(svc.restartTimes), "window", s.opts.CrashLoopWindow)
		s.printTail(svc)
		s.fail(svc, reason)
		return
	}

	svc.attempt++
	svc.restarts++
	svc.restartTimes = append(svc.restartTimes, now)
	delay := s.backoff(svc.attempt)
	svc.backoffUntil = now.Add(delay)
	svc.setState(StateBackoff)
	s.out.event("%s %s; restart %d in %s", svc.Name, outcome, svc.restarts, formatDuration(delay))
	s.log.Warn("service exited; restarting", "service", svc.Name, "exit", outcome, "restart", svc.restarts, "delay", delay)

	for _, dependent := range svc.dependents {
		s.requestStop(dependent, StateWaiting, "dependency "+svc.Name+" exited")
	}
}

// backoff returns the delay, with jitter, before the restart that follows
// the given number of consecutive crashes.
func (s *Supervisor) backoff(attempt int) time.Duration {
	delay := s.opts.BackoffMin
	for i := 1; i < attempt && delay < s.opts.BackoffMax; i++ {
		delay *= 2
	}
	// Jitter keeps services that crash together from restarting in step.
	delay = time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
	return min(max(delay, s.opts.BackoffMin), s.opts.BackoffMax)
}

// fail stops svc and its dependents for good and marks them failed.
func (s *Supervisor) fail(svc *service, reason string) {
	s.requestStop(svc, StateFailed, reason)
	for _, dependent := range svc.dependents {
		s.requestStop(dependent, StateFailed, "dependency "+svc.Name+" failed")
	}
}

func (s *Supervisor) printTail(svc *service) {
	lines := svc.ring.lines()
	lines = lines[max(0, len(lines)-failureTailLines):]
	if len(lines) == 0 {
		s.out.event("%s wrote no output", svc.Name)
		return
	}
	s.out.event("last %d output lines of %s:", len(lines), svc.Name)
	for _, line := range lines {
		s.out.write("    " + svc.Name + ": " + line + "\n")
	}
}

// stopRank orders stop targets. A later stop request may raise the target
// of a pending one but never lower it, so StateFailed takes precedence over
// StateStopped, and StateStopped over StateWaiting.
func stopRank(target State) int {
	switch target {
	case StateFailed:
		return 2
	case StateStopped:
		return 1
	}
	return 0
}

// requestStop records that svc must stop and then enter target, which is
// StateWaiting (start again once its dependencies are ready), StateStopped
// or StateFailed. A service that runs no process enters StateStopped or
// StateFailed at once. With StateWaiting it keeps its state, because it
// runs nothing that uses the exited dependency.
func (s *Supervisor) requestStop(svc *service, target State, reason string) {
	if svc.state == StateFailed || svc.state == StateStopped {
		return
	}

	if !svc.running() {
		switch target {
		case StateFailed:
			svc.failReason = reason
			svc.setState(StateFailed)
			s.out.event("%s failed: %s", svc.Name, reason)
			s.log.Error("service failed", "service", svc.Name, "reason", reason)
		case StateStopped:
			svc.setState(StateStopped)
		}
		return
	}

	if svc.stopRequested && stopRank(target) <= stopRank(svc.stopTarget) {
		return
	}
	svc.stopRequested = true
	svc.stopTarget = target
	svc.stopReason = reason
	svc.readyDeadline = time.Time{}
	svc.setState(StateStopping)
}

// finishStop moves a service whose process has exited, or never started, to
// the target of its stop request. status describes the exit for the
// console.
func (s *Supervisor) finishStop(svc *service, status string) {
	target, reason := svc.stopTarget, svc.stopReason
	svc.stopRequested = false
	svc.signaled = false
	svc.killDeadline = time.Time{}

	switch target {
	case StateWaiting:
		verb := "is"
		if len(svc.deps) > 1 {
			verb = "are"
		}
		s.out.event("%s stopped (%s); it starts again when %s %s ready", svc.Name, status, dependencyNames(svc), verb)
	case StateFailed:
		svc.failReason = reason
		s.out.event("%s stopped (%s); failed: %s", svc.Name, status, reason)
	default:
		s.out.event("%s stopped (%s)", svc.Name, status)
	}
	s.log.Info("service stopped", "service", svc.Name, "exit", status, "reason", reason)
	svc.setState(target)
}

func dependencyNames(svc *service) string {
	names := make([]string, len(svc.deps))
	for i, dep := range svc.deps {
		names[i] = dep.Name
	}
	return strings.Join(names, ", ")
}

// beginStop requests every service to stop for good.
func (s *Supervisor) beginStop(reason string) {
	if s.stopping {
		return
	}
	s.stopping = true
	s.log.Info("stopping all services", "reason", reason)
	for _, svc := range s.order {
		s.requestStop(svc, StateStopped, "supervisor stopping")
	}
}

// reconcile sends the stop signals and starts the services that are due.
// Stop signals go out dependents first, because a service is signaled only
// once none of its dependents runs any more.
func (s *Supervisor) reconcile(now time.Time) {
	for i := len(s.order) - 1; i >= 0; i-- {
		svc := s.order[i]
		if svc.stopRequested && svc.pid != 0 && !svc.signaled && !s.dependentsRunning(svc) {
			s.sendStopSignal(svc)
		}
	}
	if s.stopping {
		return
	}

	for _, svc := range s.order {
		switch {
		case svc.state == StateWaiting:
		case svc.state == StateBackoff && !now.Before(svc.backoffUntil):
		default:
			continue
		}
		// A restarted dependency waits for its old dependents to be gone,
		// so that they never talk to two generations of it.
		if s.dependenciesReady(svc) && !s.dependentsRunning(svc) {
			s.launch(svc)
		}
	}
}

func (s *Supervisor) dependenciesReady(svc *service) bool {
	for _, dep := range svc.deps {
		if dep.state != StateReady {
			return false
		}
	}
	return true
}

func (s *Supervisor) dependentsRunning(svc *service) bool {
	for _, dependent := range svc.dependents {
		if dependent.running() {
			return true
		}
	}
	return false
}

func (s *Supervisor) allStopped() bool {
	for _, svc := range s.services {
		if svc.running() || (svc.state != StateStopped && svc.state != StateFailed) {
			return false
		}
	}
	return true
}

func (s *Supervisor) launch(svc *service) {
	svc.run++
	svc.launching = true
	svc.readyTimedOut = false
	svc.backoffUntil = time.Time{}
	svc.setState(StateStarting)
	s.workers.Add(1)
	go s.runProcess(svc, svc.run)
}

func (s *Supervisor) sendStopSignal(svc *service) {
	svc.signaled = true
	svc.killDeadline = time.Now().Add(svc.StopTimeout)
	s.out.event("%s stopping with %s (%s)", svc.Name, unix.SignalName(svc.StopSignal), svc.stopReason)
	s.log.Info("service stopping", "service", svc.Name, "pid", svc.pid, "signal", unix.SignalName(svc.StopSignal), "reason", svc.stopReason)
	s.signalGroup(svc, svc.StopSignal)
}

// signalGroup sends sig to the child's process group. The child leads the
// group, so helpers that it forked get the signal too.
func (s *Supervisor) signalGroup(svc *service, sig unix.Signal) {
	if svc.pid == 0 {
		return
	}
	if err := unix.Kill(-svc.pid, sig); err != nil && err != unix.ESRCH {
		s.log.Error("signal process group failed", "service", svc.Name, "pid", svc.pid, "signal", unix.SignalName(sig), "err", err)
	}
}

func (s *Supervisor) handleDeadlines(now time.Time) {
	for _, svc := range s.services {
		if !svc.readyDeadline.IsZero() && !now.Before(svc.readyDeadline) {
			svc.readyDeadline = time.Time{}
			if svc.state == StateStarting && svc.pid != 0 {
				svc.readyTimedOut = true
				s.out.event("%s not ready within %s; sending SIGKILL", svc.Name, svc.ReadyTimeout)
				s.log.Warn("service not ready in time", "service", svc.Name, "pid", svc.pid, "timeout", svc.ReadyTimeout)
				s.signalGroup(svc, unix.SIGKILL)
			}
		}

		if !svc.killDeadline.IsZero() && !now.Before(svc.killDeadline) {
			svc.killDeadline = time.Time{}
			if svc.pid != 0 {
				s.out.event("%s did not exit within %s of %s; sending SIGKILL", svc.Name, svc.StopTimeout, unix.SignalName(svc.StopSignal))
				s.log.Warn("service did not stop in time", "service", svc.Name, "pid", svc.pid, "timeout", svc.StopTimeout)
				s.signalGroup(svc, unix.SIGKILL)
			}
		}
	}
	// Expired backoffs are started by reconcile, which runs next.
}

// nextDeadline returns the earliest pending deadline, or the zero time. A
// backoff that had expired at now is left out, because reconcile(now) has
// handled it. Such a service waits for an event instead, such as a
// dependency becoming ready or a dependent exiting.
func (s *Supervisor) nextDeadline(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, svc := range s.services {
		consider(svc.readyDeadline)
		consider(svc.killDeadline)
		if svc.state == StateBackoff && !s.stopping && svc.backoffUntil.After(now) {
			consider(svc.backoffUntil)
		}
	}
	return next
}

func countRestarts(n int) string {
	if n == 1 {
		return "1 restart"
	}
	return fmt.Sprintf("%d restarts", n)
}

// formatDuration rounds d for the console, to 100 ms from one second up
// and to the millisecond below.
func formatDuration(d time.Duration) string {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
