package image

import (
	"crypto/sha256"
	"debug/pe"
	"encoding/hex"
	"os"
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
)

// pcrValue matches a SHA-256 PCR value as the kernel prints it in
// /sys/class/tpm/tpm0/pcr-sha256/N: 64 upper-case hex digits.
var pcrValue = regexp.MustCompile(`\b[0-9A-F]{64}\b`)

// stubMeasuredSections are the UKI sections that systemd-stub 252 measures
// into PCR 11, in the order it measures them: the UnifiedSection
// enumeration in systemd 252's src/fundamental/tpm-pcr.h. The stub skips
// missing sections and .pcrsig. That enumeration has no .uname, so the
// stub does not measure it.
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
	sock := startSWTPM(t, filepath.Join(dir, "tpm"))

	// restrict=on keeps the guest's user-mode network from reaching the
	// host or any other address.
	v := startVM(t, sock,
		"-machine", "q35",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		// snapshot=on sends the guest's writes to a temporary overlay, so
		// out/disk.img stays as built.
		"-drive", "if=none,id=disk0,format=raw,snapshot=on,file="+efi.Disk,
		"-device", "virtio-blk-pci,drive=disk0",
		"-nic", "user,model=virtio-net-pci,restrict=on",
	)
	v.readyWait = efiReadyTimeout
	v.waitReady()

	// The kernel must have found the disk's partitions.
	v.run("cat /proc/partitions", "vda2")

	pcrs := map[int]string{}
	for _, index := range []int{4, 7, 11} {
		pcrs[index] = v.output("cat /sys/class/tpm/tpm0/pcr-sha256/"+strconv.Itoa(index), pcrValue)[0]
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

	v.typeLine("poweroff")
	select {
	case <-v.exited:
		t.Logf("guest powered off")
	case <-time.After(poweroffWait):
		t.Errorf("guest did not power off within %s", poweroffWait)
	}
}
