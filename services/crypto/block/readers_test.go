package block

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
)

func TestOpenWithoutReadcap(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))

	_, err := Open(encoded, f.carol, f.expect(1))
	if !errors.Is(err, ErrNoReadcap) {
		t.Fatalf("Open as Carol, who is not a reader: %v, expected ErrNoReadcap", err)
	}
	if !strings.Contains(err.Error(), f.carol.Principal().String()) {
		t.Errorf("error %q does not name the reader %s", err, f.carol.Principal())
	}
}

func TestRemoveReader(t *testing.T) {
	f := newFixture(t)
	data := testData(2*SectorSize + 7)
	older := f.seal(f.params(3), data)
	oldKey := f.open(older, f.alice, 3).Key()

	newer, err := RemoveReader(older, f.sealer(), f.bob.Principal())
	if err != nil {
		t.Fatalf("RemoveReader: %v", err)
	}

	if _, err := Open(newer, f.bob, f.expect(4)); !errors.Is(err, ErrNoReadcap) {
		t.Errorf("Open of the new version as the removed Bob: %v, expected ErrNoReadcap", err)
	}

	r := f.open(newer, f.alice, 4)
	if r.Version() != 4 {
		t.Errorf("Version = %d, expected 4", r.Version())
	}
	if bytes.Equal(r.Key(), oldKey) {
		t.Error("RemoveReader kept the block key, which the removed reader knows")
	}
	got, err := r.Bytes()
	if err != nil {
		t.Fatalf("Bytes: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the new version's data differs from the old")
	}
	if r.Path() != f.params(3).Path || !bytes.Equal(r.Metadata(), f.params(3).Metadata) {
		t.Error("the new version's path or metadata differ from the old")
	}
	for _, reader := range r.Readers() {
		if reader.Principal() == f.bob.Principal() {
			t.Error("Readers still lists Bob")
		}
	}
	if got := len(r.Readers()); got != 2 {
		t.Errorf("Readers has %d entries, expected 2", got)
	}

	// Versions sealed before the removal stay readable to Bob.
	if _, err := Open(older, f.bob, f.expect(3)); err != nil {
		t.Errorf("Open of the old version as Bob: %v", err)
	}
}

func TestRemoveReaderNotPresent(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))

	_, err := RemoveReader(encoded, f.sealer(), f.carol.Principal())
	if !errors.Is(err, ErrNoReadcap) {
		t.Errorf("RemoveReader of Carol, who is not a reader: %v, expected ErrNoReadcap", err)
	}
}

func TestRemoveLastReader(t *testing.T) {
	f := newFixture(t)
	p := f.params(1)
	p.Readers = p.Readers[:1] // the writer only
	encoded := f.seal(p, testData(10))

	if _, err := RemoveReader(encoded, f.sealer(), f.writer.Principal()); err == nil {
		t.Error("RemoveReader of the only reader succeeded, leaving a block nobody can open")
	}
}

func TestAddReader(t *testing.T) {
	f := newFixture(t)
	data := testData(SectorSize + 1)
	older := f.seal(f.params(8), data)
	oldKey := f.open(older, f.alice, 8).Key()

	if _, err := Open(older, f.carol, f.expect(8)); !errors.Is(err, ErrNoReadcap) {
		t.Fatalf("Open as Carol before AddReader: %v, expected ErrNoReadcap", err)
	}
	newer, err := AddReader(older, f.sealer(), f.carol.Identity())
	if err != nil {
		t.Fatalf("AddReader: %v", err)
	}

	r := f.open(newer, f.carol, 9)
	got, err := r.Bytes()
	if err != nil {
		t.Fatalf("Bytes as Carol: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Error("Carol read data that differs from the sealed data")
	}
	if r.Version() != 9 {
		t.Errorf("Version = %d, expected 9", r.Version())
	}
	if !bytes.Equal(r.Key(), oldKey) {
		t.Error("AddReader changed the block key")
	}
	if got := len(r.Readers()); got != 4 {
		t.Errorf("Readers has %d entries, expected 4", got)
	}
	if _, err := Open(newer, f.alice, f.expect(9)); err != nil {
		t.Errorf("Open as Alice after AddReader: %v", err)
	}
	if _, err := Open(newer, f.bob, f.expect(9)); err != nil {
		t.Errorf("Open as Bob after AddReader: %v", err)
	}
}

func TestAddReaderAlreadyPresent(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))

	_, err := AddReader(encoded, f.sealer(), f.alice.Identity())
	if !errors.Is(err, ErrDuplicateReader) {
		t.Errorf("AddReader of Alice, who is a reader: %v, expected a duplicate-reader error", err)
	}
}

func TestAddReaderWriterWithoutReadcap(t *testing.T) {
	f := newFixture(t)
	p := f.params(1)
	p.Readers = p.Readers[1:] // Alice and Bob, not the writer
	encoded := f.seal(p, testData(10))

	_, err := AddReader(encoded, f.sealer(), f.carol.Identity())
	if !errors.Is(err, ErrNoReadcap) {
		t.Errorf("AddReader by a writer without a readcap: %v, expected ErrNoReadcap", err)
	}
}

func TestAddReaderByWriterOutOfScope(t *testing.T) {
	f := newFixture(t)
	other := newCredential(t)
	grant, err := capability.Issue(f.root.Signing, other.Principal(), f.path("/srv"), time.Now().Add(-time.Hour), f.grantExpires)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	p := f.params(1)
	p.Readers = append(p.Readers, other.Identity())
	encoded := f.seal(p, testData(10))

	_, err = AddReader(encoded, Writer{Credential: other, Chain: capability.Chain{grant}}, f.carol.Identity())
	if !errors.Is(err, capability.ErrOutOfScope) {
		t.Fatalf("AddReader by a writer granted only /srv: %v, expected capability.ErrOutOfScope", err)
	}
	if strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("AddReader error %q contains the sealed path", err)
	}
}

func TestAddReaderRejectsDamagedBlock(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(SectorSize+1))
	start, _ := sealedSector(t, encoded, 1)
	encoded[start] ^= 1

	_, err := AddReader(encoded, f.sealer(), f.carol.Identity())
	requireIntegrityError(t, err, ptr(1))
}

func TestOpenRejectsWriterOutOfScope(t *testing.T) {
	f := newFixture(t)
	p := f.params(1)
	p.Path = f.path("/etc/passwd") // the writer's grant covers only /home

	// Seal checks the chain, so build the block as a writer that skips the
	// check would.
	encoded, err := seal(nil, f.sealer(), p, testData(10))
	if err != nil {
		t.Fatalf("seal: %v", err)
	}

	_, err = Open(encoded, f.alice, f.expect(1))
	if !errors.Is(err, capability.ErrOutOfScope) {
		t.Fatalf("Open: %v, expected capability.ErrOutOfScope", err)
	}
	var chainErr *capability.ChainError
	if !errors.As(err, &chainErr) {
		t.Errorf("Open error %v does not contain a *capability.ChainError", err)
	}
	if strings.Contains(err.Error(), "/etc/passwd") {
		t.Errorf("Open error %q contains the sealed path", err)
	}

	// Without the path, Verify can only check the chain itself, so it
	// accepts the block.
	if _, err := Verify(encoded, f.root.Principal(), time.Now()); err != nil {
		t.Errorf("Verify: %v, expected nil because the path is sealed", err)
	}
}

func TestOpenRejectsExpiredChain(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))

	expect := f.expect(1)
	expect.Now = f.grantExpires.Add(time.Minute)
	_, err := Open(encoded, f.alice, expect)
	if !errors.Is(err, capability.ErrExpired) {
		t.Errorf("Open after the grant expired: %v, expected capability.ErrExpired", err)
	}
	_, err = Verify(encoded, f.root.Principal(), expect.Now)
	if !errors.Is(err, capability.ErrExpired) {
		t.Errorf("Verify after the grant expired: %v, expected capability.ErrExpired", err)
	}

	expect.Now = f.grantExpires.Add(-time.Minute)
	if _, err := Open(encoded, f.alice, expect); err != nil {
		t.Errorf("Open a minute before the grant expires: %v", err)
	}
}

func TestOpenRejectsOtherRoot(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))
	other := newCredential(t).Principal()

	expect := f.expect(1)
	expect.Root = other
	if _, err := Open(encoded, f.alice, expect); !errors.Is(err, capability.ErrOutOfScope) {
		t.Errorf("Open for another tree's root: %v, expected capability.ErrOutOfScope", err)
	}
	if _, err := Verify(encoded, other, time.Now()); !errors.Is(err, capability.ErrOutOfScope) {
		t.Errorf("Verify for another tree's root: %v, expected capability.ErrOutOfScope", err)
	}
}

func TestOpenRejectsMissingExpectations(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))

	if _, err := Open(encoded, nil, f.expect(1)); err == nil {
		t.Error("Open without a credential succeeded")
	}
	expect := f.expect(1)
	expect.Root = [32]byte{}
	if _, err := Open(encoded, f.alice, expect); err == nil {
		t.Error("Open without a root principal succeeded")
	}
	if _, err := Verify(encoded, [32]byte{}, time.Now()); err == nil {
		t.Error("Verify without a root principal succeeded")
	}
}
