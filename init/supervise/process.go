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

// process is one running child and the pipes the supervisor reads.
type process struct {
	pid    int
	exited <-chan unix.WaitStatus

	output *os.File // read end of the child's stdout and stderr
	ready  *os.File // read end of the readiness pipe, or nil

	outputDone chan struct{}
	readyDone  chan struct{}
}

// runProcess is the worker for one start of svc: it runs BeforeStart,
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

// startProcess runs BeforeStart and starts the child with its pipes.
func (s *Supervisor) startProcess(svc *service) (*process, error) {
	if svc.BeforeStart != nil {
		if err := callRecovering(svc.BeforeStart); err != nil {
			return nil, fmt.Errorf("before start: %w", err)
		}
	}

	output, outputWriter, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create output pipe: %w", err)
	}
	// The child has its own copies after the start; the parent's copies
	// would keep the pipes from ever reaching end of file.
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
	// A process group of its own lets a stop signal reach every process the
	// child forks. Pdeathsig is not set: Linux sends it when the thread that
	// forked the child exits, and the Go runtime may end threads.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}

	var exited <-chan unix.WaitStatus
	err = callRecovering(func() error {
		var err error
		exited, err = s.opts.Start(cmd)
		return err
	})
	if err == nil && (cmd.Process == nil || exited == nil) {
		err = errors.New("the Start function returned no process or no exit channel")
		if cmd.Process != nil {
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
	// next to the restarted service. The group outlives its leader while
	// it has members, so its ID cannot have been reused yet.
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

	// Closing the read ends ends any blocked read; what is still unread is
	// lost.
	proc.closePipes()
	<-proc.outputDone
	<-proc.readyDone
	return status, known
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
		// startProcess connects stdout and stderr to *os.File pipes, so
		// Wait copies nothing and fails only if the status is lost.
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

// describeStatus returns "exit status N" or "killed by signal N".
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

// childEnv returns the environment for one start of svc.
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
