package image

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	defaultCmdline = "console=ttyS0 panic=-1 quiet"
	dataDiskSize   = 512 << 20

	swtpmStartWait = 5 * time.Second
	swtpmStopWait  = 5 * time.Second
)

var (
	buildOnce sync.Once
	built     Artifacts
	buildErr  error
)

// buildImage builds the image once per test binary, from the repository
// root, because the u-root builder compiles commands from the module in
// the working directory.
func buildImage(t testing.TB) Artifacts {
	t.Helper()
	buildOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			buildErr = err
			return
		}
		if err := os.Chdir(".."); err != nil {
			buildErr = err
			return
		}
		defer os.Chdir(wd)
		start := time.Now()
		built, buildErr = Build(Options{ConfigDir: "kernel-config", OutDir: "out", Log: testWriter{t}})
		if buildErr == nil {
			t.Logf("image built in %s", time.Since(start).Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatalf("build image: %v", buildErr)
	}
	return built
}

// appliance is one device: the directory that holds its software TPM's
// state and its data disk, which outlive each boot.
type appliance struct {
	dir  string
	disk string
}

func newAppliance(t testing.TB) *appliance {
	t.Helper()
	dir := t.TempDir()
	d := &appliance{dir: dir, disk: filepath.Join(dir, "data.img")}
	if err := CreateDataDisk(d.disk, dataDiskSize); err != nil {
		t.Fatalf("create data disk: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "tpm"), 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// vm is one boot of a device in QEMU under TCG with swtpm.
type vm struct {
	t         testing.TB
	console   *consoleLog
	stdin     io.WriteCloser
	exited    chan struct{}
	started   time.Time
	readyWait time.Duration // maximum time from QEMU's start to the ready line
	marks     int           // commands run by exec
	monitor   string        // QEMU monitor socket
}

// boot starts swtpm and QEMU for d with the kernel command line cmdline.
// extra adds QEMU arguments, such as a network card.
func (d *appliance) boot(t testing.TB, art Artifacts, cmdline string, extra ...string) *vm {
	t.Helper()
	sock := startSWTPM(t, filepath.Join(d.dir, "tpm"))
	return startVM(t, sock, append([]string{
		"-smp", "2",
		"-drive", "file=" + d.disk + ",format=raw,if=virtio",
		"-kernel", art.Kernel, "-initrd", art.Initramfs,
		"-append", cmdline,
	}, extra...)...)
}

// startSWTPM starts a TPM 2.0 emulator with its state and log in stateDir
// and returns the path of its control socket, which QEMU connects to.
// swtpm exits when QEMU closes the connection. When the test ends, after
// later cleanups such as startVM's have stopped QEMU, the cleanup waits up
// to swtpmStopWait for swtpm to exit and then kills it.
func startSWTPM(t testing.TB, stateDir string) string {
	t.Helper()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(stateDir, "swtpm.sock")
	os.Remove(sock) // left behind by an earlier boot of the same device
	logPath := filepath.Join(stateDir, "swtpm.log")
	swtpm := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+logPath,
		"--terminate")
	swtpm.Stdout, swtpm.Stderr = testWriter{t}, testWriter{t}
	if err := swtpm.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = swtpm.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		case <-time.After(swtpmStopWait):
			swtpm.Process.Kill()
			<-exited
		}
	})

	deadline := time.Now().Add(swtpmStartWait)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("swtpm exited before it created %s: %v\n%s", sock, waitErr, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("swtpm did not create %s within %s", sock, swtpmStartWait)
	return ""
}

// startVM starts QEMU with 1 GiB of memory, a TPM 2.0 on the swtpm control
// socket sock, a virtio RNG and the serial console on the returned vm's
// console and stdin. args add the machine type, firmware, disks and
// kernel. The test's cleanup kills QEMU if it is still running and logs the
// console output if the test failed.
func startVM(t testing.TB, sock string, args ...string) *vm {
	t.Helper()
	// The monitor socket must fit in 108 bytes, so it lives in a short
	// temporary directory rather than under t.TempDir().
	monitorDir, err := os.MkdirTemp("", "btvm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(monitorDir) })
	monitor := filepath.Join(monitorDir, "monitor.sock")

	// TCG only: the tests must behave the same on hosts without KVM.
	// -no-reboot makes QEMU exit when the guest reboots.
	qemu := exec.Command("qemu-system-x86_64", append([]string{
		"-accel", "tcg", "-m", "1024",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-monitor", "unix:" + monitor + ",server=on,wait=off",
		"-serial", "stdio", "-no-reboot",
		"-device", "virtio-rng-pci",
		"-chardev", "socket,id=chrtpm,path=" + sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-tis,tpmdev=tpm0",
	}, args...)...)

	v := &vm{t: t, console: &consoleLog{}, exited: make(chan struct{}), readyWait: readyTimeout, monitor: monitor}
	qemu.Stdout, qemu.Stderr = v.console, v.console
	if v.stdin, err = qemu.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	v.started = time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		qemu.Wait()
		close(v.exited)
	}()

	t.Cleanup(func() {
		select {
		case <-v.exited:
		default:
			qemu.Process.Kill()
			<-v.exited
		}
		if t.Failed() {
			t.Logf("serial console:\n%s", v.console.text(0))
		}
	})
	return v
}

// waitReady waits up to v.readyWait for the ready line, then for gosh's
// first prompt. It logs and returns the time from QEMU's start to the
// ready line and PID 1's own count from its start to ready.
func (v *vm) waitReady() (qemuToReady, pid1ToReady time.Duration) {
	v.t.Helper()
	if !v.console.waitFor(v.readyWait, readyLine.MatchString) {
		v.t.Fatalf("no ready line on the console within %s", v.readyWait)
	}
	qemuToReady = time.Since(v.started)
	m := readyLine.FindStringSubmatch(v.console.text(0))
	ms, err := strconv.Atoi(m[1])
	if err != nil {
		v.t.Fatalf("ready line: invalid millisecond count %q: %v", m[1], err)
	}
	pid1ToReady = time.Duration(ms) * time.Millisecond
	v.t.Logf("qemu start to ready: %s (pid1 start to ready: %s ms, TCG)", qemuToReady.Round(time.Millisecond), m[1])
	v.waitPrompt(readyLine.FindStringIndex(v.console.text(0))[1])
	return qemuToReady, pid1ToReady
}

// waitPrompt waits for gosh's prompt, "$ ", after offset.
func (v *vm) waitPrompt(offset int) {
	v.t.Helper()
	if !v.waitText(offset, commandTimeout, "$ ") {
		v.t.Fatalf("no gosh prompt on the console within %s", commandTimeout)
	}
	time.Sleep(promptSettle)
}

// waitText waits until the console output after offset contains want.
func (v *vm) waitText(offset int, timeout time.Duration, want string) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(v.console.text(offset), want) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// waitMatch waits until re matches the console output after offset and
// returns the submatches.
func (v *vm) waitMatch(offset int, timeout time.Duration, re *regexp.Regexp) []string {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(v.console.text(offset)); m != nil {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.t.Fatalf("console output does not match %q within %s", re, timeout)
	return nil
}

// run types a command and waits for want in the output that follows.
func (v *vm) run(input, want string) {
	v.t.Helper()
	runConsoleCommand(v.t, v.console, v.stdin, input, want)
}

// output types a command and returns the console output after it once re
// matches there.
func (v *vm) output(input string, re *regexp.Regexp) []string {
	v.t.Helper()
	offset := v.console.len()
	v.typeLine(input)
	m := v.waitMatch(offset, commandTimeout, re)
	time.Sleep(promptSettle)
	return m
}

// exec runs a shell command and waits until it has succeeded. The marker
// is typed with quotes inside it, so the echo of the typed line never
// matches it; only the command's output does.
func (v *vm) exec(command string) {
	v.t.Helper()
	v.marks++
	done := fmt.Sprintf("done-%d", v.marks)
	failed := fmt.Sprintf("failed-%d", v.marks)
	offset := v.console.len()
	v.typeLine(fmt.Sprintf(`%s && echo do""ne-%d || echo fai""led-%d`, command, v.marks, v.marks))
	deadline := time.Now().Add(commandTimeout)
	for time.Now().Before(deadline) {
		out := v.console.text(offset)
		if strings.Contains(out, failed) {
			v.t.Fatalf("%q failed:\n%s", command, out)
		}
		if strings.Contains(out, done) {
			time.Sleep(promptSettle)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.t.Fatalf("%q did not finish within %s", command, commandTimeout)
}

func (v *vm) typeLine(line string) {
	v.t.Helper()
	if _, err := io.WriteString(v.stdin, line+"\r"); err != nil {
		v.t.Fatalf("type %q: %v", line, err)
	}
}

// PID 1's last lines before reboot(2).
const (
	poweringOff = "blocktree-init: powering off"
	rebooting   = "blocktree-init: rebooting"
)

// poweroff types poweroff and waits for QEMU to exit after the clean
// shutdown.
func (v *vm) poweroff() {
	v.t.Helper()
	offset := v.console.len()
	v.typeLine("poweroff")
	v.waitExit(offset, poweringOff)
}

// reboot types reboot and waits for the clean shutdown; QEMU exits
// instead of restarting the guest because of -no-reboot.
func (v *vm) reboot() {
	v.t.Helper()
	offset := v.console.len()
	v.typeLine("reboot")
	v.waitExit(offset, rebooting)
}

// ctrlAltDel presses ctrl-alt-del on the guest's keyboard through the QEMU
// monitor and waits for the clean reboot.
func (v *vm) ctrlAltDel() {
	v.t.Helper()
	offset := v.console.len()
	conn, err := net.Dial("unix", v.monitor)
	if err != nil {
		v.t.Fatalf("connect to the QEMU monitor: %v", err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "sendkey ctrl-alt-delete\n"); err != nil {
		v.t.Fatalf("send ctrl-alt-delete through the QEMU monitor: %v", err)
	}
	v.waitExit(offset, rebooting)
}

// waitExit waits for QEMU to exit and checks that PID 1 printed last, the
// line of a clean power off or reboot, after offset.
func (v *vm) waitExit(offset int, last string) {
	v.t.Helper()
	select {
	case <-v.exited:
	case <-time.After(poweroffWait):
		v.t.Fatalf("guest did not shut down within %s", poweroffWait)
	}
	if !strings.Contains(v.console.text(offset), last) {
		v.t.Fatalf("QEMU exited without PID 1's clean shutdown line %q", last)
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatalf("sha256sum %s: %v", path, err)
	}
	return strings.Fields(string(out))[0]
}

func must(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
