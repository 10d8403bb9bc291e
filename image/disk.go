package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Partition names, file system labels and the boot path on a Blocktree
// disk.
const (
	// DataPartitionName is the GPT partition name of the data partition.
	// PID 1 finds the partition by this name (PARTNAME in
	// /sys/class/block/*/uevent), so it must not change.
	DataPartitionName = "blocktree-data"
	// DataFSLabel is the ext4 label of the data partition.
	DataFSLabel = "btdata"
	// ESPPartitionName is the GPT partition name of the EFI System Partition.
	ESPPartitionName = "EFI system partition"
	// ESPFSLabel is the FAT volume label of the EFI System Partition.
	ESPFSLabel = "BTEFI"
	// ESPBootPath is the removable-media boot path on x86-64 UEFI, which
	// the firmware boots when no boot entry names another loader.
	ESPBootPath = "/EFI/BOOT/BOOTX64.EFI"
)

// Disk size defaults and limits.
const (
	DefaultESPSize  = 64 << 20
	DefaultDataSize = 1 << 30
	// minESPSize is the smallest FAT32 file system that mkfs.fat 4.2 makes
	// without a warning (65525 clusters of 512 bytes and the FATs), rounded
	// up to whole MiB.
	minESPSize = 33 << 20
	// MinDataSize is the smallest data partition btimage creates. ext4
	// itself fits in less, but 16 MiB leaves room for the journal and data.
	MinDataSize = 16 << 20
)

// BootDiskOptions are the UKI and partition sizes for CreateBootDisk and
// UpdateBootDisk.
type BootDiskOptions struct {
	UKI      string // unified kernel image, copied to ESPBootPath
	ESPSize  int64  // bytes, a multiple of 1 MiB; DefaultESPSize when zero
	DataSize int64  // bytes, a multiple of 1 MiB; DefaultDataSize when zero
}

// CreateBootDisk writes a sparse GPT disk image to path, replacing any
// file there: partition 1 is a FAT32 EFI System Partition with the UKI at
// /EFI/BOOT/BOOTX64.EFI, partition 2 the ext4 data partition named
// blocktree-data. It needs mkfs.fat, mmd and mcopy (dosfstools, mtools)
// and mkfs.ext4 (e2fsprogs), and no root rights or loop devices.
func CreateBootDisk(path string, opts BootDiskOptions) error {
	opts = opts.withDefaults()
	if opts.ESPSize < minESPSize || opts.ESPSize%PartitionAlignment != 0 {
		return fmt.Errorf("invalid ESP size %d: expected a multiple of 1 MiB of at least %d MiB", opts.ESPSize, minESPSize>>20)
	}
	if opts.DataSize < MinDataSize || opts.DataSize%PartitionAlignment != 0 {
		return fmt.Errorf("invalid data partition size %d: expected a multiple of 1 MiB of at least %d MiB", opts.DataSize, MinDataSize>>20)
	}
	espGUID, err := NewRandomGUID()
	if err != nil {
		return err
	}
	dataGUID, err := NewRandomGUID()
	if err != nil {
		return err
	}
	diskGUID, err := NewRandomGUID()
	if err != nil {
		return err
	}

	// The MiB before the first partition contains the MBR and the primary
	// GPT, and the MiB after the last one contains the backup GPT.
	espFirst := uint64(PartitionAlignment / SectorSize)
	espLast := espFirst + uint64(opts.ESPSize/SectorSize) - 1
	dataFirst := espLast + 1
	dataLast := dataFirst + uint64(opts.DataSize/SectorSize) - 1
	table := GPT{
		DiskSize: opts.ESPSize + opts.DataSize + 2*PartitionAlignment,
		DiskGUID: diskGUID,
		Partitions: []Partition{
			{Type: ESPType, GUID: espGUID, FirstLBA: espFirst, LastLBA: espLast, Name: ESPPartitionName},
			{Type: LinuxDataType, GUID: dataGUID, FirstLBA: dataFirst, LastLBA: dataLast, Name: DataPartitionName},
		},
	}

	work, err := os.MkdirTemp(filepath.Dir(path), ".disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	esp, err := makeESP(work, opts.ESPSize, opts.UKI)
	if err != nil {
		return err
	}
	data, err := makeExt4(work, opts.DataSize, DataFSLabel)
	if err != nil {
		return err
	}
	tmp := filepath.Join(work, "disk.img")
	if err := assembleDisk(tmp, table, []string{esp, data}); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// withDefaults returns opts with the default sizes in place of zeros.
func (opts BootDiskOptions) withDefaults() BootDiskOptions {
	if opts.ESPSize == 0 {
		opts.ESPSize = DefaultESPSize
	}
	if opts.DataSize == 0 {
		opts.DataSize = DefaultDataSize
	}
	return opts
}

// ErrBootLayout is wrapped by UpdateBootDisk's error when the disk is not
// a boot disk with the requested partition sizes.
var ErrBootLayout = errors.New("not a boot disk with the requested layout")

// UpdateBootDisk writes a new ESP with the UKI into the boot disk at path,
// which CreateBootDisk made, and keeps its GPT and data partition, as an
// OS update on a device would. It fails without writing if the disk's
// partitions differ from what CreateBootDisk makes with opts, or if a
// process such as QEMU holds a lock on the file.
//
// NOTE: the ESP is rewritten in place, so an interrupted update can leave
// an ESP that the firmware cannot boot. Running UpdateBootDisk again
// rewrites it, because the GPT is left unchanged.
func UpdateBootDisk(path string, opts BootDiskOptions) error {
	opts = opts.withDefaults()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockWhole(f); err != nil {
		return fmt.Errorf("%s is in use, probably by a running QEMU: stop it and retry: %w", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		return err
	}
	table, err := ReadGPT(f, info.Size())
	if err != nil {
		return fmt.Errorf("%s: %w: %w", path, ErrBootLayout, err)
	}
	if err := checkBootLayout(table, opts); err != nil {
		return fmt.Errorf("%s: %w: %w", path, ErrBootLayout, err)
	}

	work, err := os.MkdirTemp(filepath.Dir(path), ".disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	esp, err := makeESP(work, opts.ESPSize, opts.UKI)
	if err != nil {
		return err
	}
	part := table.Partitions[0]
	if err := zeroRange(f, part.Offset(), part.Size()); err != nil {
		return fmt.Errorf("clear the ESP of %s: %w", path, err)
	}
	if err := copySparse(f, part.Offset(), part.Size(), esp); err != nil {
		return fmt.Errorf("copy the ESP into %s: %w", path, err)
	}
	return f.Close()
}

// lockWhole takes an open file description (OFD) write lock on the whole
// file. QEMU holds OFD locks on bytes of the disk images it has open, so
// the lock fails while a VM runs from the file. The lock is released when f
// is closed.
func lockWhole(f *os.File) error {
	lock := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lock)
}

// checkBootLayout returns an error that describes how table differs from
// the two partitions CreateBootDisk makes with opts, or nil if it does not.
func checkBootLayout(table GPT, opts BootDiskOptions) error {
	if len(table.Partitions) != 2 {
		return fmt.Errorf("partition count %d, but a boot disk has 2 (ESP and %s)", len(table.Partitions), DataPartitionName)
	}
	esp, data := table.Partitions[0], table.Partitions[1]
	if esp.Type != ESPType || data.Type != LinuxDataType || data.Name != DataPartitionName {
		return fmt.Errorf("partitions are %s %q and %s %q, expected an ESP and %s %q",
			esp.Type, esp.Name, data.Type, data.Name, LinuxDataType, DataPartitionName)
	}
	if esp.Size() != opts.ESPSize || data.Size() != opts.DataSize {
		return fmt.Errorf("ESP is %d MiB and data partition %d MiB, but the requested sizes are %d MiB and %d MiB",
			esp.Size()>>20, data.Size()>>20, opts.ESPSize>>20, opts.DataSize>>20)
	}
	return nil
}

// zeroRange makes length bytes at offset read as zeros. It punches a hole
// where the file system supports that and writes zeros otherwise.
func zeroRange(f *os.File, offset, length int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, offset, length)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zero := make([]byte, 1<<20)
	for done := int64(0); done < length; {
		n := min(int64(len(zero)), length-done)
		if _, err := f.WriteAt(zero[:n], offset+done); err != nil {
			return err
		}
		done += n
	}
	return nil
}

// CreateDataDisk writes a sparse GPT disk image of size bytes to path with
// one ext4 partition, labelled btdata and named blocktree-data, that spans
// the disk from 1 MiB to the last whole MiB before the backup GPT. It
// fails if path exists, so it never overwrites a data disk.
func CreateDataDisk(path string, size int64) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("data disk %s already exists: delete it first to create a new one", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if size%SectorSize != 0 {
		return fmt.Errorf("data disk size %d is not a multiple of %d bytes", size, SectorSize)
	}
	if size < MinDataSize+2*PartitionAlignment {
		return fmt.Errorf("data disk size %d is below the minimum of %d MiB", size, (MinDataSize+2*PartitionAlignment)>>20)
	}
	partGUID, err := NewRandomGUID()
	if err != nil {
		return err
	}
	diskGUID, err := NewRandomGUID()
	if err != nil {
		return err
	}

	table := GPT{DiskSize: size, DiskGUID: diskGUID}
	align := uint64(PartitionAlignment / SectorSize)
	first := align
	last := (table.LastUsableLBA()+1)/align*align - 1
	table.Partitions = []Partition{
		{Type: LinuxDataType, GUID: partGUID, FirstLBA: first, LastLBA: last, Name: DataPartitionName},
	}

	work, err := os.MkdirTemp(filepath.Dir(path), ".data-disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	data, err := makeExt4(work, table.Partitions[0].Size(), DataFSLabel)
	if err != nil {
		return err
	}
	tmp := filepath.Join(work, "data.img")
	if err := assembleDisk(tmp, table, []string{data}); err != nil {
		return err
	}
	// A hard link fails if path was created in the meantime, whereas a
	// rename would replace it.
	if err := os.Link(tmp, path); errors.Is(err, os.ErrExist) {
		return fmt.Errorf("data disk %s already exists: delete it first to create a new one", path)
	} else if err != nil {
		return fmt.Errorf("create data disk %s: %w", path, err)
	}
	return nil
}

// assembleDisk creates a sparse file for table and copies each file in
// contents into the partition with the same index.
func assembleDisk(path string, table GPT, contents []string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(table.DiskSize); err != nil {
		return err
	}
	if err := table.Write(f); err != nil {
		return err
	}
	for i, src := range contents {
		p := table.Partitions[i]
		if err := copySparse(f, p.Offset(), p.Size(), src); err != nil {
			return fmt.Errorf("copy %s into partition %d: %w", filepath.Base(src), i+1, err)
		}
	}
	return f.Close()
}

// makeESP creates a FAT32 file system image of size bytes in dir with the
// UKI at ESPBootPath, and returns its path.
func makeESP(dir string, size int64, uki string) (string, error) {
	mkfs, err := lookTool("mkfs.fat", "dosfstools")
	if err != nil {
		return "", err
	}
	mmd, err := lookTool("mmd", "mtools")
	if err != nil {
		return "", err
	}
	mcopy, err := lookTool("mcopy", "mtools")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(uki); err != nil {
		return "", fmt.Errorf("UKI for the ESP is missing or unreadable: %w", err)
	}

	path := filepath.Join(dir, "esp.img")
	if err := createSparse(path, size); err != nil {
		return "", err
	}
	if err := runTool(mkfs, "-F", "32", "-n", ESPFSLabel, path); err != nil {
		return "", err
	}
	bootDir := filepath.ToSlash(filepath.Dir(ESPBootPath))
	if err := runTool(mmd, "-i", path, "::/EFI", "::"+bootDir); err != nil {
		return "", err
	}
	if err := runTool(mcopy, "-i", path, uki, "::"+ESPBootPath); err != nil {
		return "", err
	}
	return path, nil
}

// makeExt4 creates an ext4 file system image of size bytes in dir and
// returns its path. mkfs.ext4 discards (punches holes in) a regular file
// before it writes, so it can rely on the inode tables reading as zeros
// and skips writing them. The image stays sparse.
func makeExt4(dir string, size int64, label string) (string, error) {
	mkfs, err := lookTool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "ext4.img")
	if err := createSparse(path, size); err != nil {
		return "", err
	}
	if err := runTool(mkfs, "-F", "-q", "-L", label, path); err != nil {
		return "", err
	}
	return path, nil
}

func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copySparse copies the file src into dst at offset, writing only the
// blocks that contain non-zero bytes. dst must read as zeros there, as a
// freshly truncated file does. It fails if src is larger than limit bytes.
func copySparse(dst *os.File, offset, limit int64, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if info.Size() > limit {
		return fmt.Errorf("%s is %d bytes, larger than the %d-byte partition", src, info.Size(), limit)
	}

	const blockSize = 64 << 10
	buf := make([]byte, blockSize)
	zero := make([]byte, blockSize)
	pos := int64(0)
	for pos < info.Size() {
		// Jump over holes where the file system reports them. ENXIO
		// means there is no data after pos. File systems without
		// SEEK_DATA fail with EINVAL, and then every block is read.
		next, err := unix.Seek(int(in.Fd()), pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		} else if err == nil {
			pos = next
		} else if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("seek data in %s: %w", src, err)
		}
		n, err := in.ReadAt(buf, pos)
		if err != nil && err != io.EOF {
			return err
		}
		if n == 0 {
			break
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := dst.WriteAt(buf[:n], offset+pos); err != nil {
				return err
			}
		}
		pos += int64(n)
	}
	return nil
}

// lookTool finds a command in PATH or in /usr/sbin and /sbin, which a
// non-root PATH often lacks. The error names the Debian package.
func lookTool(name, debianPackage string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found: install Debian package %s (scripts/install-deps.sh)", name, debianPackage)
}

// runTool runs a command and, when it fails, returns an error that
// contains its output. MTOOLS_SKIP_CHECK stops mtools from rejecting the
// FAT geometry that mkfs.fat chose for an image file without a partition
// table.
func runTool(path string, args ...string) error {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s failed: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return nil
}
