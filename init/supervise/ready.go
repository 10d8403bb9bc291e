package supervise

import (
	"fmt"
	"os"
	"strconv"
)

// ReadyFDEnv is the environment variable that carries the number of a
// service's readiness file descriptor.
const ReadyFDEnv = "BT_READY_FD"

// NotifyReady reports to the supervisor that the calling service is ready. It
// writes "READY\n" to the descriptor named by BT_READY_FD, closes it and
// removes the variable from the environment, so that later calls and child
// processes do nothing. Without BT_READY_FD it does nothing and returns nil,
// so a service may call it whether or not it runs under a supervisor.
func NotifyReady() error {
	value, ok := os.LookupEnv(ReadyFDEnv)
	if !ok || value == "" {
		return nil
	}
	os.Unsetenv(ReadyFDEnv)

	fd, err := strconv.Atoi(value)
	if err != nil || fd < 0 {
		return fmt.Errorf("notify ready: invalid %s %q: not a file descriptor number", ReadyFDEnv, value)
	}
	f := os.NewFile(uintptr(fd), "readiness pipe")
	if _, err := f.WriteString("READY\n"); err != nil {
		f.Close()
		return fmt.Errorf("notify ready: write to descriptor %d: %w", fd, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("notify ready: close descriptor %d: %w", fd, err)
	}
	return nil
}
