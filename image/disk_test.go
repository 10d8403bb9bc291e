package image

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func requireDiskTools(t *testing.T) {
	t.Helper()
	requireTool(t, "mkfs.fat", "dosfstools")
	requireTool(t, "mmd", "mtools")
	requireTool(t, "mcopy", "mtools")
	requireTool(t, "mkfs.ext4", "e2fsprogs")
}

// allocatedBytes returns the number of bytes the file system allocated for
// path.
func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Blocks * 512
}

// checkExt4 reads the ext4 superblock of the partition and checks its
// magic number, its label and that the file system fills the partition.
func checkExt4(t *testing.T, disk *os.File, p Partition, label string) {
	t.Helper()
	sb := make([]byte, 1024)
	if _, err := disk.ReadAt(sb, p.Offset()+1024); err != nil {
		t.Fatal(err)
	}
	if magic := binary.LittleEndian.Uint16(sb[0x38:]); magic != 0xef53 {
		t.Fatalf("partition %q: superblock magic %#x, expected ext4's 0xef53", p.Name, magic)
	}
	if got := string(bytes.TrimRight(sb[0x78:0x88], "\x00")); got != label {
		t.Errorf("partition %q: ext4 label %q, expected %q", p.Name, got, label)
	}
	blocks := int64(binary.LittleEndian.Uint32(sb[0x04:])) | int64(binary.LittleEndian.Uint32(sb[0x150:]))<<32
	blockSize := int64(1024) << binary.LittleEndian.Uint32(sb[0x18:])
	if blocks*blockSize != p.Size() {
		t.Errorf("partition %q: file system is %d bytes, partition %d", p.Name, blocks*blockSize, p.Size())
	}
}

// openDisk opens a disk image for reading until the test ends and returns
// it with its GPT.
func openDisk(t *testing.T, path string) (*os.File, GPT) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	table, err := ReadGPT(f, info.Size())
	if err != nil {
		t.Fatalf("ReadGPT %s: %v", path, err)
	}
	return f, table
}

// espFile extracts a file from the ESP of a disk image with mcopy.
func espFile(t *testing.T, disk string, esp Partition, name string) []byte {
	t.Helper()
	mcopy := requireTool(t, "mcopy", "mtools")
	dst := filepath.Join(t.TempDir(), "extracted")
	image := disk + "@@" + strconv.FormatInt(esp.Offset(), 10)
	cmd := exec.Command(mcopy, "-i", image, "::"+name, dst)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy %s from the ESP: %v\n%s", name, err, out)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fakeUKI writes size random bytes to a file in dir and returns its path
// and contents. The disk functions copy a UKI without parsing it.
func fakeUKI(t *testing.T, dir string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "uki-"+strconv.Itoa(size)+".efi")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestCreateDataDisk(t *testing.T) {
	requireDiskTools(t)
	path := filepath.Join(t.TempDir(), "data.img")
	const size = 256 << 20
	if err := CreateDataDisk(path, size); err != nil {
		t.Fatalf("CreateDataDisk: %v", err)
	}

	disk, table := openDisk(t, path)
	if table.DiskSize != size {
		t.Errorf("disk is %d bytes, expected %d", table.DiskSize, size)
	}
	if len(table.Partitions) != 1 {
		t.Fatalf("%d partitions, expected 1", len(table.Partitions))
	}
	p := table.Partitions[0]
	if p.Name != DataPartitionName || p.Type != LinuxDataType {
		t.Errorf("partition %q of type %s, expected %q of type %s", p.Name, p.Type, DataPartitionName, LinuxDataType)
	}
	if p.Offset() != PartitionAlignment || (p.Offset()+p.Size())%PartitionAlignment != 0 {
		t.Errorf("partition spans bytes %d-%d, expected both ends aligned to 1 MiB", p.Offset(), p.Offset()+p.Size())
	}
	if want := int64(size - 2*PartitionAlignment); p.Size() != want {
		t.Errorf("partition is %d bytes, expected %d", p.Size(), want)
	}
	checkExt4(t, disk, p, DataFSLabel)
	if alloc := allocatedBytes(t, path); alloc > size/8 {
		t.Errorf("data disk allocates %d of %d bytes, expected a sparse file", alloc, size)
	}
	sgdiskVerify(t, path)
}

func TestCreateDataDiskRejectsExisting(t *testing.T) {
	requireDiskTools(t)
	path := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := CreateDataDisk(path, 64<<20)
	if err == nil {
		t.Fatal("CreateDataDisk over an existing file succeeded")
	}
	if !strings.Contains(err.Error(), "already exists") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: expected one line saying the file exists", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "keep me" {
		t.Errorf("existing file changed to %q", data)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory contains %d entries after the rejection, expected only the existing file", len(entries))
	}
}

func TestCreateDataDiskRejectsSize(t *testing.T) {
	requireDiskTools(t)
	dir := t.TempDir()
	for _, size := range []int64{1 << 20, 64<<20 + 1} {
		if err := CreateDataDisk(filepath.Join(dir, "data.img"), size); err == nil {
			t.Errorf("CreateDataDisk with size %d succeeded", size)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("rejected sizes left %d files behind", len(entries))
	}
}

func TestCreateBootDisk(t *testing.T) {
	requireDiskTools(t)
	dir := t.TempDir()
	uki, ukiData := fakeUKI(t, dir, 3<<20+5)
	path := filepath.Join(dir, "disk.img")
	opts := BootDiskOptions{UKI: uki, ESPSize: 40 << 20, DataSize: 128 << 20}
	if err := CreateBootDisk(path, opts); err != nil {
		t.Fatalf("CreateBootDisk: %v", err)
	}

	disk, table := openDisk(t, path)
	if want := opts.ESPSize + opts.DataSize + 2*PartitionAlignment; table.DiskSize != want {
		t.Errorf("disk is %d bytes, expected %d", table.DiskSize, want)
	}
	if len(table.Partitions) != 2 {
		t.Fatalf("%d partitions, expected 2", len(table.Partitions))
	}
	esp, data := table.Partitions[0], table.Partitions[1]
	if esp.Type != ESPType || esp.Offset() != PartitionAlignment || esp.Size() != opts.ESPSize {
		t.Errorf("partition 1: %+v, expected an ESP of %d bytes at 1 MiB", esp, opts.ESPSize)
	}
	if data.Type != LinuxDataType || data.Name != DataPartitionName || data.Size() != opts.DataSize {
		t.Errorf("partition 2: %+v, expected %q of %d bytes", data, DataPartitionName, opts.DataSize)
	}

	boot := make([]byte, 512)
	if _, err := disk.ReadAt(boot, esp.Offset()); err != nil {
		t.Fatal(err)
	}
	if fsType := string(boot[82:90]); fsType != "FAT32   " {
		t.Errorf("ESP boot sector names file system type %q, expected FAT32", fsType)
	}
	if label := strings.TrimRight(string(boot[71:82]), " "); label != ESPFSLabel {
		t.Errorf("ESP volume label %q, expected %q", label, ESPFSLabel)
	}
	if got := espFile(t, path, esp, ESPBootPath); !bytes.Equal(got, ukiData) {
		t.Errorf("%s on the ESP (%d bytes) differs from the UKI (%d bytes)", ESPBootPath, len(got), len(ukiData))
	}
	checkExt4(t, disk, data, DataFSLabel)

	if alloc := allocatedBytes(t, path); alloc > int64(len(ukiData))+16<<20 {
		t.Errorf("disk allocates %d bytes for a %d-byte UKI, expected a sparse file", alloc, len(ukiData))
	}
	sgdiskVerify(t, path)
}

func TestUpdateBootDiskKeepsData(t *testing.T) {
	requireDiskTools(t)
	dir := t.TempDir()
	// The old UKI's FAT entries reach past the first 64 KiB of the FAT,
	// where the new ESP has only zeros, so an update that does not clear
	// the old ESP leaves lost clusters that fsck.fat reports.
	oldUKI, _ := fakeUKI(t, dir, 20<<20)
	newUKI, newData := fakeUKI(t, dir, 1<<20+3)
	path := filepath.Join(dir, "disk.img")
	opts := BootDiskOptions{UKI: oldUKI, ESPSize: 40 << 20, DataSize: 64 << 20}
	if err := CreateBootDisk(path, opts); err != nil {
		t.Fatalf("CreateBootDisk: %v", err)
	}
	_, before := openDisk(t, path)

	// A marker in the data partition represents the device's data.
	marker := []byte("device data that an update must keep")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	markerAt := before.Partitions[1].Offset() + 40<<20
	if _, err := f.WriteAt(marker, markerAt); err != nil {
		t.Fatal(err)
	}
	f.Close()

	opts.UKI = newUKI
	if err := UpdateBootDisk(path, opts); err != nil {
		t.Fatalf("UpdateBootDisk: %v", err)
	}
	disk, after := openDisk(t, path)
	if after.DiskGUID != before.DiskGUID || !slices.Equal(after.Partitions, before.Partitions) {
		t.Errorf("GPT changed: %+v, was %+v", after, before)
	}
	got := make([]byte, len(marker))
	if _, err := disk.ReadAt(got, markerAt); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, marker) {
		t.Errorf("data partition marker is %q after the update", got)
	}
	if uki := espFile(t, path, after.Partitions[0], ESPBootPath); !bytes.Equal(uki, newData) {
		t.Errorf("ESP contains a %d-byte UKI after the update, expected the new %d-byte one", len(uki), len(newData))
	}

	fsck := requireTool(t, "fsck.fat", "dosfstools")
	espImage := filepath.Join(dir, "esp-check.img")
	esp := after.Partitions[0]
	buf := make([]byte, esp.Size())
	if _, err := disk.ReadAt(buf, esp.Offset()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(espImage, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(fsck, "-n", espImage).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n on the updated ESP: %v\n%s", err, out)
	}
}

func TestUpdateBootDiskRejectsOtherLayout(t *testing.T) {
	requireDiskTools(t)
	dir := t.TempDir()
	uki, _ := fakeUKI(t, dir, 1<<20)
	path := filepath.Join(dir, "disk.img")
	if err := CreateBootDisk(path, BootDiskOptions{UKI: uki, ESPSize: 40 << 20, DataSize: 64 << 20}); err != nil {
		t.Fatalf("CreateBootDisk: %v", err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	err = UpdateBootDisk(path, BootDiskOptions{UKI: uki, ESPSize: 40 << 20, DataSize: 128 << 20})
	if !errors.Is(err, ErrBootLayout) || !strings.Contains(err.Error(), "requested sizes") {
		t.Fatalf("UpdateBootDisk with another data size: error %v, expected ErrBootLayout about the sizes", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("rejected update changed the disk")
	}

	dataDisk := filepath.Join(dir, "data.img")
	if err := CreateDataDisk(dataDisk, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := UpdateBootDisk(dataDisk, BootDiskOptions{UKI: uki}); !errors.Is(err, ErrBootLayout) || !strings.Contains(err.Error(), "partition count 1") {
		t.Fatalf("UpdateBootDisk on a data disk: error %v, expected ErrBootLayout about the partition count", err)
	}
}

func TestUpdateBootDiskRejectsLockedDisk(t *testing.T) {
	requireDiskTools(t)
	dir := t.TempDir()
	uki, _ := fakeUKI(t, dir, 1<<20)
	path := filepath.Join(dir, "disk.img")
	opts := BootDiskOptions{UKI: uki, ESPSize: 40 << 20, DataSize: 64 << 20}
	if err := CreateBootDisk(path, opts); err != nil {
		t.Fatalf("CreateBootDisk: %v", err)
	}
	// A shared lock on byte 100, as QEMU takes on a raw image it runs.
	holder, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	lock := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 100, Len: 1}
	if err := unix.FcntlFlock(holder.Fd(), unix.F_OFD_SETLK, &lock); err != nil {
		t.Fatal(err)
	}
	err = UpdateBootDisk(path, opts)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("UpdateBootDisk on a locked disk: error %v, expected one saying it is in use", err)
	}
	holder.Close()
	if err := UpdateBootDisk(path, opts); err != nil {
		t.Fatalf("UpdateBootDisk after the lock was released: %v", err)
	}
}

func TestCreateBootDiskRejectsSizes(t *testing.T) {
	requireDiskTools(t)
	dir := t.TempDir()
	uki, _ := fakeUKI(t, dir, 1<<20)
	cases := []BootDiskOptions{
		{UKI: uki, ESPSize: 16 << 20},
		{UKI: uki, ESPSize: 64<<20 + 512},
		{UKI: uki, DataSize: 1 << 20},
	}
	for _, opts := range cases {
		if err := CreateBootDisk(filepath.Join(dir, "disk.img"), opts); err == nil {
			t.Errorf("CreateBootDisk with ESP %d and data %d bytes succeeded", opts.ESPSize, opts.DataSize)
		}
	}
}

func TestCopySparseSkipsZeroBlocks(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("start"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("end"), 8<<20-3); err != nil {
		t.Fatal(err)
	}
	// A block of written zeros is data to SEEK_DATA but must not be copied.
	if _, err := f.WriteAt(make([]byte, 1<<20), 2<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()

	dstPath := filepath.Join(dir, "dst")
	dst, err := os.Create(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	if err := copySparse(dst, 4<<20, 8<<20, src); err != nil {
		t.Fatalf("copySparse: %v", err)
	}
	got := make([]byte, 16<<20)
	if _, err := dst.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 16<<20)
	copy(want[4<<20:], "start")
	copy(want[12<<20-3:], "end")
	if !bytes.Equal(got, want) {
		t.Error("destination differs from the source placed at 4 MiB")
	}
	if alloc := allocatedBytes(t, dstPath); alloc > 1<<20 {
		t.Errorf("destination allocates %d bytes, expected at most two small blocks", alloc)
	}
	if err := copySparse(dst, 0, 1<<20, src); err == nil {
		t.Error("copySparse of an 8 MiB file into 1 MiB succeeded")
	}
}
