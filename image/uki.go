package image

import (
	"bytes"
	"compress/gzip"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// DefaultStub is the UEFI stub of Debian 12's systemd-boot-efi package
// (systemd 252). It boots the kernel in its .linux section with the
// .initrd and .cmdline sections and measures the sections into PCR 11.
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// DefaultCmdline is the kernel command line in the UKI. The kernel writes
// to every console= but /dev/console is the last one, so ttyS0 comes last
// and PID 1's shell is on the serial port.
const DefaultCmdline = "console=tty0 console=ttyS0,115200 panic=-1 quiet"

// DefaultOSRelease is the .osrel section: os-release(5) text that boot
// menus such as systemd-boot show for the UKI.
const DefaultOSRelease = `NAME="Blocktree"
ID=blocktree
PRETTY_NAME="Blocktree appliance"
HOME_URL="https://github.com/blocktree/blocktree"
`

// MaxUKISize is the maximum UKI size in bytes that WriteUKI writes. The UKI
// must fit the EFI System Partition together with a second copy during an
// update.
const MaxUKISize = 40 << 20

// UKI is the payload of a unified kernel image.
type UKI struct {
	Kernel    []byte // bzImage with the EFI handover entry
	Initrd    []byte // initramfs, compressed with a format the kernel decompresses
	Cmdline   string
	OSRelease string
	Uname     string // kernel release for the .uname section; empty leaves it out
}

// ukiSection is a section that AssembleUKI appends to the stub.
type ukiSection struct {
	name string
	data []byte
}

// Section layout constants from the PE/COFF specification.
const (
	peSignatureSize       = 4
	coffHeaderSize        = 20
	sectionHeaderSize     = 40
	optionalHeaderMagic64 = 0x20b

	// scnInitializedDataRead marks a section as initialized, read-only data
	// (IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ).
	scnInitializedDataRead = 0x00000040 | 0x40000000

	// Offsets inside the PE32+ optional header.
	optSizeOfInitializedData = 8
	optSizeOfImage           = 56
	optSizeOfHeaders         = 60
	optCheckSum              = 64
	optDataDirectories       = 112
	dataDirectorySecurity    = 4
)

// AssembleUKI returns a copy of the UEFI stub PE image with the sections
// .osrel, .cmdline, .uname (when set), .initrd and .linux appended, in that
// order. The .linux section comes last, as ukify does, because it is the
// largest. Each new section starts at a file offset aligned to the stub's
// FileAlignment and at a virtual address aligned to its SectionAlignment
// past the stub's last section. The PE checksum is recomputed.
func AssembleUKI(stub []byte, payload UKI) ([]byte, error) {
	if len(payload.Kernel) == 0 {
		return nil, errors.New("UKI kernel is empty")
	}
	if len(payload.Initrd) == 0 {
		return nil, errors.New("UKI initrd is empty")
	}
	sections := []ukiSection{
		{".osrel", []byte(payload.OSRelease)},
		{".cmdline", []byte(payload.Cmdline)},
	}
	if payload.Uname != "" {
		sections = append(sections, ukiSection{".uname", []byte(payload.Uname)})
	}
	sections = append(sections,
		ukiSection{".initrd", payload.Initrd},
		ukiSection{".linux", payload.Kernel},
	)
	return appendSections(stub, sections)
}

// appendSections returns a copy of a PE32+ image with sections appended. It
// writes the new section headers into the zeroed space after the existing
// ones, so the header size and the stub's own sections stay where they are.
func appendSections(stub []byte, sections []ukiSection) ([]byte, error) {
	// debug/pe also reads bare COFF objects, so check the DOS and PE
	// signatures here.
	if len(stub) < 0x40 || string(stub[:2]) != "MZ" {
		return nil, errors.New("stub is not a PE image: no MZ header")
	}
	peOffset := int64(binary.LittleEndian.Uint32(stub[0x3c:]))
	if peOffset > int64(len(stub))-peSignatureSize || string(stub[peOffset:peOffset+peSignatureSize]) != "PE\x00\x00" {
		return nil, fmt.Errorf("stub is not a PE image: no PE signature at offset %#x", peOffset)
	}
	f, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		return nil, fmt.Errorf("stub is not a PE image: %w", err)
	}
	defer f.Close()
	opt, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return nil, errors.New("stub is not a PE32+ (64-bit) image")
	}
	if opt.DataDirectory[dataDirectorySecurity].Size != 0 {
		return nil, errors.New("stub is signed: appending sections would invalidate its signature, so use an unsigned stub and sign the UKI afterwards")
	}
	fileAlign := int64(opt.FileAlignment)
	sectAlign := int64(opt.SectionAlignment)
	// The PE/COFF specification requires a FileAlignment that is a power of
	// two from 512 to 64 KiB and a SectionAlignment at least as large. The
	// 64 KiB cap on SectionAlignment is this builder's own limit. Debian's
	// stub uses 512 for both.
	if !powerOfTwoIn(fileAlign, 512, 64<<10) || !powerOfTwoIn(sectAlign, fileAlign, 64<<10) {
		return nil, fmt.Errorf("stub has FileAlignment %#x and SectionAlignment %#x, expected powers of two from 0x200 to 0x10000 with SectionAlignment at least FileAlignment", fileAlign, sectAlign)
	}
	for _, s := range f.Sections {
		if int64(s.Offset)+int64(s.Size) > int64(len(stub)) {
			return nil, fmt.Errorf("stub section %s ends at file offset %#x, past the stub's %d bytes", s.Name, int64(s.Offset)+int64(s.Size), len(stub))
		}
		for _, n := range sections {
			if s.Name == n.name {
				return nil, fmt.Errorf("stub already has a %s section", n.name)
			}
		}
	}

	optOffset := peOffset + peSignatureSize + coffHeaderSize
	tableOffset := optOffset + int64(f.FileHeader.SizeOfOptionalHeader)
	oldTableEnd := tableOffset + int64(len(f.Sections))*sectionHeaderSize
	tableEnd := oldTableEnd + int64(len(sections))*sectionHeaderSize
	if room := min(headerRoom(f, int64(opt.SizeOfHeaders)), int64(len(stub))); tableEnd > room {
		return nil, fmt.Errorf("stub has room for %d more section headers, %d needed",
			max(0, (room-oldTableEnd)/sectionHeaderSize), len(sections))
	}
	// A PE image may keep data, such as a bound import table, after its
	// section table. Overwriting that data would corrupt the stub.
	if !allZero(stub[oldTableEnd:tableEnd]) {
		return nil, fmt.Errorf("stub has data at file offsets %#x-%#x, where the new section headers go", oldTableEnd, tableEnd-1)
	}

	// New sections go after everything the stub contains in the file and
	// after the stub's image in memory.
	fileEnd := int64(len(stub))
	virtEnd := int64(opt.SizeOfImage)
	for _, s := range f.Sections {
		fileEnd = max(fileEnd, int64(s.Offset)+int64(s.Size))
		virtEnd = max(virtEnd, int64(s.VirtualAddress)+int64(max(s.VirtualSize, s.Size)))
	}
	fileOff := alignUp(fileEnd, fileAlign)
	virtAddr := alignUp(virtEnd, sectAlign)

	headers := make([]byte, 0, len(sections)*sectionHeaderSize)
	var body bytes.Buffer
	var addedRaw int64
	for _, s := range sections {
		rawSize := alignUp(int64(len(s.data)), fileAlign)
		nextVirtAddr := alignUp(virtAddr+int64(len(s.data)), sectAlign)
		// SizeOfImage becomes the last section's aligned end, so that must
		// fit 32 bits too.
		if nextVirtAddr > math.MaxUint32 || fileOff+rawSize > math.MaxUint32 {
			return nil, fmt.Errorf("section %s ends beyond 4 GiB, the limit of PE32+ offsets", s.name)
		}
		var h [sectionHeaderSize]byte
		copy(h[0:8], s.name)
		binary.LittleEndian.PutUint32(h[8:], uint32(len(s.data)))
		binary.LittleEndian.PutUint32(h[12:], uint32(virtAddr))
		binary.LittleEndian.PutUint32(h[16:], uint32(rawSize))
		binary.LittleEndian.PutUint32(h[20:], uint32(fileOff))
		binary.LittleEndian.PutUint32(h[36:], scnInitializedDataRead)
		headers = append(headers, h[:]...)

		body.Write(s.data)
		body.Write(make([]byte, rawSize-int64(len(s.data))))
		fileOff += rawSize
		addedRaw += rawSize
		virtAddr = nextVirtAddr
	}

	out := make([]byte, alignUp(fileEnd, fileAlign), alignUp(fileEnd, fileAlign)+int64(body.Len()))
	copy(out, stub)
	out = append(out, body.Bytes()...)

	copy(out[oldTableEnd:], headers)
	binary.LittleEndian.PutUint16(out[peOffset+peSignatureSize+2:], uint16(len(f.Sections)+len(sections)))
	binary.LittleEndian.PutUint32(out[optOffset+optSizeOfInitializedData:], opt.SizeOfInitializedData+uint32(addedRaw))
	binary.LittleEndian.PutUint32(out[optOffset+optSizeOfImage:], uint32(virtAddr))
	binary.LittleEndian.PutUint32(out[optOffset+optCheckSum:], 0)
	binary.LittleEndian.PutUint32(out[optOffset+optCheckSum:], peChecksum(out))
	return out, nil
}

// headerRoom returns the file offset at which the section table must end
// at the latest: the end of the headers or the start of the first
// section's data, whichever comes first. The section table is loaded with
// the headers, so it must also end at or below the lowest section virtual
// address.
func headerRoom(f *pe.File, sizeOfHeaders int64) int64 {
	room := sizeOfHeaders
	for _, s := range f.Sections {
		if s.Size > 0 {
			room = min(room, int64(s.Offset))
		}
		room = min(room, int64(s.VirtualAddress))
	}
	return room
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// peChecksum computes the PE image checksum: the sum of the file's 16-bit
// little-endian words with carries folded back in, plus the file length.
// The caller must zero the CheckSum field in image first.
func peChecksum(image []byte) uint32 {
	var sum uint64
	for i := 0; i+1 < len(image); i += 2 {
		sum += uint64(binary.LittleEndian.Uint16(image[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(image)%2 == 1 {
		sum += uint64(image[len(image)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return uint32(sum&0xffff) + uint32(len(image))
}

func powerOfTwoIn(n, low, high int64) bool {
	return n >= low && n <= high && n&(n-1) == 0
}

func alignUp(n, align int64) int64 {
	return (n + align - 1) / align * align
}

// UKIOptions are the input files and texts for WriteUKI.
type UKIOptions struct {
	Stub      string // UEFI stub PE image; DefaultStub when empty
	Kernel    string // bzImage
	Initramfs string // uncompressed cpio archive; WriteUKI gzips it
	Cmdline   string
	OSRelease string
	Uname     string // kernel release for the .uname section; empty leaves it out
}

// WriteUKI builds a unified kernel image from files and writes it to out,
// replacing out atomically. It returns the UKI's size and fails if that is
// larger than MaxUKISize.
func WriteUKI(out string, opts UKIOptions) (int64, error) {
	stubPath := opts.Stub
	if stubPath == "" {
		stubPath = DefaultStub
	}
	stub, err := os.ReadFile(stubPath)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("UEFI stub %s not found: install Debian package systemd-boot-efi (scripts/install-deps.sh)", stubPath)
	} else if err != nil {
		return 0, err
	}
	kernel, err := os.ReadFile(opts.Kernel)
	if err != nil {
		return 0, err
	}
	cpio, err := os.ReadFile(opts.Initramfs)
	if err != nil {
		return 0, err
	}
	initrd, err := gzipBytes(cpio)
	if err != nil {
		return 0, fmt.Errorf("compress %s: %w", opts.Initramfs, err)
	}

	uki, err := AssembleUKI(stub, UKI{
		Kernel:    kernel,
		Initrd:    initrd,
		Cmdline:   opts.Cmdline,
		OSRelease: opts.OSRelease,
		Uname:     opts.Uname,
	})
	if err != nil {
		return 0, fmt.Errorf("assemble UKI from %s: %w", stubPath, err)
	}
	if len(uki) > MaxUKISize {
		return 0, fmt.Errorf("UKI is %d bytes, above the maximum of %d (kernel %d, compressed initramfs %d): shrink the kernel or the initramfs (kernel-config/modules.txt)",
			len(uki), MaxUKISize, len(kernel), len(initrd))
	}
	if err := writeFileAtomic(out, uki, 0o644); err != nil {
		return 0, err
	}
	return int64(len(uki)), nil
}

// gzipBytes compresses data for the kernel's initramfs unpacker, which
// Debian's cloud kernel builds with CONFIG_RD_GZIP=y.
func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFileAtomic writes data to a temporary file next to path and
// renames it into place, so readers never see a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
