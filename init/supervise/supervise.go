//go:build linux

package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// readyFD is the descriptor number of the readiness pipe in the child,
// because exec.Cmd places ExtraFiles[0] at descriptor 3.
const readyFD = 3

// FileDescriptor returns the descriptor number that Files[i] has in the
// child, to pass to the service in its arguments.
func (s Service) FileDescriptor(i int) int {
	if s.NotifyReady {
		return readyFD + 1 + i
	}
	return readyFD + i
}

const (
	defaultStopTimeout     = 10 * time.Second
	defaultRingLines       = 200
	defaultBackoffMin      = 500 * time.Millisecond
	defaultBackoffMax      = 30 * time.Second
	defaultCrashLoopLimit  = 5
	defaultCrashLoopWindow = time.Minute

	// failureTailLines is the number of ring lines that go to the console
	// when a service fails for good.
	failureTailLines = 20
)

// Service describes one supervised program. The zero values of the optional
// fields select the defaults named in each field's comment.
type Service struct {
	// Name identifies the service in After, in Status and on the console.
	// It may contain ASCII letters, digits, '.', '_' and '-'.
	Name string

	// Path is the program to run. A path without a slash is looked up in
	// PATH, as exec.Command does.
	Path string

	// Args are the arguments after the program name.
	Args []string

	// Env is the child's environment. Nil means the supervisor's own. The
	// supervisor always removes BT_READY_FD from it and sets it again when
	// NotifyReady is true.
	Env []string

	// Dir is the child's working directory. Empty means the supervisor's.
	Dir string

	// After names the services that must be ready before this one starts.
	// When one of them exits, this service is stopped before that
	// dependency restarts, and it starts again once the dependency is
	// ready again.
	After []string

	// NotifyReady makes the service ready only when it writes "READY\n" to
	// the descriptor named by BT_READY_FD (see NotifyReady). Without it the
	// service is ready as soon as its process has started.
	NotifyReady bool

	// ReadyTimeout is the maximum time from the start of a NotifyReady
	// service's process until it is ready. After it, the process group
	// gets SIGKILL and the exit counts as a crash. Zero means no limit.
	ReadyTimeout time.Duration

	// StopSignal is sent to the process group to stop the service.
	// Zero means SIGTERM.
	StopSignal unix.Signal

	// StopTimeout is the maximum time from the stop signal until the
	// process exits. After it, the process group gets SIGKILL. Zero means
	// 10 seconds.
	StopTimeout time.Duration

	// Files are inherited by every start of the child, as descriptors 3,
	// 4 and so on, or from 4 when NotifyReady is true, because the
	// readiness pipe takes descriptor 3 (see FileDescriptor). They stay
	// owned by the caller, which must keep them open while the service may
	// start.
	Files []*os.File

	// BeforeStart runs before every start, on its own goroutine. An error
	// or a panic counts as a failed start, which is retried like a crash.
	// Stop waits for a BeforeStart call that is under way to return.
	BeforeStart func() error
}

// StartFunc starts cmd and returns a channel that receives the child's
// wait status once. A closed channel means the status was lost. The
// supervisor reads cmd.Process.Pid after the function returns, so the
// function must not call cmd.Process.Release. Options.Start documents when
// to supply one.
type StartFunc func(cmd *exec.Cmd) (<-chan unix.WaitStatus, error)

// Options configures a Supervisor. The zero value is usable.
type Options struct {
	// Console receives every output line of every service as
	// "name: line", and one line per supervisor event, starting with
	// "supervise: ". Nil discards them. Write errors are ignored.
	Console io.Writer

	// Logger receives the supervisor events as structured records with the
	// key "service". Nil discards them.
	Logger *slog.Logger

	// RingLines is the number of last output lines that each service keeps
	// for Logs and for the failure report. Zero means 200.
	RingLines int

	// BackoffMin and BackoffMax bound the delay before a restart. The delay
	// starts at BackoffMin, doubles with each consecutive crash and gets
	// ±20% jitter, clamped to [BackoffMin, BackoffMax]. A service that was
	// ready for longer than BackoffMax before it exited starts over at
	// BackoffMin. A zero BackoffMin means 500 ms. A zero BackoffMax means
	// 30 s, or BackoffMin if that is greater.
	BackoffMin, BackoffMax time.Duration

	// CrashLoopLimit is the maximum number of restarts of a service within
	// CrashLoopWindow. The next crash marks the service failed for good. It
	// is not restarted, its last ring lines go to the console, and the
	// services that depend on it are stopped and marked failed too. Zero
	// means 5 and a negative value means no limit. A zero CrashLoopWindow
	// means one minute.
	CrashLoopLimit  int
	CrashLoopWindow time.Duration

	// Start starts a child and reports its exit status. Nil means cmd.Start
	// followed by cmd.Wait on a goroutine. A process that reaps every child
	// with wait4(-1), as PID 1 does, must supply its own, because
	// exec.Cmd.Wait would race with that reaper.
	Start StartFunc
}

// State is a service's place in its lifecycle.
type State int

const (
	// StateWaiting means the service waits for the services in its After
	// list to become ready.
	StateWaiting State = iota
	// StateStarting means BeforeStart runs, or the process runs but is not
	// ready yet.
	StateStarting
	// StateReady means the process runs and is ready. Without NotifyReady
	// that is as soon as it has started, with NotifyReady once it has
	// written READY.
	StateReady
	// StateBackoff means the service exited and waits for its restart delay.
	StateBackoff
	// StateStopping means the process got its stop signal, or will get it
	// once the services that depend on it have exited.
	StateStopping
	// StateStopped means the supervisor stopped the service for good.
	StateStopped
	// StateFailed means the service crashed too often, or a service it
	// depends on did, and it will not be started again.
	StateFailed
)

var stateNames = [...]string{
	StateWaiting:  "waiting",
	StateStarting: "starting",
	StateReady:    "ready",
	StateBackoff:  "backoff",
	StateStopping: "stopping",
	StateStopped:  "stopped",
	StateFailed:   "failed",
}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// Status is a snapshot of one service.
type Status struct {
	Name  string
	State State
	// Since is when the service entered State.
	Since time.Time
	// PID is the process ID of the running child, or 0.
	PID int
	// Restarts counts restarts after the service's own exits and failed
	// starts. Stops caused by a dependency do not count.
	Restarts int
	// LastExit describes the last exit, such as "exit status 1" or
	// "killed by signal 9". It is empty before the first exit.
	LastExit string
	// FailReason is the reason State is StateFailed, and empty otherwise.
	FailReason string
}

// ErrStopped is returned by WaitReady for a service that the supervisor has
// stopped, and by Run after Stop.
var ErrStopped = errors.New("supervisor stopped")

// FailedError reports that a service failed for good.
type FailedError struct {
	Service string
	Reason  string // such as "5 restarts within 1m0s" or "dependency storage failed"
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("service %s failed: %s", e.Service, e.Reason)
}

// Supervisor runs a fixed set of services. Its methods are safe for
// concurrent use.
type Supervisor struct {
	opts Options
	log  *slog.Logger
	out  *console

	// services is in the order given to New. order is a topological order
	// of the dependency graph, with every dependency before its dependents.
	services []*service
	order    []*service
	byName   map[string]*service

	events      chan event
	stopRequest chan struct{}
	stopOnce    sync.Once
	loopDone    chan struct{} // closed when the event loop returns
	done        chan struct{} // closed when every child and goroutine has ended
	workers     sync.WaitGroup

	mu       sync.Mutex
	phase    phase
	stopping bool
	changed  chan struct{} // closed and replaced after every event
}

type phase int

const (
	phaseNew phase = iota
	phaseRunning
	phaseDone
)

// New validates the options and services and returns a supervisor for
// them. It returns an error for an invalid or duplicate name, a missing
// Path, an After entry that names no service or closes a cycle, a negative
// duration or RingLines, an invalid StopSignal, and a BackoffMin greater
// than BackoffMax. Nothing starts before Run.
func New(opts Options, services ...Service) (*Supervisor, error) {
	opts, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	list, order, err := buildGraph(services)
	if err != nil {
		return nil, err
	}

	s := &Supervisor{
		opts:        opts,
		log:         opts.Logger,
		out:         &console{w: opts.Console},
		services:    list,
		order:       order,
		byName:      make(map[string]*service, len(list)),
		events:      make(chan event),
		stopRequest: make(chan struct{}),
		loopDone:    make(chan struct{}),
		done:        make(chan struct{}),
		changed:     make(chan struct{}),
	}
	now := time.Now()
	for _, svc := range list {
		svc.ring = newRing(opts.RingLines)
		svc.since = now
		s.byName[svc.Name] = svc
	}
	return s, nil
}

// Run starts the services in dependency order and supervises them until
// Stop is called or ctx is canceled, which stops them the same way. It
// returns nil once every child has exited, its output has been read and
// the supervisor's workers have ended. It returns an error wrapping
// ErrStopped at once if Stop came before Run or an earlier Run has
// returned, and an error if another Run is still running.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	switch s.phase {
	case phaseRunning:
		s.mu.Unlock()
		return errors.New("run services: Run was already called")
	case phaseDone:
		s.mu.Unlock()
		return fmt.Errorf("run services: %w", ErrStopped)
	}
	s.phase = phaseRunning
	s.mu.Unlock()

	s.loop(ctx)
	close(s.loopDone)
	s.workers.Wait()

	s.mu.Lock()
	s.phase = phaseDone
	s.notifyLocked()
	s.mu.Unlock()
	close(s.done)
	return nil
}

// Stop stops every service, dependents before their dependencies, and
// returns once all have exited. Each gets its StopSignal and, after its
// StopTimeout, SIGKILL. No process starts once Stop has begun, except one
// whose start was already past BeforeStart, and that one is stopped at
// once. If ctx ends first, Stop returns its error while the stop goes on,
// and Run returns when the stop is complete.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.phase == phaseNew {
		// Run never started anything, so there is nothing to wait for.
		s.phase = phaseDone
		s.stopping = true
		for _, svc := range s.services {
			svc.setState(StateStopped)
		}
		s.notifyLocked()
		s.mu.Unlock()
		close(s.done)
		return nil
	}
	s.mu.Unlock()

	s.stopOnce.Do(func() { close(s.stopRequest) })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop services: %w", ctx.Err())
	}
}

// WaitReady returns nil once the named service is ready. It returns a
// *FailedError if the service failed for good, an error wrapping ErrStopped
// if the supervisor stopped it, and ctx's error if ctx ends first. A service
// that crashes and restarts is waited for.
func (s *Supervisor) WaitReady(ctx context.Context, name string) error {
	svc, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("wait for service %q: no such service", name)
	}
	for {
		s.mu.Lock()
		state, reason, changed := svc.state, svc.failReason, s.changed
		s.mu.Unlock()

		switch state {
		case StateReady:
			return nil
		case StateFailed:
			return &FailedError{Service: name, Reason: reason}
		case StateStopped:
			return fmt.Errorf("wait for service %q: %w", name, ErrStopped)
		}

		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for service %q to be ready: %w", name, ctx.Err())
		}
	}
}

// Status returns a snapshot of every service, in the order given to New.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]Status, 0, len(s.services))
	for _, svc := range s.services {
		list = append(list, Status{
			Name:       svc.Name,
			State:      svc.state,
			Since:      svc.since,
			PID:        svc.pid,
			Restarts:   svc.restarts,
			LastExit:   svc.lastExit,
			FailReason: svc.failReason,
		})
	}
	return list
}

// Logs returns a copy of the named service's last output lines, oldest
// first, or nil if there is no such service.
func (s *Supervisor) Logs(name string) []string {
	svc, ok := s.byName[name]
	if !ok {
		return nil
	}
	return svc.ring.lines()
}

// notifyLocked wakes every WaitReady call. s.mu must be held.
func (s *Supervisor) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
