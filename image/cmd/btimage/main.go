// Command btimage builds the Blocktree appliance image: OUT/vmlinuz from the
// Debian kernel package pinned in kernel-config/kernel.conf, and
// OUT/initramfs.cpio with Blocktree's /init, gosh, a few u-root commands and
// the kernel modules listed in kernel-config/modules.txt. Run it from the
// repository root:
//
//	go run ./image/cmd/btimage --out out/
//
// It needs apt-get, dpkg-deb and depmod (Debian package kmod), and caches
// the kernel package in OUT/cache.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/blocktree/blocktree/image"
)

func main() {
	out := flag.String("out", "out", "output directory for vmlinuz, initramfs.cpio and the download cache")
	configDir := flag.String("config", "kernel-config", "directory with kernel.conf, options.config and modules.txt")
	flag.Parse()

	start := time.Now()
	art, err := image.Build(image.Options{ConfigDir: *configDir, OutDir: *out, Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "btimage: %v\n", err)
		os.Exit(1)
	}

	fmt.Printf("btimage: done in %s\n", time.Since(start).Round(time.Millisecond))
	for _, path := range []string{art.Kernel, art.Initramfs} {
		info, err := os.Stat(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "btimage: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("  %-40s %6.1f MiB\n", path, float64(info.Size())/(1<<20))
	}
	fmt.Printf("  modules in initramfs: %d\n", art.Modules)
}
