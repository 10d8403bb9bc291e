//go:build linux

package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// outputDrainTimeout bounds how long the supervisor reads a child's output
// and readiness pipes after the child has exited. A process that left the
// child's process group (with setsid, for example) may keep them open.
const outputDrainTimeout = 2 * time.Second

// errStartCanceled reports a start that was abandoned after BeforeStart
// because a stop of the service had been requested meanwhile.
var errStartCanceled = errors.New("start canceled by a stop request")

// process is one running child and the pipes the supervisor reads.
type process struct {
	pid    int
	exited <-chan unix.WaitStatus

	output *os.File // read end of the child's stdout and stderr
	ready  *os.File // read end of the readiness pipe, or nil

	outputDone chan struct{}
	readyDone  chan struct{}
}

// runProcess is the worker for one start of svc. It runs BeforeStart,
// starts the child, reads its output and reports the start and the exit to
// the loop. It returns after the exit event is delivered.
func (s *Supervisor) runProcess(svc *service, run uint64) {
	defer s.workers.Done()

	var proc *process
	reported := false
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		s.log.Error("supervisor panic", "service", svc.Name, "panic", r, "stack", string(debug.Stack()))
		err := fmt.Errorf("supervisor panic: %v", r)
		if !reported {
			if proc != nil {
				_ = unix.Kill(-proc.pid, unix.SIGKILL)
			}
			s.send(event{kind: eventStarted, svc: svc, run: run, err: err})
			return
		}
		if proc == nil {
			return
		}
		// The child may still run. Kill it and end the readers, so that the
		// loop can start over.
		_ = unix.Kill(-proc.pid, unix.SIGKILL)
		proc.closePipes()
		s.send(event{kind: eventExited, svc: svc, run: run})
	}()

	proc, err := s.startProcess(svc)
	if err != nil {
		reported = true
		s.send(event{kind: eventStarted, svc: svc, run: run, err: err})
		return
	}

	// The started event goes out before the readers start, so that the
	// loop never receives READY from a process it has no PID for yet.
	reported = true
	s.send(event{kind: eventStarted, svc: svc, run: run, pid: proc.pid})
	s.startReaders(svc, run, proc)

	status, known := s.wait(proc)
	s.send(event{kind: eventExited, svc: svc, run: run, status: status, statusKnown: known})
}

// startProcess runs BeforeStart and starts the child with its pipes. It
// returns errStartCanceled if a stop was requested before the child
// started.
func (s *Supervisor) startProcess(svc *service) (*process, error) {
	if svc.BeforeStart != nil {
		if err := callRecovering(svc.BeforeStart); err != nil {
			return nil, fmt.Errorf("before start: %w", err)
		}
	}

	// Stop, or the exit of a dependency, may have come while BeforeStart
	// ran. The loop clears stopRequested only when it handles an event of
	// this start, so the request cannot be withdrawn before that. A stop
	// requested after this check still lets the child start, and the loop
	// then stops it at once.
	if s.isStopRequested(svc) {
		return nil, errStartCanceled
	}

	output, outputWriter, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create output pipe: %w", err)
	}
	// The child has its own copies of the write ends once it has started.
	// The parent's copies would keep the pipes from ever reaching end of
	// file.
	defer outputWriter.Close()

	var ready, readyWriter *os.File
	if svc.NotifyReady {
		ready, readyWriter, err = os.Pipe()
		if err != nil {
			output.Close()
			return nil, fmt.Errorf("create readiness pipe: %w", err)
		}
		defer readyWriter.Close()
	}

	cmd := exec.Command(svc.Path, svc.Args...)
	cmd.Env = childEnv(svc)
	cmd.Dir = svc.Dir
	cmd.Stdout = outputWriter
	cmd.Stderr = outputWriter
	if readyWriter != nil {
		cmd.ExtraFiles = []*os.File{readyWriter}
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, svc.Files...)
	// A process group of its own lets a stop signal reach every process the
	// child forks. Pdeathsig is not set, because Linux sends it when the
	// thread that forked the child exits, and the Go runtime may end that
	// thread while the child runs.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}

	var exited <-chan unix.WaitStatus
	err = callRecovering(func() error {
		var err error
		exited, err = s.opts.Start(cmd)
		return err
	})
	if err == nil {
		switch {
		case cmd.Process == nil:
			err = errors.New("invalid Options.Start: it returned no error but did not start the command (cmd.Process is nil)")
		case exited == nil:
			err = errors.New("invalid Options.Start: it returned no error but a nil exit channel")
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		}
	}
	if err != nil {
		output.Close()
		if ready != nil {
			ready.Close()
		}
		return nil, err
	}

	return &process{
		pid:        cmd.Process.Pid,
		exited:     exited,
		output:     output,
		ready:      ready,
		outputDone: make(chan struct{}),
		readyDone:  make(chan struct{}),
	}, nil
}

func (s *Supervisor) startReaders(svc *service, run uint64, proc *process) {
	go s.readOutput(svc, proc.output, proc.outputDone)
	if proc.ready != nil {
		go s.readReadiness(svc, run, proc.ready, proc.readyDone)
	} else {
		close(proc.readyDone)
	}
}

// wait returns the child's wait status once the child has exited and its
// output is read, so that the ring is complete when the loop handles the
// exit.
func (s *Supervisor) wait(proc *process) (unix.WaitStatus, bool) {
	status, known := <-proc.exited

	// Processes left in the group would keep the pipes open and could run
	// next to the restarted service. Linux does not reuse the ID of a
	// process group that still has members, so this signal reaches only
	// this child's helpers. An empty group gets ESRCH unless its ID was
	// reused since the leader was reaped, which needs the PID counter to
	// wrap around in that moment.
	if err := unix.Kill(-proc.pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
		s.log.Warn("kill rest of process group failed", "pid", proc.pid, "err", err)
	}

	deadline := time.NewTimer(outputDrainTimeout)
	defer deadline.Stop()
	expired := false
	for _, done := range []chan struct{}{proc.outputDone, proc.readyDone} {
		if expired {
			break
		}
		select {
		case <-done:
		case <-deadline.C:
			expired = true
			s.log.Warn("pipes still open after exit; closing them", "pid", proc.pid, "timeout", outputDrainTimeout)
		}
	}

	// Closing the read ends makes any blocked read return. Output that is
	// still unread is lost.
	proc.closePipes()
	<-proc.outputDone
	<-proc.readyDone
	return status, known
}

// isStopRequested reports whether the loop has requested a stop of svc.
func (s *Supervisor) isStopRequested(svc *service) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return svc.stopRequested
}

func (proc *process) closePipes() {
	proc.output.Close()
	if proc.ready != nil {
		proc.ready.Close()
	}
}

// callRecovering calls fn and turns a panic into an error, because fn is
// caller code (BeforeStart, Start) that must not take down PID 1.
func callRecovering(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}

// startAndWait is the default StartFunc.
func startAndWait(cmd *exec.Cmd) (<-chan unix.WaitStatus, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan unix.WaitStatus, 1)
	go func() {
		// Wait also returns an *exec.ExitError for every unsuccessful exit,
		// so the status comes from ProcessState, which is nil only if the
		// wait itself failed. Stdout and Stderr are *os.File pipes, so Wait
		// copies no output.
		_ = cmd.Wait()
		if cmd.ProcessState == nil {
			close(exited)
			return
		}
		status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok {
			close(exited)
			return
		}
		exited <- unix.WaitStatus(status)
	}()
	return exited, nil
}

// describeStatus returns "exit status N", "killed by signal N" with
// ", core dumped" if there is a core dump, or the raw wait status in hex.
func describeStatus(status unix.WaitStatus) string {
	switch {
	case status.Exited():
		return fmt.Sprintf("exit status %d", status.ExitStatus())
	case status.Signaled() && status.CoreDump():
		return fmt.Sprintf("killed by signal %d, core dumped", int(status.Signal()))
	case status.Signaled():
		return fmt.Sprintf("killed by signal %d", int(status.Signal()))
	}
	return fmt.Sprintf("wait status %#x", uint32(status))
}

// childEnv returns the environment for one start of svc. It is Env, or the
// supervisor's own environment, without BT_READY_FD, which is added back
// for a NotifyReady service.
func childEnv(svc *service) []string {
	base := svc.Env
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+1)
	for _, kv := range base {
		// A BT_READY_FD inherited from the supervisor's own environment
		// would point the child at an unrelated descriptor.
		if !strings.HasPrefix(kv, ReadyFDEnv+"=") {
			env = append(env, kv)
		}
	}
	if svc.NotifyReady {
		env = append(env, fmt.Sprintf("%s=%d", ReadyFDEnv, readyFD))
	}
	return env
}
