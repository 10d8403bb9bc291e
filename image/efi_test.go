package image

import (
	"crypto/sha256"
	"debug/pe"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"

	// efiReadyTimeout covers OVMF, the stub and the kernel under TCG.
	efiReadyTimeout = 150 * time.Second
	swtpmStartWait  = 5 * time.Second
)

// pcrValue matches a SHA-256 PCR value as the kernel prints it in
// /sys/class/tpm/tpm0/pcr-sha256/N: 64 upper-case hex digits.
var pcrValue = regexp.MustCompile(`\b[0-9A-F]{64}\b`)

// stubMeasuredSections are the UKI sections systemd-stub 252 measures into
// PCR 11, in the order it measures them (the UnifiedSection enumeration in
// systemd 252's src/fundamental/tpm-pe.h). It skips missing sections and
// .pcrsig, and does not know .uname.
var stubMeasuredSections = []string{".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"}

// expectedPCR11 computes PCR 11 after systemd-stub 252 has measured the
// UKI: starting from zeros, for each measured section it extends the
// SHA-256 of the section name with its terminating NUL and then the
// SHA-256 of the section's VirtualSize bytes.
func expectedPCR11(t *testing.T, ukiPath string) string {
	t.Helper()
	f, err := pe.Open(ukiPath)
	if err != nil {
		t.Fatalf("open UKI: %v", err)
	}
	defer f.Close()
	pcr := make([]byte, sha256.Size)
	extend := func(data []byte) {
		digest := sha256.Sum256(data)
		next := sha256.Sum256(append(pcr, digest[:]...))
		pcr = next[:]
	}
	for _, name := range stubMeasuredSections {
		s := f.Section(name)
		if s == nil {
			continue
		}
		data, err := s.Data()
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		extend(append([]byte(name), 0))
		extend(data[:s.VirtualSize])
	}
	return strings.ToUpper(hex.EncodeToString(pcr))
}

// requireOVMF skips the test when Debian's ovmf package is missing, and
// fails under CI=true.
func requireOVMF(t *testing.T) {
	t.Helper()
	for _, path := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(path); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("OVMF firmware (Debian package ovmf): %v", err)
			}
			t.Skipf("OVMF firmware (Debian package ovmf): %v", err)
		}
	}
}

// startSWTPM starts a TPM 2.0 emulator whose control socket QEMU connects
// to, and stops it when the test ends.
func startSWTPM(t *testing.T, dir string) string {
	t.Helper()
	state := filepath.Join(dir, "tpm")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "swtpm.sock")
	swtpm := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+state,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+filepath.Join(dir, "swtpm.log"))
	if err := swtpm.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- swtpm.Wait() }()
	t.Cleanup(func() {
		swtpm.Process.Kill()
		<-exited
	})

	deadline := time.Now().Add(swtpmStartWait)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "swtpm.log"))
			t.Fatalf("swtpm exited: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("swtpm did not create %s within %s", sock, swtpmStartWait)
	return ""
}

func TestEFIBootMeasuresUKI(t *testing.T) {
	requireImageTest(t, "apt-get", "dpkg-deb", "depmod", "qemu-system-x86_64", "swtpm",
		"mkfs.fat", "mmd", "mcopy", "mkfs.ext4")
	requireOVMF(t)
	debianStub(t)

	art := buildImage(t)
	// A fresh out/disk.img, so the data partition is empty as on a new
	// device. This erases the data partition that make run-efi kept there.
	efiStart := time.Now()
	efi, err := BuildEFI(art, EFIOptions{OutDir: "../out", ConfigDir: "../kernel-config", FreshDisk: true, Log: testWriter{t}})
	if err != nil {
		t.Fatalf("build UKI and disk image: %v", err)
	}
	t.Logf("UKI and disk image built in %s", time.Since(efiStart).Round(time.Millisecond))
	ukiInfo, err := os.Stat(efi.UKI)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("UKI %s: %d bytes", efi.UKI, ukiInfo.Size())
	if ukiInfo.Size() > MaxUKISize {
		t.Errorf("UKI is %d bytes, more than %d", ukiInfo.Size(), MaxUKISize)
	}

	// Firmware variables and TPM state of a factory-new device.
	dir := t.TempDir()
	vars := filepath.Join(dir, "efi-vars.fd")
	if err := copyFile(ovmfVars, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := startSWTPM(t, dir)

	// TCG only: the test must behave the same on hosts without KVM.
	// restrict=on keeps the guest's user-mode network from reaching the
	// host or any other address.
	qemu := exec.Command("qemu-system-x86_64",
		"-accel", "tcg", "-machine", "q35", "-m", "1024",
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-serial", "stdio", "-no-reboot",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-chardev", "socket,id=chrtpm,path="+sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-tis,tpmdev=tpm0",
		// snapshot=on sends the guest's writes to a temporary overlay, so
		// out/disk.img stays as built.
		"-drive", "if=none,id=disk0,format=raw,snapshot=on,file="+efi.Disk,
		"-device", "virtio-blk-pci,drive=disk0",
		"-device", "virtio-rng-pci",
		"-nic", "user,model=virtio-net-pci,restrict=on",
	)
	console := &consoleLog{}
	qemu.Stdout = console
	qemu.Stderr = console
	stdin, err := qemu.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	qemuStart := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		qemu.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			qemu.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("serial console:\n%s", console.text(0))
		}
	})

	if !console.waitFor(efiReadyTimeout, readyLine.MatchString) {
		t.Fatalf("no ready line on the console within %s", efiReadyTimeout)
	}
	m := readyLine.FindStringSubmatch(console.text(0))
	t.Logf("qemu start to ready under OVMF: %s (pid1 start to ready: %s ms, TCG)", time.Since(qemuStart).Round(time.Millisecond), m[1])

	if !console.waitFor(commandTimeout, func(s string) bool { return strings.Contains(s, "toggle key help") }) {
		t.Fatalf("no gosh prompt on the console within %s", commandTimeout)
	}
	time.Sleep(promptSettle)

	// The kernel must have found the disk's partitions.
	runConsoleCommand(t, console, stdin, "cat /proc/partitions", "vda2")

	pcrs := map[int]string{}
	for _, index := range []int{4, 7, 11} {
		pcrs[index] = readPCR(t, console, stdin, index)
		t.Logf("PCR %d (sha256): %s", index, pcrs[index])
	}
	zero := strings.Repeat("0", 64)
	// OVMF measures each boot application (the UKI) into PCR 4 and the
	// Secure Boot state into PCR 7, so neither stays zero.
	for _, index := range []int{4, 7} {
		if pcrs[index] == zero {
			t.Errorf("PCR %d is all zeros: the firmware measured nothing", index)
		}
	}
	if pcrs[11] == zero {
		t.Errorf("PCR 11 is all zeros: the stub measured no UKI section")
	}
	if want := expectedPCR11(t, efi.UKI); pcrs[11] != want {
		t.Errorf("PCR 11 is %s, expected %s from the UKI's sections", pcrs[11], want)
	}

	io.WriteString(stdin, "poweroff\r")
	select {
	case <-exited:
		t.Logf("guest powered off")
	case <-time.After(poweroffWait):
		t.Errorf("guest did not power off within %s", poweroffWait)
	}
}

// readPCR prints a SHA-256 PCR through sysfs in the guest's shell and
// returns its value.
func readPCR(t *testing.T, console *consoleLog, stdin io.Writer, index int) string {
	t.Helper()
	offset := console.len()
	input := "cat /sys/class/tpm/tpm0/pcr-sha256/" + strconv.Itoa(index)
	if _, err := io.WriteString(stdin, input+"\r"); err != nil {
		t.Fatalf("type %q: %v", input, err)
	}
	deadline := time.Now().Add(commandTimeout)
	for time.Now().Before(deadline) {
		if value := pcrValue.FindString(console.text(offset)); value != "" {
			time.Sleep(promptSettle)
			return value
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%q: no PCR value in the output within %s", input, commandTimeout)
	return ""
}
