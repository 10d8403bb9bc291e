//go:build linux

package main

import (
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
)

// seedEntropy reads from the hardware RNG (virtio-rng under QEMU) and adds
// the bytes to the kernel's pool with credit, so that key generation on
// first boot does not wait for entropy.
func seedEntropy() error {
	if err := waitForFile(hwrng, hwrngWait); err != nil {
		logf("entropy: no %s (attach virtio-rng); the kernel seeds its pool itself", hwrng)
		return nil
	}
	f, err := os.Open(hwrng)
	if err != nil {
		return err
	}
	defer f.Close()
	// Header of struct rand_pool_info: entropy_count (bits), buf_size (bytes).
	buf := make([]byte, 8+entropyBytes)
	if _, err := io.ReadFull(f, buf[8:]); err != nil {
		return fmt.Errorf("read %s: %w", hwrng, err)
	}
	*(*int32)(unsafe.Pointer(&buf[0])) = entropyBytes * 8
	*(*int32)(unsafe.Pointer(&buf[4])) = entropyBytes
	random, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer random.Close()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, random.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return fmt.Errorf("add entropy: %w", errno)
	}
	logf("entropy: added %d bits from %s", entropyBytes*8, hwrng)
	return nil
}

