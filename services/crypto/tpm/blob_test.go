package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/google/go-tpm/tpm2"
)

// testdata/sealed-*.bin are blobs that Seal returned on swtpm 0.7.1: a
// 32-byte secret on PCR 7, a 1-byte secret on PCRs 0, 7 and 11, and a
// 128-byte secret on all 24 PCRs.
func readBlobFiles(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/sealed-*.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no testdata/sealed-*.bin files")
	}
	files := make(map[string][]byte, len(paths))
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(path)] = data
	}
	return files
}

func readBlobFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// encodeUnchecked encodes b like MarshalBinary but without validation, with
// the given header, so tests can build invalid encodings.
func encodeUnchecked(b *SealedBlob, kind wire.Kind, version uint8) []byte {
	e := wire.NewEncoder(kind, version)
	e.Bytes(b.SRKName)
	e.Uint32(uint32(len(b.PCRs)))
	for i, pcr := range b.PCRs {
		e.Uint8(uint8(pcr))
		e.Bytes(b.PCRDigests[i])
	}
	e.Bytes(b.Public)
	e.Bytes(b.Private)
	return e.Data()
}

func cloneBlob(b *SealedBlob) *SealedBlob {
	c := &SealedBlob{
		SRKName: bytes.Clone(b.SRKName),
		PCRs:    slices.Clone(b.PCRs),
		Public:  bytes.Clone(b.Public),
		Private: bytes.Clone(b.Private),
	}
	for _, digest := range b.PCRDigests {
		c.PCRDigests = append(c.PCRDigests, bytes.Clone(digest))
	}
	return c
}

func TestBlobRoundTrip(t *testing.T) {
	for name, data := range readBlobFiles(t) {
		t.Run(name, func(t *testing.T) {
			blob := unmarshalBlob(t, data)
			if !bytes.Equal(marshalBlob(t, blob), data) {
				t.Error("MarshalBinary of the decoded blob differs from the input")
			}
		})
	}

	blob := unmarshalBlob(t, readBlobFile(t, "sealed-pcr0-7-11.bin"))
	if !slices.Equal(blob.PCRs, []int{0, 7, 11}) {
		t.Errorf("PCRs = %v, want [0 7 11]", blob.PCRs)
	}
	if len(blob.SRKName) != srkNameSize {
		t.Errorf("SRK name has %d bytes, want %d", len(blob.SRKName), srkNameSize)
	}
}

func TestUnmarshalCopiesInput(t *testing.T) {
	data := readBlobFile(t, "sealed-pcr7.bin")
	blob := unmarshalBlob(t, data)
	want := marshalBlob(t, blob)

	clear(data)
	if !bytes.Equal(marshalBlob(t, blob), want) {
		t.Error("decoded blob changed when the input buffer was overwritten")
	}
}

func TestUnmarshalRejectsInvalidEncoding(t *testing.T) {
	valid := readBlobFile(t, "sealed-pcr0-7-11.bin")
	base := unmarshalBlob(t, valid)

	modified := func(change func(b *SealedBlob)) []byte {
		b := cloneBlob(base)
		change(b)
		return encodeUnchecked(b, wire.KindSealedBlob, blobVersion)
	}
	// lengthAt overwrites the 32-bit length prefix at offset.
	lengthAt := func(offset int, length uint32) []byte {
		data := bytes.Clone(valid)
		binary.BigEndian.PutUint32(data[offset:], length)
		return data
	}
	const (
		srkNameOffset  = wire.HeaderSize
		pcrCountOffset = srkNameOffset + 4 + srkNameSize
	)
	publicOffset := pcrCountOffset + 4 + 3*(1+4+32)

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, wire.ErrTruncated},
		{"truncated", valid[:len(valid)-1], wire.ErrTruncated},
		{"trailing byte", append(bytes.Clone(valid), 0), wire.ErrTrailing},
		{"version 2", encodeUnchecked(base, wire.KindSealedBlob, 2), wire.ErrUnknownVersion},
		{"version 0", encodeUnchecked(base, wire.KindSealedBlob, 0), wire.ErrUnknownVersion},
		{"other kind", encodeUnchecked(base, wire.KindWrappedSecret, blobVersion), wire.ErrWrongKind},
		{"oversized SRK name length", lengthAt(srkNameOffset, srkNameSize+1), wire.ErrTooLong},
		{"huge SRK name length", lengthAt(srkNameOffset, 0xffffffff), wire.ErrTooLong},
		{"PCR count 25", lengthAt(pcrCountOffset, pcrCount+1), wire.ErrTooLong},
		{"oversized digest length", lengthAt(pcrCountOffset+4+1, 33), wire.ErrTooLong},
		{"oversized public length", lengthAt(publicOffset, maxPublicSize+1), wire.ErrTooLong},
		{"short SRK name", modified(func(b *SealedBlob) { b.SRKName = b.SRKName[:33] }), wire.ErrInvalid},
		{"SRK name not SHA-256", modified(func(b *SealedBlob) { b.SRKName[1] = 0x0c }), wire.ErrInvalid},
		{"no PCRs", modified(func(b *SealedBlob) { b.PCRs, b.PCRDigests = nil, nil }), wire.ErrInvalid},
		{"PCR 24", modified(func(b *SealedBlob) { b.PCRs[2] = 24 }), wire.ErrInvalid},
		{"repeated PCR", modified(func(b *SealedBlob) { b.PCRs[1] = 0 }), wire.ErrInvalid},
		{"unsorted PCRs", modified(func(b *SealedBlob) { b.PCRs[0], b.PCRs[1] = 7, 0 }), wire.ErrInvalid},
		{"short digest", modified(func(b *SealedBlob) { b.PCRDigests[1] = b.PCRDigests[1][:31] }), wire.ErrInvalid},
		{"altered PCR value", modified(func(b *SealedBlob) { b.PCRDigests[1][0] ^= 1 }), wire.ErrInvalid},
		{"public of ECC key", modified(func(b *SealedBlob) { b.Public = tpm2.Marshal(tpm2.New2B(srkTemplate)) }), wire.ErrInvalid},
		{"public with userWithAuth", modified(func(b *SealedBlob) { b.Public[2+7] |= 1 << 6 }), wire.ErrInvalid},
		{"public with trailing byte", modified(func(b *SealedBlob) {
			b.Public = append(b.Public, 0)
			binary.BigEndian.PutUint16(b.Public, uint16(len(b.Public)-2))
		}), wire.ErrInvalid},
		{"public size prefix wrong", modified(func(b *SealedBlob) { b.Public[1]++ }), wire.ErrInvalid},
		{"private size prefix wrong", modified(func(b *SealedBlob) { b.Private[1]-- }), wire.ErrInvalid},
		{"empty private", modified(func(b *SealedBlob) { b.Private = []byte{0, 0} }), wire.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, err := UnmarshalSealedBlob(tt.data)
			if err == nil {
				t.Fatalf("UnmarshalSealedBlob accepted the input, PCRs %v", blob.PCRs)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalRejectsInvalidBlob(t *testing.T) {
	base := unmarshalBlob(t, readBlobFile(t, "sealed-pcr0-7-11.bin"))

	var nilBlob *SealedBlob
	if _, err := nilBlob.MarshalBinary(); err == nil {
		t.Error("MarshalBinary of a nil blob succeeded")
	}

	missingDigest := cloneBlob(base)
	missingDigest.PCRDigests = missingDigest.PCRDigests[:2]
	if _, err := missingDigest.MarshalBinary(); err == nil {
		t.Error("MarshalBinary with 2 digests for 3 PCRs succeeded")
	}

	unsorted := cloneBlob(base)
	unsorted.PCRs[0], unsorted.PCRs[1] = 7, 0
	if _, err := unsorted.MarshalBinary(); err == nil {
		t.Error("MarshalBinary with unsorted PCRs succeeded")
	}
}

func TestUnsealBlobFromOtherTPM(t *testing.T) {
	tpm := newDevice(t).open()
	// PCR 7 is zero on every freshly started swtpm, so only the SRK differs.
	blob := unmarshalBlob(t, readBlobFile(t, "sealed-pcr7.bin"))

	_, err := tpm.Unseal(blob)
	if !errors.Is(err, ErrSRKChanged) {
		t.Fatalf("Unseal of a blob from another TPM: error = %v, want ErrSRKChanged", err)
	}
}

func FuzzUnmarshalSealedBlob(f *testing.F) {
	for _, data := range readBlobFiles(f) {
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(append(bytes.Clone(data), 0))
		corrupted := bytes.Clone(data)
		corrupted[len(corrupted)/2] ^= 0xff
		f.Add(corrupted)
	}
	// The public area of an ECC key, with a unique field of the ECC type,
	// once made checkPublicArea panic inside go-tpm's marshalling.
	otherType := unmarshalBlob(f, readBlobFile(f, "sealed-pcr7.bin"))
	otherType.Public = tpm2.Marshal(tpm2.New2B(srkTemplate))
	f.Add(encodeUnchecked(otherType, wire.KindSealedBlob, blobVersion))
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x04, 0x01})
	f.Add([]byte{0x00, 0x04, 0x01, 0xff, 0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		blob, err := UnmarshalSealedBlob(data)
		if err != nil {
			return
		}
		encoded, err := blob.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of an accepted blob: %v", err)
		}
		if !bytes.Equal(encoded, data) {
			t.Fatalf("round trip changed the encoding:\n in  %x\n out %x", data, encoded)
		}
	})
}
