//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	hwrng        = "/dev/hwrng"
	entropyBytes = 64
	hwrngWait    = 2 * time.Second

	// hwrngReadTimeout keeps a hardware RNG that delivers no data from
	// holding up the boot.
	hwrngReadTimeout = 5 * time.Second
)

// seedEntropy reads from the hardware RNG (virtio-rng under QEMU) and adds
// the bytes to the kernel's pool with credit, so that key generation on
// first boot does not wait for entropy.
func seedEntropy() error {
	if err := waitForFile(hwrng, hwrngWait); err != nil {
		logger.Info("no hardware RNG, so the kernel seeds its entropy pool itself (attach virtio-rng to seed it from the host)", "path", hwrng)
		return nil
	}
	f, err := os.Open(hwrng)
	if err != nil {
		return fmt.Errorf("open the hardware RNG: %w", err)
	}
	defer f.Close()

	// struct rand_pool_info from <linux/random.h>: entropy_count in bits and
	// buf_size in bytes, both int, then the bytes.
	buf := make([]byte, 8+entropyBytes)
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(f, buf[8:])
		read <- err
	}()
	select {
	case err := <-read:
		if err != nil {
			return fmt.Errorf("read %d bytes from %s: %w", entropyBytes, hwrng, err)
		}
	case <-time.After(hwrngReadTimeout):
		// The read goroutine stays blocked, but it only ever writes to buf,
		// which nothing reads after this return.
		return fmt.Errorf("read %d bytes from %s: timed out after %s: the kernel seeds its entropy pool itself", entropyBytes, hwrng, hwrngReadTimeout)
	}
	binary.NativeEndian.PutUint32(buf[0:4], entropyBytes*8)
	binary.NativeEndian.PutUint32(buf[4:8], entropyBytes)

	random, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom to add entropy: %w", err)
	}
	defer random.Close()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, random.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return fmt.Errorf("add entropy with ioctl RNDADDENTROPY: %w", errno)
	}
	logger.Info("entropy added to the kernel's pool", "bits", entropyBytes*8, "path", hwrng)
	return nil
}
