package image

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// GPT layout constants (UEFI specification 2.10, section 5.3).
const (
	SectorSize = 512

	gptSignature      = "EFI PART"
	gptRevision       = 0x00010000
	gptHeaderSize     = 92
	gptEntrySize      = 128
	gptEntryCount     = 128
	gptEntryArraySize = gptEntrySize * gptEntryCount // 16 KiB
	gptEntrySectors   = gptEntryArraySize / SectorSize
	gptNameChars      = 36 // UTF-16 code units in a partition name

	// gptMinSectors is the smallest disk a GPT fits on: the protective MBR,
	// two headers with their entry arrays, and one usable sector.
	gptMinSectors = 1 + 2*(1+gptEntrySectors) + 1

	// PartitionAlignment is the boundary that partitions start and end on:
	// 1 MiB, the default alignment of parted, sgdisk and fdisk.
	PartitionAlignment = 1 << 20

	mbrTypeProtective = 0xee
)

// GUID is a GUID in the mixed-endian byte order that GPT stores on disk.
// The first three fields are little-endian and the last two are plain bytes.
type GUID [16]byte

// Partition type GUIDs.
var (
	// ESPType is the EFI System Partition.
	ESPType = MustParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	// LinuxDataType is "Linux filesystem data".
	LinuxDataType = MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
)

// ParseGUID parses the textual form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	parts := strings.Split(s, "-")
	lengths := []int{8, 4, 4, 4, 12}
	if len(parts) != len(lengths) {
		return g, fmt.Errorf("invalid GUID %q: expected 5 groups of hex digits", s)
	}
	var raw []byte
	for i, p := range parts {
		if len(p) != lengths[i] {
			return g, fmt.Errorf("invalid GUID %q: group %d has %d digits, expected %d", s, i+1, len(p), lengths[i])
		}
		b, err := hex.DecodeString(p)
		if err != nil {
			return g, fmt.Errorf("invalid GUID %q: %v", s, err)
		}
		raw = append(raw, b...)
	}
	// The first three groups are stored little-endian.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

// MustParseGUID parses a GUID constant like ParseGUID and panics if it is
// invalid.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String formats the GUID in upper-case text form.
func (g GUID) String() string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(g[0:4]),
		binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]),
		g[8:10], g[10:16])
}

// NewRandomGUID returns a version 4 (random) GUID.
func NewRandomGUID() (GUID, error) {
	var g GUID
	if _, err := io.ReadFull(rand.Reader, g[:]); err != nil {
		return g, err
	}
	// Version 4 sits in the high nibble of the third group, which is
	// stored little-endian, so in byte 7. The variant bits are in byte 8.
	g[7] = g[7]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}

// Partition is one GPT partition entry. LBAs are in 512-byte sectors and
// LastLBA is inclusive.
type Partition struct {
	Type       GUID
	GUID       GUID
	FirstLBA   uint64
	LastLBA    uint64
	Attributes uint64
	Name       string
}

// Offset returns the partition's first byte on the disk.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * SectorSize }

// Size returns the partition's length in bytes.
func (p Partition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * SectorSize }

// GPT is a partition table for a disk of DiskSize bytes.
type GPT struct {
	DiskSize   int64
	DiskGUID   GUID
	Partitions []Partition
}

// FirstUsableLBA returns the first sector after the primary entry array.
func (g GPT) FirstUsableLBA() uint64 { return 2 + gptEntrySectors }

// LastUsableLBA returns the last sector before the backup entry array.
func (g GPT) LastUsableLBA() uint64 { return g.sectors() - 2 - gptEntrySectors }

func (g GPT) sectors() uint64 { return uint64(g.DiskSize / SectorSize) }

// Validate checks the disk size and that every partition lies in the
// usable area, has a non-zero type GUID, has a name that fits 36 UTF-16
// code units and reads back unchanged, and overlaps no other partition.
func (g GPT) Validate() error {
	if err := checkDiskSize(g.DiskSize); err != nil {
		return err
	}
	if len(g.Partitions) > gptEntryCount {
		return fmt.Errorf("%d partitions, but the entry array has room for %d", len(g.Partitions), gptEntryCount)
	}
	for i, p := range g.Partitions {
		if p.FirstLBA < g.FirstUsableLBA() || p.LastLBA > g.LastUsableLBA() || p.FirstLBA > p.LastLBA {
			return fmt.Errorf("partition %d %q spans sectors %d-%d, outside the usable sectors %d-%d",
				i+1, p.Name, p.FirstLBA, p.LastLBA, g.FirstUsableLBA(), g.LastUsableLBA())
		}
		if n := len(utf16.Encode([]rune(p.Name))); n > gptNameChars {
			return fmt.Errorf("partition %d name %q is %d UTF-16 code units, the maximum is %d", i+1, p.Name, n, gptNameChars)
		}
		// A NUL ends the name on disk, and invalid UTF-8 is stored as
		// U+FFFD, so neither would read back as written.
		if strings.ContainsRune(p.Name, 0) || !utf8.ValidString(p.Name) {
			return fmt.Errorf("partition %d name %q contains a NUL or invalid UTF-8", i+1, p.Name)
		}
		if p.Type == (GUID{}) {
			return fmt.Errorf("partition %d %q has the zero type GUID, which marks an unused entry", i+1, p.Name)
		}
		for j, q := range g.Partitions[:i] {
			if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
				return fmt.Errorf("partition %d %q overlaps partition %d %q", i+1, p.Name, j+1, q.Name)
			}
		}
	}
	return nil
}

// checkDiskSize returns an error unless a disk of size bytes has a whole
// number of sectors and room for a GPT.
func checkDiskSize(size int64) error {
	if size%SectorSize != 0 {
		return fmt.Errorf("disk size %d is not a multiple of %d bytes", size, SectorSize)
	}
	if size < gptMinSectors*SectorSize {
		return fmt.Errorf("disk size %d is below the minimum of %d bytes for a GPT", size, gptMinSectors*SectorSize)
	}
	return nil
}

// Write writes the protective MBR, the primary GPT header and entry array
// at the start of the disk and the backup entry array and header at its
// end. It writes nothing else, so a sparse file stays sparse.
func (g GPT) Write(w io.WriterAt) error {
	if err := g.Validate(); err != nil {
		return err
	}
	entries := g.entryArray()
	entriesCRC := crc32.ChecksumIEEE(entries)
	last := g.sectors() - 1
	backupEntries := last - gptEntrySectors

	writes := []struct {
		lba  uint64
		data []byte
	}{
		{0, g.protectiveMBR()},
		{1, g.header(1, last, 2, entriesCRC)},
		{2, entries},
		{backupEntries, entries},
		{last, g.header(last, 1, backupEntries, entriesCRC)},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.data, int64(wr.lba)*SectorSize); err != nil {
			return fmt.Errorf("write GPT at sector %d: %w", wr.lba, err)
		}
	}
	return nil
}

func (g GPT) protectiveMBR() []byte {
	mbr := make([]byte, SectorSize)
	entry := mbr[446:462]
	// CHS start 0/0/2 (LBA 1) and the CHS end saturated at 0xffffff, as
	// the UEFI specification prescribes for a protective MBR.
	entry[1], entry[2], entry[3] = 0x00, 0x02, 0x00
	entry[4] = mbrTypeProtective
	entry[5], entry[6], entry[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(entry[8:], 1)
	binary.LittleEndian.PutUint32(entry[12:], uint32(min(g.sectors()-1, 0xffffffff)))
	mbr[510], mbr[511] = 0x55, 0xaa
	return mbr
}

func (g GPT) entryArray() []byte {
	buf := make([]byte, gptEntryArraySize)
	for i, p := range g.Partitions {
		e := buf[i*gptEntrySize : (i+1)*gptEntrySize]
		copy(e[0:16], p.Type[:])
		copy(e[16:32], p.GUID[:])
		binary.LittleEndian.PutUint64(e[32:], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:], p.LastLBA)
		binary.LittleEndian.PutUint64(e[48:], p.Attributes)
		for j, c := range utf16.Encode([]rune(p.Name)) {
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
	}
	return buf
}

// header returns one GPT header sector. myLBA is its own sector, altLBA the
// sector of the other copy, and entriesLBA the first sector of its entry
// array.
func (g GPT) header(myLBA, altLBA, entriesLBA uint64, entriesCRC uint32) []byte {
	h := make([]byte, SectorSize)
	copy(h[0:8], gptSignature)
	binary.LittleEndian.PutUint32(h[8:], gptRevision)
	binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
	binary.LittleEndian.PutUint64(h[24:], myLBA)
	binary.LittleEndian.PutUint64(h[32:], altLBA)
	binary.LittleEndian.PutUint64(h[40:], g.FirstUsableLBA())
	binary.LittleEndian.PutUint64(h[48:], g.LastUsableLBA())
	copy(h[56:72], g.DiskGUID[:])
	binary.LittleEndian.PutUint64(h[72:], entriesLBA)
	binary.LittleEndian.PutUint32(h[80:], gptEntryCount)
	binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
	binary.LittleEndian.PutUint32(h[88:], entriesCRC)
	// The header CRC covers the header with its own CRC field zero.
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
	return h
}

// ReadGPT parses and checks the GPT of a disk of size bytes: the
// protective MBR, both headers with their CRCs, both entry arrays with
// their CRCs, and that the two copies agree. It returns the partitions in
// entry order, skipping unused entries, and rejects a table that Validate
// rejects.
func ReadGPT(r io.ReaderAt, size int64) (GPT, error) {
	g := GPT{DiskSize: size}
	if err := checkDiskSize(size); err != nil {
		return g, err
	}
	mbr := make([]byte, SectorSize)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return g, fmt.Errorf("read MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa || mbr[446+4] != mbrTypeProtective {
		return g, errors.New("sector 0 is not a protective MBR (signature 55 AA and partition type EE)")
	}

	last := g.sectors() - 1
	primary, primaryEntries, err := readGPTCopy(r, 1, last, 2)
	if err != nil {
		return g, fmt.Errorf("primary GPT: %w", err)
	}
	backup, backupEntries, err := readGPTCopy(r, last, 1, last-gptEntrySectors)
	if err != nil {
		return g, fmt.Errorf("backup GPT: %w", err)
	}
	if !bytes.Equal(primaryEntries, backupEntries) {
		return g, errors.New("primary and backup partition entry arrays differ")
	}
	// The headers must match apart from the header CRC and the fields that
	// locate each copy (MyLBA, AlternateLBA and PartitionEntryLBA).
	for _, field := range [][2]int{{40, 72}, {80, 92}} {
		if !bytes.Equal(primary[field[0]:field[1]], backup[field[0]:field[1]]) {
			return g, fmt.Errorf("primary and backup GPT headers differ in bytes %d-%d", field[0], field[1]-1)
		}
	}
	copy(g.DiskGUID[:], primary[56:72])
	if first := binary.LittleEndian.Uint64(primary[40:]); first != g.FirstUsableLBA() {
		return g, fmt.Errorf("first usable sector is %d, expected %d", first, g.FirstUsableLBA())
	}
	if lastUsable := binary.LittleEndian.Uint64(primary[48:]); lastUsable != g.LastUsableLBA() {
		return g, fmt.Errorf("last usable sector is %d, expected %d", lastUsable, g.LastUsableLBA())
	}

	for i := 0; i < gptEntryCount; i++ {
		e := primaryEntries[i*gptEntrySize : (i+1)*gptEntrySize]
		var p Partition
		copy(p.Type[:], e[0:16])
		if p.Type == (GUID{}) {
			continue
		}
		copy(p.GUID[:], e[16:32])
		p.FirstLBA = binary.LittleEndian.Uint64(e[32:])
		p.LastLBA = binary.LittleEndian.Uint64(e[40:])
		p.Attributes = binary.LittleEndian.Uint64(e[48:])
		name := make([]uint16, 0, gptNameChars)
		for j := 0; j < gptNameChars; j++ {
			c := binary.LittleEndian.Uint16(e[56+2*j:])
			if c == 0 {
				break
			}
			name = append(name, c)
		}
		p.Name = string(utf16.Decode(name))
		g.Partitions = append(g.Partitions, p)
	}
	return g, g.Validate()
}

// readGPTCopy reads the header at lba, checks its fields and CRCs, and
// returns it with its entry array. altLBA and entriesLBA are the sectors
// that the header must name for the other copy and for its entry array.
func readGPTCopy(r io.ReaderAt, lba, altLBA, entriesLBA uint64) (header, entries []byte, err error) {
	header = make([]byte, SectorSize)
	if _, err := r.ReadAt(header, int64(lba)*SectorSize); err != nil {
		return nil, nil, fmt.Errorf("read header at sector %d: %w", lba, err)
	}
	if string(header[0:8]) != gptSignature {
		return nil, nil, fmt.Errorf("no %q signature at sector %d", gptSignature, lba)
	}
	if rev := binary.LittleEndian.Uint32(header[8:]); rev != gptRevision {
		return nil, nil, fmt.Errorf("revision %#x, expected %#x", rev, gptRevision)
	}
	if size := binary.LittleEndian.Uint32(header[12:]); size != gptHeaderSize {
		return nil, nil, fmt.Errorf("header size %d, expected %d", size, gptHeaderSize)
	}
	stored := binary.LittleEndian.Uint32(header[16:])
	check := bytes.Clone(header[:gptHeaderSize])
	binary.LittleEndian.PutUint32(check[16:], 0)
	if got := crc32.ChecksumIEEE(check); got != stored {
		return nil, nil, fmt.Errorf("header CRC32 is %#08x, computed %#08x", stored, got)
	}
	if my := binary.LittleEndian.Uint64(header[24:]); my != lba {
		return nil, nil, fmt.Errorf("header at sector %d names itself sector %d", lba, my)
	}
	if alt := binary.LittleEndian.Uint64(header[32:]); alt != altLBA {
		return nil, nil, fmt.Errorf("alternate header at sector %d, expected %d", alt, altLBA)
	}
	// The UEFI specification puts the primary entry array between the
	// primary header and the first usable sector, and the backup array
	// between the last usable sector and the backup header. With 128
	// entries and the usable sectors that ReadGPT checks, each array has
	// exactly one place.
	if at := binary.LittleEndian.Uint64(header[72:]); at != entriesLBA {
		return nil, nil, fmt.Errorf("entry array at sector %d, expected %d", at, entriesLBA)
	}
	if n, size := binary.LittleEndian.Uint32(header[80:]), binary.LittleEndian.Uint32(header[84:]); n != gptEntryCount || size != gptEntrySize {
		return nil, nil, fmt.Errorf("%d entries of %d bytes, expected %d of %d", n, size, gptEntryCount, gptEntrySize)
	}

	entries = make([]byte, gptEntryArraySize)
	if _, err := r.ReadAt(entries, int64(entriesLBA)*SectorSize); err != nil {
		return nil, nil, fmt.Errorf("read entry array at sector %d: %w", entriesLBA, err)
	}
	if stored, got := binary.LittleEndian.Uint32(header[88:]), crc32.ChecksumIEEE(entries); got != stored {
		return nil, nil, fmt.Errorf("entry array CRC32 is %#08x, computed %#08x", stored, got)
	}
	return header, entries, nil
}
