// Package swtpmtest starts a real swtpm for tests in other packages.
//
// Tests skip when swtpm is missing on a developer's machine and fail when
// CI=true, so CI never passes by skipping.
package swtpmtest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/swtpm"
)

// Require skips or fails t when swtpm is not installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swtpm is required in CI: %v: install it with scripts/install-deps.sh", err)
		}
		t.Skipf("swtpm not installed (%v): install it with scripts/install-deps.sh", err)
	}
}

// Device is a simulated machine: a TPM state directory that survives
// restarts and the swtpm process running on it now.
type Device struct {
	t        testing.TB
	StateDir string
	Process  *swtpm.Process
}

// Start starts swtpm on a new state directory and kills it when the test ends.
func Start(t testing.TB) *Device {
	t.Helper()
	Require(t)
	d := &Device{t: t, StateDir: t.TempDir()}
	d.Boot()
	t.Cleanup(func() {
		if d.Process != nil {
			d.Process.Kill()
		}
	})
	return d
}

// Boot starts swtpm on the device's state directory, as powering it on does.
func (d *Device) Boot() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := swtpm.Start(ctx, swtpm.Options{StateDir: d.StateDir})
	if err != nil {
		d.t.Fatalf("start swtpm: %v", err)
	}
	d.Process = p
}

// SocketPath returns the path the TPM is served on.
func (d *Device) SocketPath() string { return d.Process.SocketPath() }

// Reboot stops swtpm cleanly and starts it again, which resets the PCRs.
// The caller closes its TPM connection first, so TPM2_Shutdown was sent.
func (d *Device) Reboot() {
	d.t.Helper()
	if err := d.Process.Stop(); err != nil {
		d.t.Fatalf("stop swtpm: %v", err)
	}
	d.Boot()
}
