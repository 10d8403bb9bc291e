package fsys

import (
	"bytes"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// seedEngine runs a fixed workload, whose journal holds entries of every
// operation and whose tree holds inodes of every kind, for fuzz seeds.
func seedEngine(f *testing.F) (*Engine, *memJournal) {
	j := &memJournal{}
	e, err := New(Options{Journal: j, Now: testClock(), Logger: discardLogger()})
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	w := &workload{t: f, rng: rand.New(rand.NewPCG(1, 2)), e: e}
	for range 1500 {
		w.step()
	}
	for _, h := range w.handles {
		w.release(h)
	}
	return e, j
}

func FuzzDecodeEntry(f *testing.F) {
	_, j := seedEngine(f)
	seen := map[Op]bool{}
	for _, ent := range j.snapshot() {
		decoded, err := DecodeEntry(ent.payload)
		if err != nil {
			f.Fatalf("seed entry %d does not decode: %v", ent.seq, err)
		}
		// A few seeds of each operation keep the corpus small.
		if !seen[decoded.Op] || len(ent.payload) < 200 && ent.seq%7 == 0 {
			f.Add(ent.payload)
			seen[decoded.Op] = true
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ent, err := DecodeEntry(data)
		if err != nil {
			return
		}
		if again := EncodeEntry(ent); !bytes.Equal(again, data) {
			t.Fatalf("accepted entry re-encodes differently:\n input %x\noutput %x", data, again)
		}
	})
}

func FuzzDecodeInode(f *testing.F) {
	e, _ := seedEngine(f)
	e.mu.Lock()
	inos := slices.Sorted(maps.Keys(e.inodes))
	e.mu.Unlock()
	for _, ino := range inos {
		st, err := e.Export(ino)
		if err != nil {
			f.Fatal(err)
		}
		meta, data := EncodeInode(st)
		if _, err := DecodeInode(meta, data); err != nil {
			f.Fatalf("seed node %d does not decode: %v", st.Ino, err)
		}
		f.Add(meta, data)
	}
	f.Fuzz(func(t *testing.T, meta, data []byte) {
		st, err := DecodeInode(meta, data)
		if err != nil {
			return
		}
		meta2, data2 := EncodeInode(st)
		if !bytes.Equal(meta2, meta) || !bytes.Equal(data2, data) {
			t.Fatalf("accepted inode re-encodes differently:\n meta %x\n  got %x", meta, meta2)
		}
		// Every accepted state must build an inode whose export matches.
		n := inodeFromState(st)
		compareStates(t, "inode from a decoded state", st, (&Engine{}).exportMeta(n))
	})
}
