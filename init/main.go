//go:build linux

// Command init is Blocktree's PID 1. It mounts the kernel file systems,
// loads the kernel modules listed in the initramfs, seeds entropy, sets
// the hostname and brings up the loopback interface. Then it unlocks the
// device: it finds the data partition, measures the boot, and unseals the
// node's keys with the TPM. On first boot it creates the keys, and when the
// TPM rejects them it prompts for the recovery key. It starts the storage
// daemon and the FUSE server as supervised services, prints the ready line,
// and keeps a gosh shell on the console in the mounted tree.
//
// PID 1 must not exit, because the kernel panics when it does. main reaps
// children from the start and never returns. The boot steps, the console
// shell, the signal handler, the service goroutines and the shutdown each
// recover a panic and log it with its stack. A Go runtime fatal error, such
// as a concurrent map write or running out of memory, cannot be recovered
// and still ends PID 1.
//
// SIGTERM and SIGPWR power the device off, and SIGINT (also what the
// kernel sends on ctrl-alt-del) reboots it, after stopping the services,
// flushing the journal and unmounting.
//
// Run as any process other than PID 1 (the image links poweroff and reboot
// to it), the same binary signals PID 1 to power off or reboot.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
)

const (
	shell = "/bbin/gosh"

	// shellRestartDelay keeps a shell that exits at once from spinning.
	shellRestartDelay = time.Second
)

var (
	consoleLog = newConsoleHandler(os.Stderr, slog.LevelInfo)

	// logger is PID 1's own logger, and the default for the libraries it
	// calls.
	logger = slog.New(consoleLog)

	// quietLogger is for the state and supervise packages. Their info
	// records repeat what PID 1's own records and the supervisor's console
	// lines already show, so only warnings and errors get through.
	quietLogger = slog.New(consoleLog.withLevel(slog.LevelWarn))
)

func main() {
	if os.Getpid() != 1 {
		os.Exit(control(filepath.Base(os.Args[0])))
	}
	slog.SetDefault(logger)
	// Firmware such as SeaBIOS turns off the terminal's line wrapping on the
	// serial console, which would cut long log lines at the right edge, so
	// turn it back on (DECAWM).
	os.Stdout.WriteString("\x1b[?7h")
	go bootAndRunConsole()
	// The reaper runs from the start, not after the boot, because the
	// supervisor learns that a service exited only through it, and the boot
	// waits for the services.
	reapForever()
}

// bootAndRunConsole boots the device, prints whether it is ready, and keeps
// a shell on the console: in the mounted tree when the boot reached ready,
// and in / otherwise.
func bootAndRunConsole() {
	defer recoverPanic("console")
	start := time.Now()
	ready := false
	guard("boot", func() error {
		ready = boot()
		return nil
	})
	if shuttingDown() {
		return
	}

	dir := "/"
	if ready {
		dir = treeMount
		// image/boot_test.go matches this line, so keep its wording stable.
		fmt.Fprintf(os.Stdout, "blocktree: ready (pid1 start to ready: %d ms)\n", time.Since(start).Milliseconds())
	} else {
		fmt.Fprintln(os.Stdout, "blocktree: not ready: the tree is not mounted, and the messages above say why. The shell runs in /.")
	}
	superviseShell(dir)
}

// stepTimes holds how long each boot step took, in order. Only the boot
// goroutine appends to it and reads it.
var stepTimes []any

// boot runs the boot steps in order and reports whether the tree is
// mounted.
func boot() bool {
	logger.Info("starting", "pid", os.Getpid())

	guard("mount", mountAll)
	guard("modules", loadModules)
	guard("entropy", seedEntropy)
	guard("hostname", setHostname)
	guard("loopback", setupLoopback)
	guard("signals", handleSignals)

	var dev *device
	guard("unlock", func() (err error) {
		dev, err = unlock()
		return err
	})
	if dev == nil {
		return false
	}
	ready := false
	guard("services", func() error {
		if err := startServices(dev); err != nil {
			return err
		}
		ready = true
		return nil
	})
	// BenchmarkApplianceBoot reads this line to split the boot time.
	logger.Info("boot step times", stepTimes...)
	return ready
}

// guard runs one boot step and logs its error or panic, so that a failed
// step leaves PID 1 running with a usable shell. It skips the step once a
// shutdown has begun.
func guard(step string, fn func() error) {
	if shuttingDown() {
		logger.Info("boot step skipped: the device is shutting down", "step", step)
		return
	}
	defer recoverPanic(step)
	start := time.Now()
	defer func() { stepTimes = append(stepTimes, slog.Duration(step, time.Since(start).Round(time.Millisecond))) }()
	if err := fn(); err != nil {
		logger.Error("boot step failed", "step", step, "error", err)
	}
}

// recoverPanic ends a panic and logs it with its stack. It works only when
// deferred directly, because recover returns nil anywhere else.
func recoverPanic(task string) {
	if r := recover(); r != nil {
		logPanic(task, r)
	}
}

// logPanic logs a recovered panic, then writes the stack to the console as
// it is, because one quoted line would make it hard to read.
func logPanic(task string, value any) {
	logger.Error("panic recovered; PID 1 goes on", "task", task, "panic", value)
	os.Stderr.Write(debug.Stack())
}

// goSafely runs fn on a new goroutine that logs a panic instead of ending
// PID 1.
func goSafely(task string, fn func()) {
	go func() {
		defer recoverPanic(task)
		fn()
	}()
}

// logf logs a formatted message at info level, for callers such as
// modules.go that have no attributes to add.
func logf(format string, args ...any) {
	logger.Info(fmt.Sprintf(format, args...))
}

// setHostname sets the hostname from bt.hostname= on the kernel command
// line, or to "blocktree".
func setHostname() error {
	name := "blocktree"
	if v, ok := cmdlineParam("bt.hostname"); ok && v != "" {
		name = v
	}
	err := unix.Sethostname([]byte(name))
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("set hostname %q: %w: Linux takes at most 64 bytes, so shorten bt.hostname=", name, err)
	}
	if err != nil {
		return fmt.Errorf("set hostname %q: %w", name, err)
	}
	return nil
}

// consoleHandler is a slog.Handler that writes one line a record to the
// console: "blocktree-init: ", the level for warnings and errors, the
// message, then the attributes as key=value. A value is quoted as
// strconv.Quote does when it is empty or contains spaces, quotes, '=' or
// control characters.
type consoleHandler struct {
	mu     *sync.Mutex // serializes writes to w across derived handlers
	w      io.Writer
	level  slog.Leveler
	attrs  string // attributes from WithAttrs, formatted, each after a space
	prefix string // group names from WithGroup, each followed by "."
}

func newConsoleHandler(w io.Writer, level slog.Leveler) *consoleHandler {
	return &consoleHandler{mu: new(sync.Mutex), w: w, level: level}
}

// withLevel returns a copy of h that writes to the same console at level.
func (h *consoleHandler) withLevel(level slog.Leveler) *consoleHandler {
	copied := *h
	copied.level = level
	return &copied
}

func (h *consoleHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

func (h *consoleHandler) Handle(_ context.Context, record slog.Record) error {
	var line strings.Builder
	line.WriteString("blocktree-init: ")
	if record.Level >= slog.LevelWarn {
		line.WriteString(record.Level.String())
		line.WriteByte(' ')
	}
	line.WriteString(record.Message)
	line.WriteString(h.attrs)
	record.Attrs(func(attr slog.Attr) bool {
		appendAttr(&line, h.prefix, attr)
		return true
	})
	line.WriteByte('\n')

	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line.String())
	return err
}

func (h *consoleHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var formatted strings.Builder
	for _, attr := range attrs {
		appendAttr(&formatted, h.prefix, attr)
	}
	copied := *h
	copied.attrs += formatted.String()
	return &copied
}

func (h *consoleHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	copied := *h
	copied.prefix += name + "."
	return &copied
}

// appendAttr writes " key=value" for attr, and one such pair for each
// member of a group, with the group's name and a dot before its keys.
func appendAttr(line *strings.Builder, prefix string, attr slog.Attr) {
	attr.Value = attr.Value.Resolve()
	if attr.Equal(slog.Attr{}) {
		return
	}
	if attr.Value.Kind() == slog.KindGroup {
		if attr.Key != "" {
			prefix += attr.Key + "."
		}
		for _, member := range attr.Value.Group() {
			appendAttr(line, prefix, member)
		}
		return
	}
	line.WriteByte(' ')
	line.WriteString(quoteIfNeeded(prefix + attr.Key))
	line.WriteByte('=')
	line.WriteString(quoteIfNeeded(attr.Value.String()))
}

func quoteIfNeeded(s string) string {
	needsQuotes := s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == ' ' || r == '"' || r == '=' || !unicode.IsPrint(r)
	})
	if needsQuotes {
		return strconv.Quote(s)
	}
	return s
}
