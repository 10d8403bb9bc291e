//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// dataPartName is the GPT partition name of the data partition. The
	// image builder (image.CreateDataDisk and the disk image) writes it.
	dataPartName = "blocktree-data"
	dataMount    = "/data"
	dataFSType   = "ext4"

	// dataMountFlags apply to every mount and remount of the data
	// partition, because a remount resets the flags it does not repeat.
	dataMountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

	// dataWait is how long PID 1 waits for the data partition to appear
	// after the block drivers loaded.
	dataWait = 10 * time.Second
)

// sysClassBlock is the sysfs directory that lists block devices. Tests
// point it at a temporary directory.
var sysClassBlock = "/sys/class/block"

// findDataPartition returns the device node of the partition named
// dataPartName, waiting up to dataWait for the kernel to find it.
func findDataPartition() (string, error) {
	deadline := time.Now().Add(dataWait)
	for {
		dev, err := scanPartitions()
		if err != nil || dev != "" {
			return dev, err
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("data partition not found: no partition named %q appeared within %s: attach a data disk (make data-disk creates out/data.img) or boot out/disk.img, which contains one", dataPartName, dataWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scanPartitions returns the device node of the data partition listed in
// sysClassBlock, "" when there is none, and an error when there are two
// or more.
func scanPartitions() (string, error) {
	uevents, err := filepath.Glob(filepath.Join(sysClassBlock, "*", "uevent"))
	if err != nil {
		return "", err
	}
	var found []string
	for _, path := range uevents {
		fields, err := readUevent(path)
		if err != nil {
			continue
		}
		if fields["DEVTYPE"] == "partition" && fields["PARTNAME"] == dataPartName {
			found = append(found, "/dev/"+fields["DEVNAME"])
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d partitions are named %q (%s): attach only one data disk", len(found), dataPartName, strings.Join(found, ", "))
}

func readUevent(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fields := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			fields[k] = v
		}
	}
	return fields, s.Err()
}

// mountData mounts the data partition read-only. Nothing on the disk
// changes until remountDataWritable, so a boot whose keys do not unseal
// leaves the disk byte for byte as it was. The exception is ext4's own
// journal: after a power cut, the kernel replays it even for a read-only
// mount.
func mountData(dev string) error {
	if err := os.MkdirAll(dataMount, 0o755); err != nil {
		return fmt.Errorf("create the mount point %s: %w", dataMount, err)
	}
	flags := uintptr(unix.MS_RDONLY | dataMountFlags)
	if err := unix.Mount(dev, dataMount, dataFSType, flags, ""); err != nil {
		return fmt.Errorf("mount data partition %s on %s as %s: %w: check that it is formatted %s (btimage --data-disk creates a formatted data disk)", dev, dataMount, dataFSType, err, dataFSType)
	}
	setMountedDataPartition(dev)
	logger.Info("data partition mounted read-only", "path", dev)
	return nil
}

func remountDataWritable(dev string) error {
	flags := uintptr(unix.MS_REMOUNT | dataMountFlags)
	if err := unix.Mount(dev, dataMount, dataFSType, flags, ""); err != nil {
		return fmt.Errorf("remount data partition %s read-write: %w", dev, err)
	}
	return nil
}

// unmountData syncs and unmounts the data partition. When something still
// uses it, it remounts it read-only instead, so that nothing more is
// written.
func unmountData(dev string) error {
	unix.Sync()
	err := unix.Unmount(dataMount, 0)
	if err == nil || errors.Is(err, unix.EINVAL) {
		return nil
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_RDONLY | dataMountFlags)
	if remountErr := unix.Mount(dev, dataMount, dataFSType, flags, ""); remountErr != nil {
		return fmt.Errorf("unmount %s: %v, and the read-only remount failed too: %w", dataMount, err, remountErr)
	}
	logger.Warn("data partition still in use; remounted read-only instead of unmounting", "path", dev, "error", err)
	return nil
}

var (
	partitionMu     sync.Mutex
	mountedDataPart string // device node, "" until mountData succeeds
)

func setMountedDataPartition(dev string) {
	partitionMu.Lock()
	mountedDataPart = dev
	partitionMu.Unlock()
}

func mountedDataPartition() string {
	partitionMu.Lock()
	defer partitionMu.Unlock()
	return mountedDataPart
}
