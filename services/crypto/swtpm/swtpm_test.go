package swtpm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
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

// describeState returns the type, permissions, owner, contents and access
// and modification times of every entry in dir and of dir itself, by name.
// It reads with O_NOATIME, so that describing changes no access time.
func describeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	describe := func(path string) string {
		info, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		stat := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid %d gid %d atime %d mtime %d", info.Mode(), stat.Uid, stat.Gid, stat.Atim.Nano(), stat.Mtim.Nano())
		if info.Mode().IsRegular() {
			f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOATIME, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			data, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			desc += fmt.Sprintf(" sha256 %x", sha256.Sum256(data))
		}
		return desc
	}
	state := map[string]string{".": describe(dir)}
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_NOATIME, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		state[name] = describe(filepath.Join(dir, name))
	}
	return state
}

func TestRestoreStateUndoesRun(t *testing.T) {
	requireSwtpm(t)
	stateDir := t.TempDir()
	first := startTest(t, Options{StateDir: stateDir})
	firstCount := readResetCount(t, first.SocketPath())
	if err := first.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// Backdated times show whether Restore sets them: a run of swtpm moves
	// them to the present.
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, name := range []string{"tpm2-00.permall", lockFileName, "."} {
		if err := os.Chtimes(filepath.Join(stateDir, name), past, past); err != nil {
			t.Fatal(err)
		}
	}

	before := describeState(t, stateDir)
	snapshot, err := SnapshotState(stateDir)
	if err != nil {
		t.Fatalf("SnapshotState: %v", err)
	}
	second := startTest(t, Options{StateDir: stateDir})
	if got := readResetCount(t, second.SocketPath()); got != firstCount+1 {
		t.Errorf("reset count of the second run = %d, want %d", got, firstCount+1)
	}
	if err := second.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// A temporary file of a swtpm killed while it saved its state.
	if err := os.WriteFile(filepath.Join(stateDir, "TMP2-00.permall"), []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	changed := describeState(t, stateDir)
	if changed["tpm2-00.permall"] == before["tpm2-00.permall"] {
		t.Fatalf("tpm2-00.permall is unchanged after a run of swtpm (%s), so this test shows nothing", before["tpm2-00.permall"])
	}

	if err := snapshot.Restore(); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	after := describeState(t, stateDir)
	for name, desc := range before {
		if after[name] != desc {
			t.Errorf("%s after Restore: %s, want %s", name, after[name], desc)
		}
	}
	for name, desc := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s after Restore: %s, want no such entry", name, desc)
		}
	}

	third := startTest(t, Options{StateDir: stateDir})
	if got := readResetCount(t, third.SocketPath()); got != firstCount+1 {
		t.Errorf("reset count after Restore = %d, want %d, as if the second run never happened", got, firstCount+1)
	}
}

func TestSnapshotAndRestoreRejectRunningSwtpm(t *testing.T) {
	requireSwtpm(t)
	stateDir := t.TempDir()
	first := startTest(t, Options{StateDir: stateDir})
	if err := first.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	snapshot, err := SnapshotState(stateDir)
	if err != nil {
		t.Fatalf("SnapshotState: %v", err)
	}

	p := startTest(t, Options{StateDir: stateDir})
	readResetCount(t, p.SocketPath())
	running := describeState(t, stateDir)
	if _, err := SnapshotState(stateDir); err == nil || !strings.Contains(err.Error(), "running swtpm") {
		t.Errorf("SnapshotState while swtpm runs: error = %v, want one naming the running swtpm", err)
	}
	if err := snapshot.Restore(); err == nil || !strings.Contains(err.Error(), "running swtpm") {
		t.Errorf("Restore while swtpm runs: error = %v, want one naming the running swtpm", err)
	}
	if after := describeState(t, stateDir); after["tpm2-00.permall"] != running["tpm2-00.permall"] {
		t.Errorf("tpm2-00.permall after the rejected Restore: %s, want %s", after["tpm2-00.permall"], running["tpm2-00.permall"])
	}
}

// TestSurvivesStartingThreadEnding starts swtpm from a goroutine that
// returns while locked to its OS thread, so that the Go runtime ends that
// thread. swtpm's parent-death signal belongs to the thread that started
// it, so swtpm must have been started on a thread of its own.
func TestSurvivesStartingThreadEnding(t *testing.T) {
	requireSwtpm(t)
	type result struct {
		p   *Process
		err error
	}
	// The runtime ends a thread that a goroutine leaves locked, except the
	// process's main thread, so the start runs on a goroutine that got
	// another thread.
	var r result
	for {
		started := make(chan *result, 1)
		go func() {
			runtime.LockOSThread() // never unlocked, so the thread ends with this goroutine
			if syscall.Gettid() == os.Getpid() {
				runtime.UnlockOSThread()
				started <- nil
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p, err := Start(ctx, Options{StateDir: t.TempDir()})
			started <- &result{p, err}
		}()
		if got := <-started; got != nil {
			r = *got
			break
		}
	}
	if r.err != nil {
		t.Fatalf("Start: %v", r.err)
	}
	t.Cleanup(func() { r.p.Kill() })

	// Give a killed swtpm time to be reaped.
	time.Sleep(200 * time.Millisecond)
	select {
	case <-r.p.exited:
		t.Fatalf("swtpm exited when the thread of the goroutine that started it ended: %v", r.p.waitErr)
	default:
	}
	readResetCount(t, r.p.SocketPath())
}
