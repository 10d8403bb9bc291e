package image

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// fakeStub returns a minimal PE32+ image with one .text section, file
// alignment 0x200 and section alignment 0x1000, like a small EFI
// application.
func fakeStub(t testing.TB) []byte {
	t.Helper()
	const (
		peOffset      = 0x80
		optSize       = 240
		fileAlign     = 0x200
		sectAlign     = 0x1000
		sizeOfHeaders = 0x400
		textVA        = 0x1000
		textSize      = 0x1f4
	)
	img := make([]byte, sizeOfHeaders+fileAlign)
	copy(img, "MZ")
	binary.LittleEndian.PutUint32(img[0x3c:], peOffset)
	copy(img[peOffset:], "PE\x00\x00")

	coff := img[peOffset+4:]
	binary.LittleEndian.PutUint16(coff[0:], 0x8664) // AMD64
	binary.LittleEndian.PutUint16(coff[2:], 1)      // one section
	binary.LittleEndian.PutUint16(coff[16:], optSize)
	binary.LittleEndian.PutUint16(coff[18:], 0x0206) // executable, large address aware

	opt := coff[coffHeaderSize:]
	binary.LittleEndian.PutUint16(opt[0:], optionalHeaderMagic64)
	binary.LittleEndian.PutUint32(opt[16:], textVA) // entry point
	binary.LittleEndian.PutUint32(opt[32:], sectAlign)
	binary.LittleEndian.PutUint32(opt[36:], fileAlign)
	binary.LittleEndian.PutUint32(opt[optSizeOfImage:], textVA+sectAlign)
	binary.LittleEndian.PutUint32(opt[optSizeOfHeaders:], sizeOfHeaders)
	binary.LittleEndian.PutUint16(opt[68:], 10)  // EFI application
	binary.LittleEndian.PutUint32(opt[108:], 16) // NumberOfRvaAndSizes

	sec := opt[optSize:]
	copy(sec[0:8], ".text")
	binary.LittleEndian.PutUint32(sec[8:], textSize)
	binary.LittleEndian.PutUint32(sec[12:], textVA)
	binary.LittleEndian.PutUint32(sec[16:], fileAlign)
	binary.LittleEndian.PutUint32(sec[20:], sizeOfHeaders)
	binary.LittleEndian.PutUint32(sec[36:], 0x60000020) // code, executable, readable
	for i := range textSize {
		img[sizeOfHeaders+i] = 0xcc
	}
	return img
}

// debianStub reads Debian's systemd-boot-efi stub. It skips the test when
// the package is missing, and fails under CI=true.
func debianStub(t *testing.T) []byte {
	t.Helper()
	stub, err := os.ReadFile(DefaultStub)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("read stub (install Debian package systemd-boot-efi): %v", err)
		}
		t.Skipf("read stub (install Debian package systemd-boot-efi): %v", err)
	}
	return stub
}

// testPayload returns a 3 MiB kernel of patterned bytes and a 1.2 MB
// initrd, large enough that each spans many FileAlignment units.
func testPayload() UKI {
	kernel := make([]byte, 3<<20+17)
	for i := range kernel {
		kernel[i] = byte(i*7 + i>>9)
	}
	initrd := bytes.Repeat([]byte("initrd-data\x00"), 100000)
	return UKI{
		Kernel:    kernel,
		Initrd:    initrd,
		Cmdline:   DefaultCmdline,
		OSRelease: DefaultOSRelease,
		Uname:     "6.1.0-57-cloud-amd64",
	}
}

// checkUKI parses uki and checks the appended sections against payload and
// the PE layout rules against the stub it was built from.
func checkUKI(t *testing.T, stub, uki []byte, payload UKI) {
	t.Helper()
	stubFile, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		t.Fatalf("parse stub: %v", err)
	}
	f, err := pe.NewFile(bytes.NewReader(uki))
	if err != nil {
		t.Fatalf("parse UKI: %v", err)
	}
	opt := f.OptionalHeader.(*pe.OptionalHeader64)
	stubOpt := stubFile.OptionalHeader.(*pe.OptionalHeader64)

	want := []struct {
		name string
		data []byte
	}{
		{".osrel", []byte(payload.OSRelease)},
		{".cmdline", []byte(payload.Cmdline)},
		{".uname", []byte(payload.Uname)},
		{".initrd", payload.Initrd},
		{".linux", payload.Kernel},
	}
	nStub := len(stubFile.Sections)
	if got := len(f.Sections); got != nStub+len(want) {
		t.Fatalf("UKI has %d sections, expected %d stub sections plus %d", got, nStub, len(want))
	}
	if int(f.FileHeader.NumberOfSections) != len(f.Sections) {
		t.Errorf("NumberOfSections is %d, section table has %d", f.FileHeader.NumberOfSections, len(f.Sections))
	}

	// The stub's sections are unchanged.
	for i, s := range stubFile.Sections {
		if f.Sections[i].SectionHeader != s.SectionHeader {
			t.Errorf("stub section %d changed: %+v, was %+v", i, f.Sections[i].SectionHeader, s.SectionHeader)
		}
	}

	stubVirtEnd := uint32(0)
	for _, s := range stubFile.Sections {
		stubVirtEnd = max(stubVirtEnd, s.VirtualAddress+max(s.VirtualSize, s.Size))
	}
	for i, w := range want {
		s := f.Sections[nStub+i]
		if s.Name != w.name {
			t.Errorf("section %d is %q, expected %q", nStub+i, s.Name, w.name)
			continue
		}
		if s.VirtualSize != uint32(len(w.data)) {
			t.Errorf("%s: VirtualSize %d, expected %d", w.name, s.VirtualSize, len(w.data))
		}
		if s.Offset%opt.FileAlignment != 0 {
			t.Errorf("%s: file offset %#x not aligned to FileAlignment %#x", w.name, s.Offset, opt.FileAlignment)
		}
		if s.Size%opt.FileAlignment != 0 {
			t.Errorf("%s: raw size %#x not a multiple of FileAlignment %#x", w.name, s.Size, opt.FileAlignment)
		}
		if s.VirtualAddress%opt.SectionAlignment != 0 {
			t.Errorf("%s: virtual address %#x not aligned to SectionAlignment %#x", w.name, s.VirtualAddress, opt.SectionAlignment)
		}
		if s.VirtualAddress < stubVirtEnd {
			t.Errorf("%s: virtual address %#x lies inside the stub, which ends at %#x", w.name, s.VirtualAddress, stubVirtEnd)
		}
		if s.Characteristics != scnInitializedDataRead {
			t.Errorf("%s: characteristics %#x, expected %#x", w.name, s.Characteristics, scnInitializedDataRead)
		}
		data, err := s.Data()
		if err != nil {
			t.Errorf("%s: read data: %v", w.name, err)
			continue
		}
		if !bytes.Equal(data[:len(w.data)], w.data) {
			t.Errorf("%s: contents differ from the input", w.name)
		}
		if !bytes.Equal(data[len(w.data):], make([]byte, len(data)-len(w.data))) {
			t.Errorf("%s: padding after the contents is not zero", w.name)
		}
	}

	// No two sections overlap in the file or in memory.
	for i, a := range f.Sections {
		for _, b := range f.Sections[:i] {
			if a.Size > 0 && b.Size > 0 && a.Offset < b.Offset+b.Size && b.Offset < a.Offset+a.Size {
				t.Errorf("sections %s and %s overlap in the file", a.Name, b.Name)
			}
			aEnd := a.VirtualAddress + max(a.VirtualSize, 1)
			bEnd := b.VirtualAddress + max(b.VirtualSize, 1)
			if a.VirtualAddress < bEnd && b.VirtualAddress < aEnd {
				t.Errorf("sections %s and %s overlap in memory", a.Name, b.Name)
			}
		}
	}

	last := f.Sections[len(f.Sections)-1]
	wantImage := uint32(alignUp(int64(last.VirtualAddress+last.VirtualSize), int64(opt.SectionAlignment)))
	if opt.SizeOfImage != wantImage {
		t.Errorf("SizeOfImage %#x, expected %#x", opt.SizeOfImage, wantImage)
	}
	if int(last.Offset+last.Size) != len(uki) {
		t.Errorf("file is %d bytes, last section ends at %d", len(uki), last.Offset+last.Size)
	}
	if opt.SizeOfHeaders != stubOpt.SizeOfHeaders || opt.AddressOfEntryPoint != stubOpt.AddressOfEntryPoint {
		t.Errorf("SizeOfHeaders or entry point changed: %#x %#x, stub has %#x %#x",
			opt.SizeOfHeaders, opt.AddressOfEntryPoint, stubOpt.SizeOfHeaders, stubOpt.AddressOfEntryPoint)
	}

	check := bytes.Clone(uki)
	checksumOffset := binary.LittleEndian.Uint32(uki[0x3c:]) + peSignatureSize + coffHeaderSize + optCheckSum
	binary.LittleEndian.PutUint32(check[checksumOffset:], 0)
	if got := peChecksum(check); opt.CheckSum != got {
		t.Errorf("CheckSum %#x, computed %#x", opt.CheckSum, got)
	}
}

func TestAssembleUKIFakeStub(t *testing.T) {
	stub := fakeStub(t)
	payload := testPayload()
	uki, err := AssembleUKI(stub, payload)
	if err != nil {
		t.Fatalf("AssembleUKI: %v", err)
	}
	checkUKI(t, stub, uki, payload)
}

func TestAssembleUKIDebianStub(t *testing.T) {
	stub := debianStub(t)
	payload := testPayload()
	uki, err := AssembleUKI(stub, payload)
	if err != nil {
		t.Fatalf("AssembleUKI: %v", err)
	}
	checkUKI(t, stub, uki, payload)

	// The stub's own code and data are copied unchanged.
	f, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Sections {
		if !bytes.Equal(uki[s.Offset:s.Offset+s.Size], stub[s.Offset:s.Offset+s.Size]) {
			t.Errorf("stub section %s changed in the UKI", s.Name)
		}
	}
}

func TestAssembleUKIWithoutUname(t *testing.T) {
	payload := testPayload()
	payload.Uname = ""
	uki, err := AssembleUKI(fakeStub(t), payload)
	if err != nil {
		t.Fatalf("AssembleUKI: %v", err)
	}
	f, err := pe.NewFile(bytes.NewReader(uki))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Sections {
		if s.Name == ".uname" {
			t.Errorf("UKI has a .uname section although Uname is empty")
		}
	}
}

func TestPEChecksumMatchesDebianStub(t *testing.T) {
	stub := debianStub(t)
	f, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		t.Fatal(err)
	}
	want := f.OptionalHeader.(*pe.OptionalHeader64).CheckSum
	if want == 0 {
		t.Skip("stub has no checksum to compare with")
	}
	check := bytes.Clone(stub)
	offset := binary.LittleEndian.Uint32(stub[0x3c:]) + peSignatureSize + coffHeaderSize + optCheckSum
	binary.LittleEndian.PutUint32(check[offset:], 0)
	if got := peChecksum(check); got != want {
		t.Errorf("peChecksum %#x, the stub's CheckSum is %#x", got, want)
	}
}

func TestAssembleUKIRejectsSignedStub(t *testing.T) {
	stub := fakeStub(t)
	dd := binary.LittleEndian.Uint32(stub[0x3c:]) + peSignatureSize + coffHeaderSize + optDataDirectories + 8*dataDirectorySecurity
	binary.LittleEndian.PutUint32(stub[dd:], uint32(len(stub)))
	binary.LittleEndian.PutUint32(stub[dd+4:], 8)
	_, err := AssembleUKI(stub, testPayload())
	if err == nil || !strings.Contains(err.Error(), "signed") {
		t.Fatalf("AssembleUKI with a signed stub: error %v, expected one about the signature", err)
	}
}

func TestAssembleUKIRejectsFullHeader(t *testing.T) {
	stub := fakeStub(t)
	// Headers end at 0x200: the table (at 0x188) has room for two more
	// section headers, fewer than the five the UKI needs.
	opt := binary.LittleEndian.Uint32(stub[0x3c:]) + peSignatureSize + coffHeaderSize
	binary.LittleEndian.PutUint32(stub[opt+optSizeOfHeaders:], 0x200)
	_, err := AssembleUKI(stub, testPayload())
	if err == nil || !strings.Contains(err.Error(), "room for") {
		t.Fatalf("AssembleUKI with full headers: error %v, expected one about header room", err)
	}
}

func TestAssembleUKIRejectsDuplicateSection(t *testing.T) {
	stub := debianStub(t)
	uki, err := AssembleUKI(stub, testPayload())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AssembleUKI(uki, testPayload()); err == nil || !strings.Contains(err.Error(), "already has") {
		t.Fatalf("AssembleUKI on a UKI: error %v, expected one about an existing section", err)
	}
}

func TestAssembleUKIRejectsEmptyPayload(t *testing.T) {
	noKernel := testPayload()
	noKernel.Kernel = nil
	if _, err := AssembleUKI(fakeStub(t), noKernel); err == nil || !strings.Contains(err.Error(), "kernel is empty") {
		t.Errorf("AssembleUKI without a kernel: error %v, expected one saying the kernel is empty", err)
	}

	noInitrd := testPayload()
	noInitrd.Initrd = nil
	if _, err := AssembleUKI(fakeStub(t), noInitrd); err == nil || !strings.Contains(err.Error(), "initrd is empty") {
		t.Errorf("AssembleUKI without an initrd: error %v, expected one saying the initrd is empty", err)
	}
}

func TestAssembleUKIRejectsDataAfterSectionTable(t *testing.T) {
	stub := fakeStub(t)
	// One byte where the third new section header would go: the table
	// starts at 0x188 and holds one header.
	stub[0x188+3*sectionHeaderSize+5] = 0x01
	_, err := AssembleUKI(stub, testPayload())
	if err == nil || !strings.Contains(err.Error(), "where the new section headers go") {
		t.Fatalf("AssembleUKI with data after the section table: error %v, expected one about that data", err)
	}
}

func TestAssembleUKIRejectsTableBeyondFile(t *testing.T) {
	// A stub without sections, cut off at 0x1c0 although SizeOfHeaders
	// is 0x400. The five new section headers (0x188-0x24f) would end
	// past the file, where the appended section data starts.
	stub := fakeStub(t)[:0x1c0]
	numberOfSections := binary.LittleEndian.Uint32(stub[0x3c:]) + peSignatureSize + 2
	binary.LittleEndian.PutUint16(stub[numberOfSections:], 0)
	_, err := AssembleUKI(stub, testPayload())
	if err == nil || !strings.Contains(err.Error(), "room for") {
		t.Fatalf("AssembleUKI with a truncated header: error %v, expected one about header room", err)
	}
}

func TestWriteUKICompressesInitramfs(t *testing.T) {
	debianStub(t) // WriteUKI reads DefaultStub itself
	dir := t.TempDir()
	payload := testPayload()
	kernel, cpio := dir+"/vmlinuz", dir+"/initramfs.cpio"
	if err := os.WriteFile(kernel, payload.Kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cpio, payload.Initrd, 0o644); err != nil {
		t.Fatal(err)
	}

	out := dir + "/uki.efi"
	size, err := WriteUKI(out, UKIOptions{Kernel: kernel, Initramfs: cpio, Cmdline: "console=ttyS0", OSRelease: DefaultOSRelease})
	if err != nil {
		t.Fatalf("WriteUKI: %v", err)
	}
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != size {
		t.Errorf("WriteUKI returned size %d, file has %d", size, info.Size())
	}

	f, err := pe.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	initrd := f.Section(".initrd")
	if initrd == nil {
		t.Fatal("no .initrd section")
	}
	data, err := initrd.Data()
	if err != nil {
		t.Fatal(err)
	}
	// gzip streams start with 1f 8b.
	if data[0] != 0x1f || data[1] != 0x8b {
		t.Errorf(".initrd starts with % x, expected the gzip magic 1f 8b", data[:2])
	}
	if int(initrd.VirtualSize) >= len(payload.Initrd) {
		t.Errorf(".initrd is %d bytes, not smaller than the %d-byte cpio", initrd.VirtualSize, len(payload.Initrd))
	}
}

// FuzzAssembleUKI feeds stub images to AssembleUKI, which parses their PE
// headers. It must reject bad ones with an error, and what it builds must
// parse as PE with every payload section present and intact.
func FuzzAssembleUKI(f *testing.F) {
	f.Add(fakeStub(f))
	f.Add([]byte("MZ"))
	f.Add([]byte{})
	payload := UKI{Kernel: []byte("kernel"), Initrd: []byte("initrd"), Cmdline: "console=ttyS0", OSRelease: DefaultOSRelease}
	f.Fuzz(func(t *testing.T, stub []byte) {
		uki, err := AssembleUKI(stub, payload)
		if err != nil {
			return
		}
		file, err := pe.NewFile(bytes.NewReader(uki))
		if err != nil {
			t.Fatalf("AssembleUKI built an image debug/pe rejects: %v", err)
		}
		sections := map[string][]byte{
			".linux":   payload.Kernel,
			".initrd":  payload.Initrd,
			".cmdline": []byte(payload.Cmdline),
			".osrel":   []byte(payload.OSRelease),
		}
		for name, want := range sections {
			s := file.Section(name)
			if s == nil {
				t.Fatalf("AssembleUKI built an image without %s", name)
			}
			data, err := s.Data()
			if err != nil || !bytes.HasPrefix(data, want) {
				t.Fatalf("AssembleUKI built an image whose %s section does not contain the payload (read error %v)", name, err)
			}
		}
	})
}
