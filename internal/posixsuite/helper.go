package posixsuite

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv selects helper mode in a re-executed test binary.
const helperEnv = "POSIXSUITE_HELPER"

// helperDirFd is the descriptor of the directory under test in a helper.
const helperDirFd = 3

func init() {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper(os.Args[1:], os.Stdin, os.Stdout))
	}
}

// runHelper executes one helper command and returns the exit code.
//
//	lock FILE TYPE START LEN WAIT  takes a POSIX lock (TYPE r or w, WAIT 0
//	                               or 1), prints "locked" or "errno N", and
//	                               holds the lock until stdin closes
//	getlk FILE TYPE START LEN      prints the lock that F_GETLK returns
//	                               as "TYPE PID START LEN"
//	ops                            reads "OP PATH [ARG]" lines from stdin
//	                               and prints one errno number a line
//	                               (0 for success); see runOp
func runHelper(args []string, stdin io.Reader, stdout io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "posixsuite helper: missing command")
		return 2
	}
	var err error
	switch args[0] {
	case "lock":
		err = helperLock(args[1:], stdin, stdout)
	case "getlk":
		err = helperGetlk(args[1:], stdout)
	case "ops":
		err = helperOps(stdin, stdout)
	default:
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "posixsuite helper:", err)
		return 2
	}
	return 0
}

// parseLockArgs parses "FILE TYPE START LEN".
func parseLockArgs(args []string) (string, unix.Flock_t, error) {
	if len(args) < 4 {
		return "", unix.Flock_t{}, fmt.Errorf("want FILE TYPE START LEN, got %q", args)
	}
	lk := unix.Flock_t{Whence: io.SeekStart}
	switch args[1] {
	case "r":
		lk.Type = unix.F_RDLCK
	case "w":
		lk.Type = unix.F_WRLCK
	default:
		return "", lk, fmt.Errorf("invalid lock type %q", args[1])
	}
	var err error
	if lk.Start, err = strconv.ParseInt(args[2], 10, 64); err != nil {
		return "", lk, err
	}
	if lk.Len, err = strconv.ParseInt(args[3], 10, 64); err != nil {
		return "", lk, err
	}
	return args[0], lk, nil
}

func helperLock(args []string, stdin io.Reader, stdout io.Writer) error {
	name, lk, err := parseLockArgs(args)
	if err != nil {
		return err
	}
	if len(args) != 5 {
		return fmt.Errorf("want FILE TYPE START LEN WAIT, got %q", args)
	}
	fd, err := unix.Openat(helperDirFd, name, unix.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	cmd := unix.F_SETLK
	if args[4] == "1" {
		cmd = unix.F_SETLKW
	}
	if err := unix.FcntlFlock(uintptr(fd), cmd, &lk); err != nil {
		fmt.Fprintf(stdout, "errno %d\n", err.(syscall.Errno))
		return nil
	}
	fmt.Fprintln(stdout, "locked")
	// Hold the lock until the test closes stdin; exiting releases it.
	_, _ = io.Copy(io.Discard, stdin)
	return nil
}

func helperGetlk(args []string, stdout io.Writer) error {
	name, lk, err := parseLockArgs(args)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(helperDirFd, name, unix.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &lk); err != nil {
		return fmt.Errorf("F_GETLK: %w", err)
	}
	fmt.Fprintf(stdout, "%d %d %d %d\n", lk.Type, lk.Pid, lk.Start, lk.Len)
	return nil
}

func helperOps(stdin io.Reader, stdout io.Writer) error {
	scanner := bufio.NewScanner(stdin)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 2 {
			return fmt.Errorf("invalid operation line %q", scanner.Text())
		}
		errno, err := runOp(fields[0], fields[1], fields[2:])
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, int(errno))
	}
	return scanner.Err()
}

// runOp performs one operation of the ops command on path, relative to the
// directory under test, and returns its errno (0 for success).
func runOp(op, path string, args []string) (syscall.Errno, error) {
	var err error
	switch op {
	case "read":
		err = closeAfter(unix.Openat(helperDirFd, path, unix.O_RDONLY, 0))
	case "write":
		err = closeAfter(unix.Openat(helperDirFd, path, unix.O_WRONLY, 0))
	case "create":
		err = closeAfter(unix.Openat(helperDirFd, path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644))
	case "stat":
		var st unix.Stat_t
		err = unix.Fstatat(helperDirFd, path, &st, unix.AT_SYMLINK_NOFOLLOW)
	case "mkdir":
		err = unix.Mkdirat(helperDirFd, path, 0o755)
	case "unlink":
		err = unix.Unlinkat(helperDirFd, path, 0)
	case "rmdir":
		err = unix.Unlinkat(helperDirFd, path, unix.AT_REMOVEDIR)
	case "rename":
		if len(args) != 1 {
			return 0, fmt.Errorf("rename needs a target")
		}
		err = unix.Renameat(helperDirFd, path, helperDirFd, args[0])
	case "chown":
		if len(args) != 1 {
			return 0, fmt.Errorf("chown needs a uid")
		}
		uid, convErr := strconv.Atoi(args[0])
		if convErr != nil {
			return 0, convErr
		}
		err = unix.Fchownat(helperDirFd, path, uid, -1, unix.AT_SYMLINK_NOFOLLOW)
	case "chmod":
		err = unix.Fchmodat(helperDirFd, path, 0o777, 0)
	case "utimes":
		times := []unix.Timespec{{Sec: 1_000_000_000}, {Sec: 1_000_000_000}}
		err = unix.UtimesNanoAt(helperDirFd, path, times, 0)
	case "utimes-now":
		times := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
		err = unix.UtimesNanoAt(helperDirFd, path, times, 0)
	case "truncate":
		fd, openErr := unix.Openat(helperDirFd, path, unix.O_WRONLY|unix.O_TRUNC, 0)
		err = closeAfter(fd, openErr)
	case "access-w":
		err = unix.Faccessat(helperDirFd, path, unix.W_OK, 0)
	case "append":
		fd, openErr := unix.Openat(helperDirFd, path, unix.O_WRONLY|unix.O_APPEND, 0)
		if openErr == nil {
			_, err = unix.Write(fd, []byte{'x'})
			unix.Close(fd)
		} else {
			err = openErr
		}
	case "exec":
		// The child resolves the path while it still has the directory's
		// descriptor, which closes only when execve(2) succeeds.
		err = exec.Command(fmt.Sprintf("/proc/self/fd/%d/%s", helperDirFd, path)).Run()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return errno, nil
		}
	default:
		return 0, fmt.Errorf("unknown operation %q", op)
	}
	if err == nil {
		return 0, nil
	}
	errno, ok := err.(syscall.Errno)
	if !ok {
		return 0, err
	}
	return errno, nil
}

func closeAfter(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// startHelper starts the test binary as a helper with the given command.
// The directory dir is its descriptor 3. cred, if set, are its user and
// groups. The helper is killed when the test ends if it is still running.
func (e *env) startHelper(t *testing.T, dir string, cred *syscall.Credential, args ...string) *helper {
	t.Helper()
	exe := e.suite.helperBinary(t, cred != nil)
	dirFile, err := os.Open(dir)
	if err != nil {
		t.Fatalf("open %s for the helper: %v", dir, err)
	}
	defer dirFile.Close()

	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.ExtraFiles = []*os.File{dirFile}
	cmd.Stderr = &testLogWriter{t: t, prefix: "helper: "}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("helper stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("helper stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the helper %q: %v", args, err)
	}
	h := &helper{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("helper %q did not exit 10 s after its stdin closed; killing it", args)
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return h
}

// readLine returns the next line of the helper's output, without the
// newline, or fails the test after timeout.
func (h *helper) readLine(t *testing.T, timeout time.Duration) string {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := h.stdout.ReadString('\n')
		ch <- result{strings.TrimSuffix(line, "\n"), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read from the helper: %v (output %q)", r.err, r.line)
		}
		return r.line
	case <-time.After(timeout):
		t.Fatalf("helper printed nothing within %v", timeout)
		return ""
	}
}

// release closes the helper's stdin, which makes a lock helper exit and
// drop its lock, and waits for the exit.
func (h *helper) release(t *testing.T) {
	t.Helper()
	_ = h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

// helperBinary returns the path of the running test binary. For a helper
// that runs as another user it returns a copy in a directory that every
// user may enter, because `go test` builds the binary in a directory that
// only its owner can search. The copy is made once per Run and removed
// when Run ends.
func (s *suite) helperBinary(t *testing.T, otherUser bool) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary: %v", err)
	}
	if !otherUser {
		return exe
	}
	s.copyOnce.Do(func() {
		s.copyPath, s.copyErr = copyExecutable(exe)
	})
	if s.copyErr != nil {
		t.Fatalf("copy the test binary for a helper of another user: %v", s.copyErr)
	}
	return s.copyPath
}

// removeHelperCopy removes the copy that helperBinary made, if any.
func (s *suite) removeHelperCopy(t *testing.T) {
	if s.copyPath == "" {
		return
	}
	if err := os.RemoveAll(filepath.Dir(s.copyPath)); err != nil {
		t.Errorf("remove the helper copy: %v", err)
	}
}

func copyExecutable(exe string) (string, error) {
	dir, err := os.MkdirTemp("", "posixsuite-helper-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer src.Close()
	path := filepath.Join(dir, "helper")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return "", err
	}
	return path, dst.Close()
}

// testLogWriter sends a helper's stderr to the test log.
type testLogWriter struct {
	t      *testing.T
	prefix string
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
