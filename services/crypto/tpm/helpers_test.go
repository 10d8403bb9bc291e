package tpm

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/swtpm"
	"github.com/google/go-tpm/tpm2"
)

// requireSwtpm skips the test when swtpm is missing on a developer machine.
// In CI (CI=true) a missing swtpm fails the test, so CI never passes by
// skipping.
func requireSwtpm(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swtpm is required in CI: %v: apt-get install swtpm swtpm-tools", err)
		}
		t.Skipf("swtpm not installed: %v", err)
	}
}

// device is one simulated machine: a state directory that survives
// restarts and the swtpm process currently running on it.
type device struct {
	t        testing.TB
	stateDir string
	process  *swtpm.Process
}

// newDevice starts swtpm on a new state directory and stops it when the
// test ends.
func newDevice(t testing.TB) *device {
	t.Helper()
	requireSwtpm(t)
	d := &device{t: t, stateDir: t.TempDir()}
	d.start()
	t.Cleanup(func() {
		if err := d.process.Kill(); err != nil {
			t.Errorf("kill swtpm: %v", err)
		}
	})
	return d
}

func (d *device) start() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := swtpm.Start(ctx, swtpm.Options{StateDir: d.stateDir, Logger: testLogger(d.t)})
	if err != nil {
		d.t.Fatalf("start swtpm: %v", err)
	}
	d.process = p
}

// open opens the TPM and closes it when the test ends, unless the test
// closed it before.
func (d *device) open() *TPM {
	d.t.Helper()
	tpm, err := Open(d.process.SocketPath())
	if err != nil {
		d.t.Fatalf("Open: %v", err)
	}
	d.t.Cleanup(func() { tpm.Close() })
	return tpm
}

// reboot is a clean restart: TPM2_Shutdown(STATE), process stop, start.
func (d *device) reboot(tpm *TPM) *TPM {
	d.t.Helper()
	if err := tpm.Close(); err != nil {
		d.t.Fatalf("Close: %v", err)
	}
	if err := d.process.Stop(); err != nil {
		d.t.Fatalf("stop swtpm: %v", err)
	}
	d.start()
	return d.open()
}

// powerCut is an unclean restart: swtpm dies without TPM2_Shutdown.
func (d *device) powerCut(tpm *TPM) *TPM {
	d.t.Helper()
	if err := d.process.Kill(); err != nil {
		d.t.Fatalf("kill swtpm: %v", err)
	}
	// Close cannot reach the dead TPM but still closes the transport.
	if err := tpm.Close(); err == nil {
		d.t.Errorf("Close after the TPM died returned nil, want the TPM2_Shutdown error")
	}
	d.start()
	return d.open()
}

// openHandles lists the transient objects and sessions the TPM holds.
func openHandles(t testing.TB, tpm *TPM) []tpm2.TPMHandle {
	t.Helper()
	tpm.mu.Lock()
	defer tpm.mu.Unlock()

	var all []tpm2.TPMHandle
	for _, handleType := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		rsp, err := (tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      uint32(handleType) << 24,
			PropertyCount: 64,
		}).Execute(tpm.transport)
		if err != nil {
			t.Fatalf("GetCapability handles of type %#x: %v", handleType, err)
		}
		handles, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			t.Fatalf("GetCapability handles of type %#x: %v", handleType, err)
		}
		all = append(all, handles.Handle...)
	}
	return all
}

// readProperty returns a TPM_CAP_TPM_PROPERTIES value.
func readProperty(t testing.TB, tpm *TPM, property tpm2.TPMPT) uint32 {
	t.Helper()
	tpm.mu.Lock()
	defer tpm.mu.Unlock()
	value, err := tpm.readProperty(property)
	if err != nil {
		t.Fatalf("read property %v: %v", property, err)
	}
	return value
}

// testLogger sends log records to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
