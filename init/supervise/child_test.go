//go:build linux

package supervise

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childModeEnv turns the test binary into a child service. The CHILD_*
// variables below then set its behaviour.
const childModeEnv = "SUPERVISE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childModeEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// runChild is the child service. In order, it:
//   - prints "child started" and the BT_READY_FD it got;
//   - prints the contents of the descriptor CHILD_READ_FD names;
//   - exits 3 if CHILD_REQUIRE_FILE names a missing file;
//   - prints CHILD_LINES numbered lines, the even ones on stderr, and a line
//     of CHILD_LONG_LINE bytes;
//   - sleeps CHILD_DELAY_MS, or exits 0 on SIGTERM;
//   - creates CHILD_READY_FILE, then calls NotifyReady and prints "child
//     notified", or with CHILD_NOTIFY=0 prints "child skipped notify";
//   - exits with CHILD_EXIT_CODE (default 1) after CHILD_EXIT_AFTER_MS, or
//     else waits for SIGTERM and exits 0, unless CHILD_IGNORE_TERM=1.
func runChild() int {
	terminate := make(chan os.Signal, 1)
	if os.Getenv("CHILD_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(terminate, syscall.SIGTERM)
	}

	fmt.Printf("child started\n")
	fmt.Printf("ready fd env %q\n", os.Getenv(ReadyFDEnv))
	if fd := envInt("CHILD_READ_FD", -1); fd >= 0 {
		buf := make([]byte, 64)
		n, err := os.NewFile(uintptr(fd), "inherited").ReadAt(buf, 0)
		fmt.Printf("fd %d contains %q (%v)\n", fd, buf[:n], err)
	}

	if path := os.Getenv("CHILD_REQUIRE_FILE"); path != "" {
		if _, err := os.Stat(path); err != nil {
			fmt.Printf("required file missing: %v\n", err)
			return 3
		}
	}

	for i := 1; i <= envInt("CHILD_LINES", 0); i++ {
		out := os.Stdout
		if i%2 == 0 {
			out = os.Stderr
		}
		fmt.Fprintf(out, "line %d\n", i)
	}
	if n := envInt("CHILD_LONG_LINE", 0); n > 0 {
		fmt.Println(strings.Repeat("x", n))
	}

	select {
	case <-time.After(time.Duration(envInt("CHILD_DELAY_MS", 0)) * time.Millisecond):
	case <-terminate:
		fmt.Println("stopping on SIGTERM")
		return 0
	}

	if path := os.Getenv("CHILD_READY_FILE"); path != "" {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			fmt.Printf("create ready file: %v\n", err)
			return 4
		}
	}
	if os.Getenv("CHILD_NOTIFY") == "0" {
		fmt.Println("child skipped notify")
	} else {
		if err := NotifyReady(); err != nil {
			fmt.Printf("notify ready: %v\n", err)
			return 5
		}
		fmt.Println("child notified")
	}

	if after := os.Getenv("CHILD_EXIT_AFTER_MS"); after != "" {
		time.Sleep(time.Duration(envInt("CHILD_EXIT_AFTER_MS", 0)) * time.Millisecond)
		return envInt("CHILD_EXIT_CODE", 1)
	}
	if os.Getenv("CHILD_IGNORE_TERM") == "1" {
		// Only SIGKILL ends this child. An empty select would be reported
		// as a deadlock, since no goroutine handles signals.
		for {
			time.Sleep(time.Hour)
		}
	}
	<-terminate
	fmt.Println("stopping on SIGTERM")
	return 0
}

func envInt(name string, fallback int) int {
	value, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		return fallback
	}
	return value
}

// childService returns a Service that runs the test binary as a child with
// the given CHILD_* settings, as "NAME=value" strings.
func childService(t *testing.T, name string, settings ...string) Service {
	t.Helper()
	binary, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	// A binary built with -race sleeps a second before it exits unless
	// GORACE sets atexit_sleep_ms, which would slow every stop down.
	env := append(os.Environ(), childModeEnv+"=1", "GORACE=atexit_sleep_ms=0")
	env = append(env, settings...)
	return Service{Name: name, Path: binary, Env: env}
}

// notifyingChild is childService with NotifyReady. Such a child is ready only
// once it has installed its SIGTERM handler, so a stop after ready ends it
// with exit status 0.
func notifyingChild(t *testing.T, name string, settings ...string) Service {
	t.Helper()
	svc := childService(t, name, settings...)
	svc.NotifyReady = true
	return svc
}
