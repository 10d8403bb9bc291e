// Command btimage builds the Blocktree appliance image: OUT/vmlinuz from the
// Debian kernel package pinned in kernel-config/kernel.conf, and
// OUT/initramfs.cpio with Blocktree's /init, gosh, a few u-root commands and
// the kernel modules listed in kernel-config/modules.txt. From those it
// makes the unified kernel image OUT/blocktree.efi and the UEFI-bootable GPT
// disk image OUT/disk.img (docs/image.md). Run it from the repository root:
//
//	go run ./image/cmd/btimage --out out/
//
// It needs apt-get, dpkg-deb and depmod (Debian package kmod), and caches
// the kernel package in OUT/cache. The UKI and disk image also need
// systemd-boot-efi, dosfstools, mtools and e2fsprogs; --efi=false skips them.
//
// With --data-disk it only creates a standalone data disk, if the file does
// not exist yet:
//
//	go run ./image/cmd/btimage --data-disk out/data.img --data-size 2G
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/image"
)

func main() {
	out := flag.String("out", "out", "output directory for vmlinuz, initramfs.cpio, blocktree.efi, disk.img and the download cache")
	configDir := flag.String("config", "kernel-config", "directory with kernel.conf, options.config and modules.txt")
	kernelDir := flag.String("kernel-dir", "", "kernel tree from make kernel (scripts/build-kernel.sh) to use in place of the pinned Debian kernel package")
	efi := flag.Bool("efi", true, "also build the UKI OUT/blocktree.efi and the GPT disk image OUT/disk.img")
	stub := flag.String("stub", image.DefaultStub, "UEFI stub the UKI is built from (Debian package systemd-boot-efi)")
	cmdline := flag.String("cmdline", image.DefaultCmdline, "kernel command line in the UKI; the last console= is /dev/console")
	espSize := flag.String("esp-size", "64M", "size of the EFI System Partition in disk.img (K, M, G suffixes are powers of 1024)")
	diskDataSize := flag.String("disk-data-size", "1G", "size of the blocktree-data partition in disk.img")
	freshDisk := flag.Bool("fresh-disk", false, "replace an existing disk.img, erasing its data partition; without it only the ESP of an existing disk.img is rewritten")
	dataDisk := flag.String("data-disk", "", "create only a standalone data disk at this path if it does not exist, and build nothing else")
	dataSize := flag.String("data-size", "2G", "size of the --data-disk image")
	flag.Parse()

	if *dataDisk != "" {
		if err := ensureDataDisk(*dataDisk, *dataSize); err != nil {
			fmt.Fprintf(os.Stderr, "btimage: %v\n", err)
			os.Exit(1)
		}
		return
	}

	var esp, diskData int64
	if *efi {
		var err error
		if esp, err = parseSize(*espSize); err != nil {
			fmt.Fprintf(os.Stderr, "btimage: --esp-size: %v\n", err)
			os.Exit(2)
		}
		if diskData, err = parseSize(*diskDataSize); err != nil {
			fmt.Fprintf(os.Stderr, "btimage: --disk-data-size: %v\n", err)
			os.Exit(2)
		}
	}

	start := time.Now()
	art, err := image.Build(image.Options{ConfigDir: *configDir, OutDir: *out, KernelDir: *kernelDir, Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "btimage: %v\n", err)
		os.Exit(1)
	}
	paths := []string{art.Kernel, art.Initramfs}
	if *efi {
		efiArt, err := image.BuildEFI(art, image.EFIOptions{
			OutDir:    *out,
			ConfigDir: *configDir,
			Stub:      *stub,
			Cmdline:   *cmdline,
			ESPSize:   esp,
			DataSize:  diskData,
			FreshDisk: *freshDisk,
			Log:       os.Stderr,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "btimage: %v\n", err)
			os.Exit(1)
		}
		paths = append(paths, efiArt.UKI, efiArt.Disk)
	}

	fmt.Printf("btimage: done in %s\n", time.Since(start).Round(time.Millisecond))
	fmt.Printf("  %-40s %10s %10s\n", "file", "size", "allocated")
	for _, path := range paths {
		size, allocated, err := fileSizes(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "btimage: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("  %-40s %6.1f MiB %6.1f MiB\n", path, float64(size)/(1<<20), float64(allocated)/(1<<20))
	}
	fmt.Printf("  modules in initramfs: %d\n", art.Modules)
}

// ensureDataDisk creates a standalone data disk at path unless a file is
// already there, which it leaves alone.
func ensureDataDisk(path, sizeText string) error {
	if _, err := os.Lstat(path); err == nil {
		fmt.Printf("btimage: data disk %s exists, leaving it unchanged\n", path)
		return nil
	}
	size, err := parseSize(sizeText)
	if err != nil {
		return fmt.Errorf("--data-size: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := image.CreateDataDisk(path, size); err != nil {
		return err
	}
	apparent, allocated, err := fileSizes(path)
	if err != nil {
		return err
	}
	fmt.Printf("btimage: created data disk %s (%.1f MiB, %.1f MiB allocated)\n", path, float64(apparent)/(1<<20), float64(allocated)/(1<<20))
	return nil
}

// fileSizes returns a file's length and the bytes the file system has
// allocated for it, which is less for a sparse file.
func fileSizes(path string) (size, allocated int64, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	allocated = info.Size()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		// st_blocks counts 512-byte units whatever the block size.
		allocated = st.Blocks * 512
	}
	return info.Size(), allocated, nil
}

// parseSize parses a byte count with an optional binary suffix: K, M, G
// or T, optionally followed by "iB" (2G and 2GiB are both 2^31 bytes).
func parseSize(text string) (int64, error) {
	s := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(text), "iB"), "B")
	shift := 0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			shift = 10
		case 'M', 'm':
			shift = 20
		case 'G', 'g':
			shift = 30
		case 'T', 't':
			shift = 40
		}
		if shift > 0 {
			s = s[:n-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q: expected a positive number of bytes with an optional K, M, G or T suffix", text)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("invalid size %q: too large", text)
	}
	return n << shift, nil
}
