package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// TestCiphersMixInOneJournal appends records with XChaCha20-Poly1305, then
// with AES-256-GCM after a reopen, then with XChaCha20-Poly1305 again, as a
// journal whose directory moved between machines would, and checks that
// Replay and Check read every record.
func TestCiphersMixInOneJournal(t *testing.T) {
	e := newEnv(t)
	for i, choice := range []byte{cipherXChaCha, cipherAESGCM, cipherXChaCha} {
		opts := e.options(0)
		opts.cipher = choice
		l := e.openWith(opts)
		appendSynced(t, l, 5)
		records, err := replay(l, 1)
		if err != nil {
			t.Fatalf("pass %d: Replay: %v", i, err)
		}
		checkRecords(t, records, 1, uint64(5*(i+1)))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	problems, err := Check(e.options(0))
	if err != nil || len(problems) != 0 {
		t.Fatalf("Check = %v, %v; expected no problems", problems, err)
	}

	path := segmentPaths(t, e.dir)[0]
	offsets, _ := recordOffsets(t, path)
	data := readFile(t, path)
	for i, offset := range offsets {
		want := cipherXChaCha
		if i >= 5 && i < 10 {
			want = cipherAESGCM
		}
		if got := data[payloadOffset(offset)-nonceSize-cipherSize]; got != want {
			t.Errorf("record %d has cipher byte %d, expected %d", i+1, got, want)
		}
	}
}

// TestAESNoncesNeverRepeat opens a journal twice with AES-256-GCM and checks
// that each Open draws its own epoch and counts its nonces from 1, so that
// records that reuse seqs after a reopen never share a key and a nonce.
func TestAESNoncesNeverRepeat(t *testing.T) {
	e := newEnv(t)
	opts := e.options(0)
	opts.cipher = cipherAESGCM
	seen := map[[nonceSize]byte]bool{}
	epochs := map[[epochSize]byte]bool{}
	for pass := range 2 {
		l := e.openWith(opts)
		appendSynced(t, l, 3)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		path := segmentPaths(t, e.dir)[0]
		offsets, _ := recordOffsets(t, path)
		data := readFile(t, path)
		for i, offset := range offsets[3*pass:] {
			start := payloadOffset(offset) - nonceSize
			nonce := [nonceSize]byte(data[start : start+nonceSize])
			if seen[nonce] {
				t.Errorf("record %d repeats the nonce field %x", 3*pass+i+1, nonce)
			}
			seen[nonce] = true
			epochs[[epochSize]byte(nonce[:epochSize])] = true
			if counter := binary.BigEndian.Uint64(nonce[nonceSize-8:]); counter != uint64(i+1) {
				t.Errorf("record %d has counter %d, expected %d", 3*pass+i+1, counter, i+1)
			}
		}
	}
	if len(epochs) != 2 {
		t.Errorf("two Opens used %d epochs, expected 2", len(epochs))
	}
}

// TestChangedCipherByteRejected changes the cipher byte of a record's body
// and checks that the codec rejects the body with ErrDecrypt, for the other
// cipher and for an unknown one. The seal would already reject the record.
func TestChangedCipherByteRejected(t *testing.T) {
	for _, choice := range []byte{cipherXChaCha, cipherAESGCM} {
		e := newEnv(t)
		opts := e.options(0)
		opts.cipher = choice
		l := e.openWith(opts)
		appendSynced(t, l, 1)
		c := l.codec
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		path := segmentPaths(t, e.dir)[0]
		offsets, _ := recordOffsets(t, path)
		data := readFile(t, path)
		h, err := parseRecordHeader(data[offsets[0] : offsets[0]+recordPrefixSize+int64(headerSize(2))])
		if err != nil {
			t.Fatal(err)
		}
		bodyStart := payloadOffset(offsets[0]) - nonceSize - cipherSize - crcSize
		body := bytes.Clone(data[bodyStart : offsets[0]+h.length])
		if _, err := c.open(h, body); err != nil {
			t.Fatalf("cipher %d: unchanged record: %v", choice, err)
		}
		for _, other := range []byte{cipherXChaCha ^ cipherAESGCM ^ choice, 7} {
			changed := bytes.Clone(body)
			changed[crcSize] = other
			if _, err := c.open(h, changed); !errors.Is(err, ErrDecrypt) {
				t.Errorf("cipher %d record with cipher byte %d: open error %v, expected ErrDecrypt", choice, other, err)
			}
		}
	}
}
