package storaged

import (
	"bytes"
	"errors"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

func testCheckpoint() *Checkpoint {
	return &Checkpoint{
		Seq:     42,
		Counter: 7,
		Engine:  []byte("engine header"),
		Inodes: []InodeVersion{
			{Ino: 1, BlockID: [32]byte{1}, Version: 3},
			{Ino: 5, BlockID: [32]byte{5}, Version: 1},
		},
		Damaged: []DamagedVersion{
			{Ino: 3, BlockID: [32]byte{3}, Version: 2, Reason: "sector 0 does not match its leaf"},
			{Ino: 9, BlockID: [32]byte{9}, Reason: "journal record 12 is damaged"},
		},
	}
}

func TestCheckpointSealOpen(t *testing.T) {
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	sealed, err := sealCheckpoint(testCheckpoint(), key, cred.Principal(), cred)
	if err != nil {
		t.Fatalf("sealCheckpoint: %v", err)
	}
	if bytes.Contains(sealed, []byte("engine header")) {
		t.Error("sealed checkpoint contains its body in the clear")
	}
	got, err := openCheckpoint(sealed, key, cred.Principal(), cred.Signing.Public())
	if err != nil {
		t.Fatalf("openCheckpoint: %v", err)
	}
	if !bytes.Equal(got.marshalBody(), testCheckpoint().marshalBody()) {
		t.Errorf("opened checkpoint differs: %+v", got)
	}

	for i := range sealed {
		damaged := append([]byte(nil), sealed...)
		damaged[i] ^= 0x10
		if _, err := openCheckpoint(damaged, key, cred.Principal(), cred.Signing.Public()); err == nil {
			t.Fatalf("byte %d flipped: checkpoint still opened", i)
		}
	}

	other, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openCheckpoint(sealed, key, cred.Principal(), other.Signing.Public()); !errors.Is(err, principal.ErrBadSignature) {
		t.Errorf("checkpoint of another node: %v, expected ErrBadSignature", err)
	}
}

func TestCheckpointBodyRejectsUnordered(t *testing.T) {
	c := testCheckpoint()
	c.Inodes[0], c.Inodes[1] = c.Inodes[1], c.Inodes[0]
	if _, err := parseCheckpointBody(c.marshalBody()); err == nil {
		t.Error("checkpoint with inodes out of order parsed")
	}
}

func FuzzParseCheckpointBody(f *testing.F) {
	f.Add(testCheckpoint().marshalBody())
	f.Add((&Checkpoint{}).marshalBody())
	f.Add([]byte{0x05, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseCheckpointBody(data)
		if err != nil {
			return
		}
		if !bytes.Equal(c.marshalBody(), data) {
			t.Fatal("accepted checkpoint body does not re-encode to the same bytes")
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	cred, _ := principal.GenerateCredential()
	key := make([]byte, 32)
	sealed, _ := sealCheckpoint(testCheckpoint(), key, cred.Principal(), cred)
	f.Add(sealed)
	f.Add(sealed[:len(sealed)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		openCheckpoint(data, key, cred.Principal(), cred.Signing.Public())
	})
}
