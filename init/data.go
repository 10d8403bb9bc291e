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

	// dataWait is how long PID 1 waits for the data partition to appear
	// after the virtio block driver loaded.
	dataWait = 10 * time.Second
)

// sysClassBlock is where the kernel lists block devices; tests point it
// elsewhere.
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
			return "", fmt.Errorf("no partition named %q found within %s: attach the data disk (make run creates out/data.img) or write the disk image from make image", dataPartName, dataWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scanPartitions looks for the data partition in /sys/class/block.
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
// leaves the disk byte for byte as it was. (When ext4's own journal needs
// replaying after a power cut, the kernel replays it even for a read-only
// mount.)
func mountData(dev string) error {
	if err := os.MkdirAll(dataMount, 0o755); err != nil {
		return err
	}
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount(dev, dataMount, dataFSType, flags, ""); err != nil {
		return fmt.Errorf("mount data partition %s on %s as %s: %w (is it formatted? the image builder formats it)", dev, dataMount, dataFSType, err)
	}
	setUnlockedPartition(dev)
	return nil
}

func remountDataWritable(dev string) error {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount(dev, dataMount, dataFSType, flags, ""); err != nil {
		return fmt.Errorf("remount data partition %s read-write: %w", dev, err)
	}
	return nil
}

// unmountData syncs and unmounts the data partition; when something still
// holds it, it remounts it read-only instead so that nothing more is
// written.
func unmountData(dev string) error {
	unix.Sync()
	err := unix.Unmount(dataMount, 0)
	if err == nil || errors.Is(err, unix.EINVAL) {
		return nil
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_RDONLY)
	if rerr := unix.Mount(dev, dataMount, dataFSType, flags, ""); rerr != nil {
		return fmt.Errorf("unmount %s: %v; remount read-only: %w", dataMount, err, rerr)
	}
	return nil
}

var (
	partitionMu     sync.Mutex
	mountedDataPart string
)

func setUnlockedPartition(dev string) {
	partitionMu.Lock()
	mountedDataPart = dev
	partitionMu.Unlock()
}

// unlockedPartition returns the data partition's device once mounted.
func unlockedPartition() string {
	partitionMu.Lock()
	defer partitionMu.Unlock()
	return mountedDataPart
}
