package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// EFIOptions are the settings of BuildEFI. Zero values select the
// defaults.
type EFIOptions struct {
	OutDir    string // receives blocktree.efi and disk.img
	ConfigDir string // directory with kernel.conf, for the .uname section
	Stub      string // DefaultStub when empty
	Cmdline   string // DefaultCmdline when empty
	OSRelease string // DefaultOSRelease when empty
	ESPSize   int64  // DefaultESPSize when zero
	DataSize  int64  // DefaultDataSize when zero
	// FreshDisk replaces an existing disk.img, erasing its data
	// partition. Without it BuildEFI only rewrites the ESP of an existing
	// disk.img.
	FreshDisk bool
	Log       io.Writer // receives one progress line per step; nil discards them
}

// EFIArtifacts are the absolute paths of the files BuildEFI writes.
type EFIArtifacts struct {
	UKI  string // OutDir/blocktree.efi
	Disk string // OutDir/disk.img
}

// BuildEFI turns the kernel and initramfs from Build into OutDir/blocktree.efi,
// a unified kernel image, and OutDir/disk.img, a GPT disk image that UEFI
// firmware boots: the UKI on the EFI System Partition and an empty ext4
// data partition. When disk.img exists and FreshDisk is false, it writes
// the new UKI into its ESP and keeps the data partition, so a rebuilt image
// boots on the same device state. It fails if that disk's partition sizes
// differ from the requested ones or if a running QEMU holds the disk.
func BuildEFI(art Artifacts, opts EFIOptions) (EFIArtifacts, error) {
	progress := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "btimage: "+format+"\n", args...)
		}
	}
	if opts.Cmdline == "" {
		opts.Cmdline = DefaultCmdline
	}
	if opts.OSRelease == "" {
		opts.OSRelease = DefaultOSRelease
	}
	var uname string
	if opts.ConfigDir != "" {
		pin, err := ReadKernelPin(opts.ConfigDir)
		if err != nil {
			return EFIArtifacts{}, err
		}
		uname = pin.Release
	}

	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return EFIArtifacts{}, err
	}
	out := EFIArtifacts{
		UKI:  filepath.Join(outDir, "blocktree.efi"),
		Disk: filepath.Join(outDir, "disk.img"),
	}
	start := time.Now()
	progress("assembling UKI %s (cmdline %q)", out.UKI, opts.Cmdline)
	size, err := WriteUKI(out.UKI, UKIOptions{
		Stub:      opts.Stub,
		Kernel:    art.Kernel,
		Initramfs: art.Initramfs,
		Cmdline:   opts.Cmdline,
		OSRelease: opts.OSRelease,
		Uname:     uname,
	})
	if err != nil {
		return EFIArtifacts{}, err
	}
	progress("UKI written in %s (%.1f MiB)", time.Since(start).Round(time.Millisecond), float64(size)/(1<<20))

	start = time.Now()
	diskOpts := BootDiskOptions{UKI: out.UKI, ESPSize: opts.ESPSize, DataSize: opts.DataSize}
	_, statErr := os.Stat(out.Disk)
	switch {
	case opts.FreshDisk || errors.Is(statErr, os.ErrNotExist):
		progress("creating disk image %s", out.Disk)
		if err := CreateBootDisk(out.Disk, diskOpts); err != nil {
			return EFIArtifacts{}, fmt.Errorf("create disk image %s: %w", out.Disk, err)
		}
	case statErr != nil:
		return EFIArtifacts{}, statErr
	default:
		progress("updating the ESP of %s, keeping its data partition", out.Disk)
		err := UpdateBootDisk(out.Disk, diskOpts)
		if errors.Is(err, ErrBootLayout) {
			return EFIArtifacts{}, fmt.Errorf("update disk image: %w (to replace it with a new disk image, which erases the data partition, run btimage --fresh-disk)", err)
		} else if err != nil {
			return EFIArtifacts{}, fmt.Errorf("update disk image: %w", err)
		}
	}
	progress("disk image written in %s", time.Since(start).Round(time.Millisecond))
	return out, nil
}
