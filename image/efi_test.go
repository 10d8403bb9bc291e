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

// unsealRejectedLine matches the first line PID 1 prints when the TPM
// rejects the sealed keys.
var unsealRejectedLine = regexp.MustCompile(`the TPM refused to unseal[^\n]*`)

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

// TestEFIBootMeasuresUKI boots a copy of the disk image under OVMF twice,
// as one device whose firmware variables and TPM state outlive each boot.
// The first boot must measure the UKI and seal new keys. The second must
// unseal them, with PCR 4 and 7 unchanged and no recovery key prompt, and
// read back a file that the first boot wrote.
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
	wantPCR11 := expectedPCR11(t, efi.UKI)

	// The device: its own copy of the disk image, so that out/disk.img
	// stays as built, and the firmware variables and TPM state of a
	// factory-new device. All three outlive each boot.
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	copyDiskImage(t, efi.Disk, disk)
	vars := filepath.Join(dir, "efi-vars.fd")
	if err := copyFile(ovmfVars, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	tpmDir := filepath.Join(dir, "tpm")
	boot := func(t *testing.T) *vm {
		t.Helper()
		sock := startSWTPM(t, tpmDir)
		// restrict=on keeps the guest's user-mode network from reaching
		// the host or any other address.
		v := startVM(t, sock,
			"-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars,
			"-drive", "if=none,id=disk0,format=raw,file="+disk,
			"-device", "virtio-blk-pci,drive=disk0",
			"-nic", "user,model=virtio-net-pci,restrict=on",
		)
		v.readyWait = efiReadyTimeout
		return v
	}

	var sealedPCRs map[int]string
	firstBoot := t.Run("first boot seals keys", func(t *testing.T) {
		v := boot(t)
		v.waitMatch(0, efiReadyTimeout, recoveryKeyLine)
		v.waitReady()

		// The kernel must have found the disk's partitions.
		v.run("cat /proc/partitions", "vda2")

		pcrs := readPCRs(v, 4, 7, 11)
		zero := strings.Repeat("0", 64)
		// OVMF measures each boot application (the UKI) into PCR 4 and
		// the Secure Boot state into PCR 7, so neither stays zero.
		for _, index := range []int{4, 7} {
			if pcrs[index] == zero {
				t.Errorf("PCR %d is all zeros: the firmware measured nothing", index)
			}
		}
		if pcrs[11] == zero {
			t.Errorf("PCR 11 is all zeros: the stub measured no UKI section")
		}
		if pcrs[11] != wantPCR11 {
			t.Errorf("PCR 11 is %s, expected %s from the UKI's sections", pcrs[11], wantPCR11)
		}
		sealedPCRs = pcrs

		v.exec("echo written on the first UEFI boot > /bt/efi.txt")
		v.exec("sync")
		v.poweroff()
		t.Logf("guest powered off")
	})
	if !firstBoot {
		t.Fatal("the first boot failed, so the second has no sealed keys to unseal")
	}

	t.Run("second boot unseals keys", func(t *testing.T) {
		v := boot(t)
		// A refused unseal stops at the recovery key prompt and never
		// prints the ready line, so wait for either.
		settled := v.console.waitFor(v.readyWait, func(text string) bool {
			return readyLine.MatchString(text) || strings.Contains(text, "recovery key: ")
		})
		if !settled {
			t.Fatalf("neither the ready line nor the recovery key prompt on the console within %s", v.readyWait)
		}
		console := v.console.text(0)
		if m := unsealRejectedLine.FindString(console); m != "" {
			t.Fatalf("the second boot did not unseal the keys sealed on the first: %s", m)
		}
		if strings.Contains(console, "Recovery key") {
			t.Fatal("the second boot created new keys and showed a recovery key again")
		}
		v.waitReady()
		if !strings.Contains(v.console.text(0), "keys unsealed") {
			t.Errorf("PID 1 did not log that the keys unsealed")
		}

		pcrs := readPCRs(v, 4, 7, 11)
		for _, index := range []int{4, 7, 11} {
			if pcrs[index] != sealedPCRs[index] {
				t.Errorf("PCR %d is %s on the second boot, %s on the first", index, pcrs[index], sealedPCRs[index])
			}
		}

		v.run("cat /bt/efi.txt", "written on the first UEFI boot")
		v.poweroff()
		t.Logf("guest powered off")
	})
}

// readPCRs reads the SHA-256 bank's value of each PCR in indexes in the
// guest and logs it.
func readPCRs(v *vm, indexes ...int) map[int]string {
	v.t.Helper()
	pcrs := map[int]string{}
	for _, index := range indexes {
		pcrs[index] = v.output("cat /sys/class/tpm/tpm0/pcr-sha256/"+strconv.Itoa(index), pcrValue)[0]
		v.t.Logf("PCR %d (sha256): %s", index, pcrs[index])
	}
	return pcrs
}

// copyDiskImage copies the disk image src to dst and keeps it sparse.
func copyDiskImage(t *testing.T, src, dst string) {
	t.Helper()
	info, err := os.Stat(src)
	must(t, err, "stat disk image")
	must(t, createSparse(dst, info.Size()), "create %s", dst)
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	must(t, err, "open %s", dst)
	defer f.Close()
	must(t, copySparse(f, 0, info.Size(), src), "copy %s to %s", src, dst)
	must(t, f.Close(), "close %s", dst)
}
