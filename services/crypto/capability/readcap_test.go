package capability_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

func newBlockKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, capability.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("read random block key: %v", err)
	}
	return key
}

func blockID(name string) [32]byte { return sha256.Sum256([]byte(name)) }

func wrapKey(t testing.TB, id [32]byte, key []byte, reader *principal.Credential) *capability.Readcap {
	t.Helper()
	r, err := capability.WrapKey(id, key, reader.Identity())
	if err != nil {
		t.Fatalf("WrapKey: %v", err)
	}
	return r
}

func TestReadcapWrapUnwrap(t *testing.T) {
	reader := newCredential(t)
	key := newBlockKey(t)
	id := blockID("block 1")

	r := wrapKey(t, id, key, reader)
	if r.Reader != reader.Principal() {
		t.Errorf("Reader = %s, expected %s", r.Reader, reader.Principal())
	}

	got, err := r.Unwrap(id, reader)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, key) {
		t.Errorf("Unwrap = %x, expected the wrapped key %x", got, key)
	}
}

func TestReadcapWrapFresh(t *testing.T) {
	// Two wraps of one key use fresh ephemeral keys and nonces.
	reader := newCredential(t)
	key := newBlockKey(t)
	id := blockID("block 1")

	first := wrapKey(t, id, key, reader)
	second := wrapKey(t, id, key, reader)
	if bytes.Equal(first.Ephemeral, second.Ephemeral) {
		t.Errorf("two wraps share the ephemeral key %x", first.Ephemeral)
	}
	if bytes.Equal(first.Nonce, second.Nonce) {
		t.Errorf("two wraps share the nonce %x", first.Nonce)
	}

	for name, r := range map[string]*capability.Readcap{"first": first, "second": second} {
		got, err := r.Unwrap(id, reader)
		if err != nil {
			t.Errorf("Unwrap of the %s wrap: %v", name, err)
			continue
		}
		if !bytes.Equal(got, key) {
			t.Errorf("Unwrap of the %s wrap = %x, expected %x", name, got, key)
		}
	}
}

func TestReadcapParsedIdentity(t *testing.T) {
	// A reader's identity usually arrives encoded, so wrap for a parsed one.
	reader := newCredential(t)
	encoded, err := reader.Identity().MarshalBinary()
	if err != nil {
		t.Fatalf("Identity.MarshalBinary: %v", err)
	}
	identity, err := principal.ParseIdentity(encoded)
	if err != nil {
		t.Fatalf("ParseIdentity: %v", err)
	}
	key := newBlockKey(t)
	id := blockID("block 1")

	r, err := capability.WrapKey(id, key, identity)
	if err != nil {
		t.Fatalf("WrapKey: %v", err)
	}
	got, err := r.Unwrap(id, reader)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, key) {
		t.Errorf("Unwrap = %x, expected %x", got, key)
	}
}

func TestReadcapOtherReader(t *testing.T) {
	reader := newCredential(t)
	other := newCredential(t)
	id := blockID("block 1")
	r := wrapKey(t, id, newBlockKey(t), reader)

	got, err := r.Unwrap(id, other)
	if !errors.Is(err, capability.ErrUnwrap) {
		t.Errorf("Unwrap with another reader's credential: error %v, expected ErrUnwrap", err)
	}
	if got != nil {
		t.Errorf("Unwrap with another reader's credential returned key %x, expected nil", got)
	}
}

func TestReadcapReaderRewritten(t *testing.T) {
	// Naming another reader in the readcap does not let that reader open it,
	// because the wrapping key comes from the first reader's encryption key.
	reader := newCredential(t)
	other := newCredential(t)
	id := blockID("block 1")
	r := wrapKey(t, id, newBlockKey(t), reader)
	r.Reader = other.Principal()

	_, err := r.Unwrap(id, other)
	if !errors.Is(err, capability.ErrUnwrap) {
		t.Errorf("Unwrap by the reader written into Reader: error %v, expected ErrUnwrap", err)
	}
}

func TestReadcapOtherBlock(t *testing.T) {
	reader := newCredential(t)
	r := wrapKey(t, blockID("block 1"), newBlockKey(t), reader)

	got, err := r.Unwrap(blockID("block 2"), reader)
	if !errors.Is(err, capability.ErrUnwrap) {
		t.Errorf("Unwrap for another block id: error %v, expected ErrUnwrap", err)
	}
	if got != nil {
		t.Errorf("Unwrap for another block id returned key %x, expected nil", got)
	}
}

func TestReadcapEveryBitFlip(t *testing.T) {
	reader := newCredential(t)
	id := blockID("block 1")
	data := marshal(t, wrapKey(t, id, newBlockKey(t), reader))

	for bit := range 8 * len(data) {
		changed := bytes.Clone(data)
		changed[bit/8] ^= 1 << (bit % 8)

		r, err := capability.ParseReadcap(changed)
		if err != nil {
			continue // the change hit the header, which ParseReadcap checks
		}
		key, err := r.Unwrap(id, reader)
		if err == nil {
			t.Errorf("bit %d (byte %d) flipped: Unwrap succeeded with key %x, expected a failure", bit, bit/8, key)
			continue
		}
		if !errors.Is(err, capability.ErrUnwrap) {
			t.Errorf("bit %d (byte %d) flipped: Unwrap error %v, expected ErrUnwrap", bit, bit/8, err)
		}
	}
}

func TestReadcapHeaderBitFlipFailsParse(t *testing.T) {
	data := marshal(t, wrapKey(t, blockID("block 1"), newBlockKey(t), newCredential(t)))

	for bit := range 8 * wire.HeaderSize {
		changed := bytes.Clone(data)
		changed[bit/8] ^= 1 << (bit % 8)

		if _, err := capability.ParseReadcap(changed); err == nil {
			t.Errorf("header bit %d flipped: ParseReadcap = nil error, expected a rejection", bit)
		}
	}
}

func TestReadcapRoundTrip(t *testing.T) {
	reader := newCredential(t)
	key := newBlockKey(t)
	id := blockID("block 1")
	r := wrapKey(t, id, key, reader)
	data := marshal(t, r)

	if len(data) != capability.MaxReadcapSize {
		t.Errorf("encoding is %d bytes, expected MaxReadcapSize %d", len(data), capability.MaxReadcapSize)
	}

	parsed, err := capability.ParseReadcap(data)
	if err != nil {
		t.Fatalf("ParseReadcap: %v", err)
	}
	if parsed.Reader != r.Reader {
		t.Errorf("parsed Reader = %s, expected %s", parsed.Reader, r.Reader)
	}
	if !bytes.Equal(parsed.Ephemeral, r.Ephemeral) {
		t.Errorf("parsed Ephemeral = %x, expected %x", parsed.Ephemeral, r.Ephemeral)
	}
	if !bytes.Equal(parsed.Nonce, r.Nonce) {
		t.Errorf("parsed Nonce = %x, expected %x", parsed.Nonce, r.Nonce)
	}
	if !bytes.Equal(parsed.Wrapped, r.Wrapped) {
		t.Errorf("parsed Wrapped = %x, expected %x", parsed.Wrapped, r.Wrapped)
	}
	if again := marshal(t, parsed); !bytes.Equal(again, data) {
		t.Errorf("re-encoding = %x, expected the original %x", again, data)
	}

	got, err := parsed.Unwrap(id, reader)
	if err != nil {
		t.Fatalf("Unwrap of the parsed readcap: %v", err)
	}
	if !bytes.Equal(got, key) {
		t.Errorf("Unwrap of the parsed readcap = %x, expected %x", got, key)
	}
}

func TestParseReadcapCopiesInput(t *testing.T) {
	data := marshal(t, wrapKey(t, blockID("block 1"), newBlockKey(t), newCredential(t)))
	parsed, err := capability.ParseReadcap(data)
	if err != nil {
		t.Fatalf("ParseReadcap: %v", err)
	}
	want := marshal(t, parsed)

	clear(data)
	if got := marshal(t, parsed); !bytes.Equal(got, want) {
		t.Errorf("parsed readcap changed when its input was cleared: %x, expected %x", got, want)
	}
}

func TestParseReadcapRejects(t *testing.T) {
	valid := marshal(t, wrapKey(t, blockID("block 1"), newBlockKey(t), newCredential(t)))

	wrongKind := bytes.Clone(valid)
	wrongKind[1] = byte(wire.KindWritecap)
	unknownVersion := bytes.Clone(valid)
	unknownVersion[2] = 2

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"trailingByte", append(bytes.Clone(valid), 0), wire.ErrTrailing},
		{"wrongKind", wrongKind, wire.ErrWrongKind},
		{"unknownVersion", unknownVersion, wire.ErrUnknownVersion},
		{"empty", nil, wire.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := capability.ParseReadcap(tt.data)
			if !errors.Is(err, tt.want) {
				t.Errorf("ParseReadcap = (%+v, %v), expected an error wrapping %v", r, err, tt.want)
			}
		})
	}
}

func TestParseReadcapTruncated(t *testing.T) {
	data := marshal(t, wrapKey(t, blockID("block 1"), newBlockKey(t), newCredential(t)))

	for cut := range len(data) {
		_, err := capability.ParseReadcap(data[:cut])
		if !errors.Is(err, wire.ErrTruncated) {
			t.Errorf("ParseReadcap of the first %d of %d bytes: error %v, expected ErrTruncated", cut, len(data), err)
		}
	}
}

func TestWrapKeyWrongSize(t *testing.T) {
	reader := newCredential(t)

	for _, n := range []int{0, capability.KeySize - 1, capability.KeySize + 1} {
		if _, err := capability.WrapKey(blockID("block 1"), make([]byte, n), reader.Identity()); err == nil {
			t.Errorf("WrapKey of a %d-byte key = nil error, expected a rejection", n)
		}
	}
}

func TestReadcapMarshalMalformed(t *testing.T) {
	valid := wrapKey(t, blockID("block 1"), newBlockKey(t), newCredential(t))

	shortEphemeral := *valid
	shortEphemeral.Ephemeral = valid.Ephemeral[:len(valid.Ephemeral)-1]
	shortNonce := *valid
	shortNonce.Nonce = valid.Nonce[:len(valid.Nonce)-1]
	longWrapped := *valid
	longWrapped.Wrapped = append(bytes.Clone(valid.Wrapped), 0)

	tests := map[string]*capability.Readcap{
		"zero":           {},
		"shortEphemeral": &shortEphemeral,
		"shortNonce":     &shortNonce,
		"longWrapped":    &longWrapped,
	}
	for name, r := range tests {
		if _, err := r.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary of readcap %s = nil error, expected a rejection", name)
		}
	}
}

func FuzzParseReadcap(f *testing.F) {
	valid := marshal(f, wrapKey(f, blockID("block 1"), newBlockKey(f), newCredential(f)))
	f.Add(valid)
	f.Add(make([]byte, capability.MaxReadcapSize))
	f.Add(valid[:len(valid)-1])
	f.Add(append(bytes.Clone(valid), 0))
	f.Add([]byte{0x00, 0x02, 0x02})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := capability.ParseReadcap(data)
		if err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted readcap %x does not encode: %v", data, err)
		}
		if !bytes.Equal(again, data) {
			t.Errorf("accepted readcap %x re-encodes as %x", data, again)
		}
	})
}
