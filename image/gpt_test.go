package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// requireTool returns the path of a command. It skips the test when the
// command is missing, and fails under CI=true.
func requireTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := lookTool(name, debianPackage)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return path
}

// sgdiskVerify runs `sgdisk -v` on a disk image and fails the test if it
// reports a problem.
func sgdiskVerify(t *testing.T, path string) {
	t.Helper()
	sgdisk := requireTool(t, "sgdisk", "gdisk")
	out, err := exec.Command(sgdisk, "-v", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v %s: %v\n%s", path, err, out)
	}
}

// testTable returns a 64 MiB disk with an ESP and a data partition, as
// CreateBootDisk lays them out, with random GUIDs.
func testTable(t *testing.T) GPT {
	t.Helper()
	var guids [3]GUID
	for i := range guids {
		g, err := NewRandomGUID()
		if err != nil {
			t.Fatal(err)
		}
		guids[i] = g
	}
	return GPT{
		DiskSize: 64 << 20,
		DiskGUID: guids[0],
		Partitions: []Partition{
			{Type: ESPType, GUID: guids[1], FirstLBA: 2048, LastLBA: 34815, Name: ESPPartitionName},
			{Type: LinuxDataType, GUID: guids[2], FirstLBA: 34816, LastLBA: 129023, Attributes: 1 << 60, Name: DataPartitionName},
		},
	}
}

func writeTable(t *testing.T, table GPT) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(table.DiskSize); err != nil {
		t.Fatal(err)
	}
	if err := table.Write(f); err != nil {
		t.Fatalf("write GPT: %v", err)
	}
	return path
}

func readTable(t *testing.T, path string) (GPT, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return ReadGPT(f, info.Size())
}

func TestGPTRoundTrip(t *testing.T) {
	table := testTable(t)
	path := writeTable(t, table)

	got, err := readTable(t, path)
	if err != nil {
		t.Fatalf("ReadGPT: %v", err)
	}
	if got.DiskGUID != table.DiskGUID {
		t.Errorf("disk GUID %s, wrote %s", got.DiskGUID, table.DiskGUID)
	}
	if len(got.Partitions) != len(table.Partitions) {
		t.Fatalf("read %d partitions, wrote %d", len(got.Partitions), len(table.Partitions))
	}
	for i := range table.Partitions {
		if got.Partitions[i] != table.Partitions[i] {
			t.Errorf("partition %d: read %+v, wrote %+v", i+1, got.Partitions[i], table.Partitions[i])
		}
	}
	sgdiskVerify(t, path)
}

func TestGPTMatchesSgdisk(t *testing.T) {
	sgdisk := requireTool(t, "sgdisk", "gdisk")
	table := testTable(t)
	path := writeTable(t, table)
	out, err := exec.Command(sgdisk, "-i", "2", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 2: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Partition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4",
		"Partition unique GUID: " + table.Partitions[1].GUID.String(),
		"First sector: 34816",
		"Last sector: 129023",
		"Partition name: 'blocktree-data'",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sgdisk -i 2 output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(sgdisk, "-p", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -p: %v\n%s", err, out)
	}
	if want := "Disk identifier (GUID): " + table.DiskGUID.String(); !strings.Contains(string(out), want) {
		t.Errorf("sgdisk -p output lacks %q:\n%s", want, out)
	}
}

func TestGPTProtectiveMBR(t *testing.T) {
	path := writeTable(t, testTable(t))
	disk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entry := disk[446:462]
	if entry[4] != 0xee {
		t.Errorf("MBR partition type %#x, expected 0xee", entry[4])
	}
	if start := binary.LittleEndian.Uint32(entry[8:]); start != 1 {
		t.Errorf("protective partition starts at sector %d, expected 1", start)
	}
	if size := binary.LittleEndian.Uint32(entry[12:]); size != 64<<20/SectorSize-1 {
		t.Errorf("protective partition has %d sectors, expected %d", size, 64<<20/SectorSize-1)
	}
	if !bytes.Equal(disk[510:512], []byte{0x55, 0xaa}) {
		t.Errorf("MBR signature % x, expected 55 aa", disk[510:512])
	}
	if !bytes.Equal(disk[462:510], make([]byte, 48)) {
		t.Error("MBR partition entries 2 to 4 are not empty")
	}
}

func TestReadGPTDetectsCorruption(t *testing.T) {
	const last = 64<<20/SectorSize - 1
	cases := []struct {
		name   string
		offset int64
		want   string
	}{
		{"primary header", 1*SectorSize + 40, "primary GPT: header CRC32"},
		{"primary entries", 2*SectorSize + 60, "primary GPT: entry array CRC32"},
		{"backup header", last*SectorSize + 40, "backup GPT: header CRC32"},
		{"backup entries", (last-gptEntrySectors)*SectorSize + 60, "backup GPT: entry array CRC32"},
		{"MBR signature", 510, "protective MBR"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTable(t, testTable(t))
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0x5a}, c.offset); err != nil {
				t.Fatal(err)
			}
			f.Close()
			_, err = readTable(t, path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadGPT: error %v, expected one containing %q", err, c.want)
			}
		})
	}
}

func TestGPTValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		modify func(*GPT)
		want   string
	}{
		{"overlap", func(g *GPT) { g.Partitions[1].FirstLBA = 34815 }, "overlaps"},
		{"before first usable", func(g *GPT) { g.Partitions[0].FirstLBA = 33 }, "outside the usable sectors"},
		{"past last usable", func(g *GPT) { g.Partitions[1].LastLBA = g.LastUsableLBA() + 1 }, "outside the usable sectors"},
		{"long name", func(g *GPT) { g.Partitions[0].Name = strings.Repeat("x", 37) }, "maximum is 36"},
		{"zero type", func(g *GPT) { g.Partitions[0].Type = GUID{} }, "zero type GUID"},
		{"odd disk size", func(g *GPT) { g.DiskSize++ }, "not a multiple"},
		{"disk too small", func(g *GPT) { g.DiskSize = (gptMinSectors - 1) * SectorSize; g.Partitions = nil }, "below the minimum"},
		{"negative disk size", func(g *GPT) { g.DiskSize = -SectorSize; g.Partitions = nil }, "below the minimum"},
		{"too many partitions", func(g *GPT) { g.Partitions = make([]Partition, gptEntryCount+1) }, "room for 128"},
		{"NUL in name", func(g *GPT) { g.Partitions[1].Name = "data\x00old" }, "contains a NUL"},
		{"invalid UTF-8 name", func(g *GPT) { g.Partitions[1].Name = "data\xff" }, "invalid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			table := testTable(t)
			c.modify(&table)
			err := table.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: error %v, expected one containing %q", err, c.want)
			}
		})
	}
}

func TestGPTSmallestDisk(t *testing.T) {
	table := GPT{
		DiskSize:   gptMinSectors * SectorSize,
		Partitions: []Partition{{Type: LinuxDataType, FirstLBA: 2 + gptEntrySectors, LastLBA: 2 + gptEntrySectors, Name: "one sector"}},
	}
	if first, last := table.FirstUsableLBA(), table.LastUsableLBA(); first != last {
		t.Fatalf("usable sectors %d-%d, expected exactly one", first, last)
	}
	disk := make(memDisk, table.DiskSize)
	if err := table.Write(disk); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got, err := ReadGPT(bytes.NewReader(disk), int64(len(disk)))
	if err != nil {
		t.Fatalf("ReadGPT: %v", err)
	}
	if !slices.Equal(got.Partitions, table.Partitions) {
		t.Errorf("read %+v, wrote %+v", got.Partitions, table.Partitions)
	}
}

func TestReadGPTRejectsMovedEntryArray(t *testing.T) {
	table := testTable(t)
	disk := make(memDisk, table.DiskSize)
	if err := table.Write(disk); err != nil {
		t.Fatalf("Write: %v", err)
	}
	// A primary header with valid CRCs whose entry array lies inside the
	// ESP, where a partition's data would overwrite it.
	const movedLBA = 4096
	entries := table.entryArray()
	copy(disk[movedLBA*SectorSize:], entries)
	last := table.sectors() - 1
	copy(disk[SectorSize:], table.header(1, last, movedLBA, crc32.ChecksumIEEE(entries)))

	_, err := ReadGPT(bytes.NewReader(disk), int64(len(disk)))
	if want := "primary GPT: entry array at sector 4096, expected 2"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("ReadGPT: error %v, expected one containing %q", err, want)
	}
}

func TestGUIDEncoding(t *testing.T) {
	// The ESP type GUID as it appears on disk (UEFI specification).
	want := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if !bytes.Equal(ESPType[:], want) {
		t.Errorf("ESP type GUID bytes % x, expected % x", ESPType[:], want)
	}
	if s := ESPType.String(); s != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" {
		t.Errorf("ESP type GUID formats as %s", s)
	}
	if s := LinuxDataType.String(); s != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" {
		t.Errorf("Linux data type GUID formats as %s", s)
	}
	for _, bad := range []string{"", "C12A7328-F81F-11D2-BA4B", "C12A7328-F81F-11D2-BA4B-00A0C93EC93", "X12A7328-F81F-11D2-BA4B-00A0C93EC93B"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", bad)
		}
	}
}

func TestNewRandomGUIDVersion(t *testing.T) {
	g, err := NewRandomGUID()
	if err != nil {
		t.Fatal(err)
	}
	s := g.String()
	if s[14] != '4' {
		t.Errorf("GUID %s is not version 4", s)
	}
	if !strings.ContainsRune("89AB", rune(s[19])) {
		t.Errorf("GUID %s does not have the RFC 4122 variant", s)
	}
}

// memDisk is a disk image in memory.
type memDisk []byte

func (d memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d)) {
		return 0, fmt.Errorf("write of %d bytes at %d is outside the %d-byte disk", len(p), off, len(d))
	}
	return copy(d[off:], p), nil
}

// FuzzReadGPT feeds disk images to ReadGPT. Whatever it accepts must
// survive a write and a second read unchanged.
func FuzzReadGPT(f *testing.F) {
	// The smallest disk that holds both tables and one sector of data,
	// with a partition on that sector.
	table := GPT{
		DiskSize: gptMinSectors * SectorSize,
		DiskGUID: MustParseGUID("6a1c9f2e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"),
		Partitions: []Partition{
			{Type: LinuxDataType, GUID: MustParseGUID("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"), FirstLBA: 2 + gptEntrySectors, LastLBA: 2 + gptEntrySectors, Name: DataPartitionName},
		},
	}
	disk := make(memDisk, table.DiskSize)
	if err := table.Write(disk); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(disk))
	f.Add(make([]byte, table.DiskSize))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ReadGPT(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		again := make(memDisk, len(data))
		if err := got.Write(again); err != nil {
			t.Fatalf("ReadGPT accepted a table that Write rejects: %v", err)
		}
		back, err := ReadGPT(bytes.NewReader(again), int64(len(again)))
		if err != nil {
			t.Fatalf("ReadGPT rejects what Write wrote: %v", err)
		}
		if back.DiskGUID != got.DiskGUID || !slices.Equal(back.Partitions, got.Partitions) {
			t.Fatalf("table changed in a round trip: %+v, then %+v", got, back)
		}
	})
}
