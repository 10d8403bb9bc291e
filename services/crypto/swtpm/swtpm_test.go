package swtpm

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// requireSwtpm skips the test when swtpm is missing on a developer machine.
// In CI (CI=true) a missing swtpm fails the test, so CI never passes by
// skipping.
func requireSwtpm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(binaryName); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swtpm is required in CI: %v: apt-get install swtpm swtpm-tools", err)
		}
		t.Skipf("swtpm not installed: %v", err)
	}
}

func startTest(t *testing.T, opts Options) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Kill(); err != nil {
			t.Errorf("Kill in cleanup: %v", err)
		}
	})
	return p
}

// readResetCount returns the TPM's reset count, which the TPM stores in
// non-volatile memory and increments on every TPM2_Startup(CLEAR).
func readResetCount(t *testing.T, socketPath string) uint32 {
	t.Helper()
	tpm, err := linuxudstpm.Open(socketPath)
	if err != nil {
		t.Fatalf("open %s: %v", socketPath, err)
	}
	defer tpm.Close()
	rsp, err := tpm2.ReadClock{}.Execute(tpm)
	if err != nil {
		t.Fatalf("ReadClock: %v", err)
	}
	return rsp.CurrentTime.ClockInfo.ResetCount
}

func TestStartServesTPMCommands(t *testing.T) {
	requireSwtpm(t)
	stateDir := t.TempDir()
	p := startTest(t, Options{StateDir: stateDir})

	if got, want := filepath.Dir(p.SocketPath()), stateDir; got != want {
		t.Errorf("socket directory = %s, want the state directory %s", got, want)
	}

	tpm, err := linuxudstpm.Open(p.SocketPath())
	if err != nil {
		t.Fatalf("open socket: %v", err)
	}
	defer tpm.Close()
	rsp, err := tpm2.GetRandom{BytesRequested: 16}.Execute(tpm)
	if err != nil {
		t.Fatalf("GetRandom without sending TPM2_Startup: %v", err)
	}
	if len(rsp.RandomBytes.Buffer) != 16 {
		t.Errorf("GetRandom returned %d bytes, want 16", len(rsp.RandomBytes.Buffer))
	}
}

func TestStopRemovesSocketsKeepsState(t *testing.T) {
	requireSwtpm(t)
	stateDir := t.TempDir()
	p := startTest(t, Options{StateDir: stateDir})

	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Lstat(p.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s after Stop: Lstat error = %v, want not exist", p.SocketPath(), err)
	}
	if _, err := os.Lstat(p.ctrlPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket %s after Stop: Lstat error = %v, want not exist", p.ctrlPath, err)
	}
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		t.Fatalf("read state directory: %v", err)
	}
	if len(entries) == 0 {
		t.Errorf("state directory %s is empty after Stop, want swtpm's state files", stateDir)
	}

	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill after Stop: %v", err)
	}
}

func TestRestartKeepsTPMState(t *testing.T) {
	requireSwtpm(t)
	stateDir := t.TempDir()

	first := startTest(t, Options{StateDir: stateDir})
	before := readResetCount(t, first.SocketPath())
	if err := first.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, err := os.Lstat(first.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s after Kill: Lstat error = %v, want not exist", first.SocketPath(), err)
	}

	second := startTest(t, Options{StateDir: stateDir})
	afterKill := readResetCount(t, second.SocketPath())
	if afterKill != before+1 {
		t.Errorf("reset count after Kill and Start = %d, want %d (same TPM booted once more)", afterKill, before+1)
	}
	if err := second.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	third := startTest(t, Options{StateDir: stateDir})
	afterStop := readResetCount(t, third.SocketPath())
	if afterStop != before+2 {
		t.Errorf("reset count after Stop and Start = %d, want %d", afterStop, before+2)
	}
}

func TestLongSocketDirUsesTempDir(t *testing.T) {
	requireSwtpm(t)
	longDir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	p := startTest(t, Options{StateDir: t.TempDir(), SocketDir: longDir})

	if len(p.SocketPath()) > maxSocketPathLen {
		t.Errorf("socket path has %d bytes, want at most %d: %s", len(p.SocketPath()), maxSocketPathLen, p.SocketPath())
	}
	if p.tempDir == "" || filepath.Dir(p.SocketPath()) != p.tempDir {
		t.Errorf("socket %s is not in a temporary directory (tempDir %q)", p.SocketPath(), p.tempDir)
	}
	readResetCount(t, p.SocketPath())

	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(p.tempDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary socket directory %s after Stop: Stat error = %v, want not exist", p.tempDir, err)
	}
}

func TestStartWithoutSwtpmNamesPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	_, err := Start(context.Background(), Options{StateDir: t.TempDir()})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Start error = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "apt-get install swtpm swtpm-tools") {
		t.Errorf("error %q does not say how to install swtpm", err)
	}
}

func TestStartRejectsEmptyStateDir(t *testing.T) {
	requireSwtpm(t)
	if _, err := Start(context.Background(), Options{}); err == nil {
		t.Fatal("Start with empty StateDir succeeded, want an error")
	}
}

func TestStartRejectsLiveSocket(t *testing.T) {
	requireSwtpm(t)
	socketDir := t.TempDir()
	running := startTest(t, Options{StateDir: t.TempDir(), SocketDir: socketDir})

	_, err := Start(context.Background(), Options{StateDir: t.TempDir(), SocketDir: socketDir})
	if err == nil {
		t.Fatal("second Start on a served socket succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "served by a running process") {
		t.Errorf("error %q does not say the socket is in use", err)
	}
	// readResetCount fails the test unless the first swtpm still serves
	// its socket.
	readResetCount(t, running.SocketPath())
}

func TestStartReplacesStaleSocket(t *testing.T) {
	requireSwtpm(t)
	stateDir := t.TempDir()
	stalePath := filepath.Join(stateDir, socketName)
	listener, err := net.ListenUnix("unix", &net.UnixAddr{Name: stalePath, Net: "unix"})
	if err != nil {
		t.Fatalf("listen on %s: %v", stalePath, err)
	}
	listener.SetUnlinkOnClose(false)
	listener.Close()

	p := startTest(t, Options{StateDir: stateDir})
	readResetCount(t, p.SocketPath())
}

func TestStartOutlivesContext(t *testing.T) {
	requireSwtpm(t)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Kill() })
	cancel()

	time.Sleep(50 * time.Millisecond)
	readResetCount(t, p.SocketPath())
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func TestPowerCycleNeedsStartup(t *testing.T) {
	requireSwtpm(t)
	p := startTest(t, Options{StateDir: t.TempDir()})
	before := readResetCount(t, p.SocketPath())

	if err := p.PowerCycle(); err != nil {
		t.Fatalf("PowerCycle: %v", err)
	}

	tpm, err := linuxudstpm.Open(p.SocketPath())
	if err != nil {
		t.Fatalf("open socket: %v", err)
	}
	defer tpm.Close()
	_, err = tpm2.GetRandom{BytesRequested: 8}.Execute(tpm)
	if !errors.Is(err, tpm2.TPMRCInitialize) {
		t.Fatalf("GetRandom after PowerCycle: error = %v, want TPM_RC_INITIALIZE", err)
	}
	if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(tpm); err != nil {
		t.Fatalf("TPM2_Startup(CLEAR) after PowerCycle: %v", err)
	}
	if after := readResetCount(t, p.SocketPath()); after != before+1 {
		t.Errorf("reset count after PowerCycle and Startup = %d, want %d", after, before+1)
	}
}

func TestStopFallsBackToSIGTERM(t *testing.T) {
	requireSwtpm(t)
	p := startTest(t, Options{StateDir: t.TempDir()})

	// Without its control socket file, Stop cannot send CMD_SHUTDOWN.
	if err := os.Remove(p.ctrlPath); err != nil {
		t.Fatalf("remove control socket: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !p.hasExited() {
		t.Error("process still running after Stop")
	}
	if _, err := os.Lstat(p.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s after Stop: Lstat error = %v, want not exist", p.SocketPath(), err)
	}
}
