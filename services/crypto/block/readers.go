package block

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// AddReader returns the next version of encoded with a readcap for reader
// added, sealed and signed by w. The block key stays the same, so the new
// reader can also decrypt older versions sealed under it if it obtains them.
// The sector cipher stays the same too, with a new salt for AES256GCM.
//
// The writer opens the block with its own credential, so it must hold a
// readcap (ErrNoReadcap otherwise). The block must pass every check of Open
// for the root principal of its own path at the current time. The caller
// must pass the newest version it has: a block cannot tell that it is stale,
// and the result has version encoded's version + 1.
func AddReader(encoded []byte, w Writer, reader principal.Identity) ([]byte, error) {
	if reader.Signing.IsZero() || reader.Encryption == nil {
		return nil, errors.New("add reader: identity is missing a key")
	}
	added := reader.Principal()
	r, err := openForRewrite(encoded, w, "add reader "+added.String())
	if err != nil {
		return nil, err
	}

	readers := r.Readers()
	for _, existing := range readers {
		if existing.Principal() == added {
			return nil, fmt.Errorf("add reader %s to block %s version %d: %w", added, formatID(r.ID()), r.Version(), ErrDuplicateReader)
		}
	}
	key := r.Key()
	defer principal.Wipe(key)
	return reseal(r, w, Params{
		ID:       r.ID(),
		Version:  r.Version() + 1,
		Path:     r.Path(),
		Metadata: r.metadata,
		Key:      key,
		Readers:  append(readers, reader),
		Cipher:   r.header.Cipher,
	}, "add reader "+added.String())
}

// RemoveReader returns the next version of encoded without the readcap of
// removed, sealed and signed by w under a new block key. The key must change
// because the removed reader knew the old one: with the old key it could
// decrypt any later version sealed under it. Versions sealed before the
// removal stay readable to it, since it may have kept copies.
//
// The requirements on the writer and the version are those of AddReader.
// Removing a principal that holds no readcap gives ErrNoReadcap.
func RemoveReader(encoded []byte, w Writer, removed principal.Principal) ([]byte, error) {
	r, err := openForRewrite(encoded, w, "remove reader "+removed.String())
	if err != nil {
		return nil, err
	}

	var readers []principal.Identity
	found := false
	for _, reader := range r.Readers() {
		if reader.Principal() == removed {
			found = true
			continue
		}
		readers = append(readers, reader)
	}
	if !found {
		return nil, fmt.Errorf("remove reader %s from block %s version %d: %w", removed, formatID(r.ID()), r.Version(), ErrNoReadcap)
	}
	return reseal(r, w, Params{
		ID:       r.ID(),
		Version:  r.Version() + 1,
		Path:     r.Path(),
		Metadata: r.metadata,
		Key:      nil, // a new key, so that the removed reader cannot read on
		Readers:  readers,
		Cipher:   r.header.Cipher,
	}, "remove reader "+removed.String())
}

// openForRewrite opens encoded with the writer's credential.
func openForRewrite(encoded []byte, w Writer, operation string) (*Reader, error) {
	if w.Credential == nil {
		return nil, fmt.Errorf("%s: writer credential is missing", operation)
	}
	r, err := open(encoded, w.Credential, Expect{}, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", operation, err)
	}
	if r.Version() == math.MaxUint64 {
		return nil, fmt.Errorf("%s: block %s is at the last version %d", operation, formatID(r.ID()), r.Version())
	}
	return r, nil
}

// reseal seals the data of r as the block that p describes. It decrypts one
// present sector at a time, so a large sparse block keeps its holes and is
// never held in memory as a whole.
func reseal(r *Reader, w Writer, p Params, operation string) ([]byte, error) {
	plain := make([]byte, SectorSize)
	defer principal.Wipe(plain)
	var readErr error
	sectors := func(yield func(uint64, []byte) bool) {
		for _, run := range r.present.ranges {
			for i := run.First; i < run.First+run.Count; i++ {
				n, err := r.ReadAt(plain, int64(i)*SectorSize)
				if err != nil && err != io.EOF {
					readErr = err
					return
				}
				if !yield(i, plain[:n]) {
					return
				}
			}
		}
	}

	next, err := SealSparse(w, p, r.header.Size, sectors)
	if readErr != nil {
		// The sectors not read became holes, so the block is discarded.
		return nil, fmt.Errorf("%s: %w", operation, readErr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", operation, redactPath(err, r.Path()))
	}
	return next, nil
}
