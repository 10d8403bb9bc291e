package fsys

import (
	"flag"
	"maps"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

var workloadSeed = flag.Uint64("fsys.seed", 0, "seed of the randomized workload in TestApplyReplaysWorkload; 0 picks one from the clock")

// workload drives an engine with random requests of every kind that makes
// a journal entry. Most requests succeed. The ones that fail (a name that
// exists, a permission that is missing) must make no entry, and the replay
// checks that too.
type workload struct {
	t       testing.TB
	rng     *rand.Rand
	e       *Engine
	handles []openFile
}

type openFile struct {
	ino    fsapi.Ino
	handle fsapi.HandleID
	caller *fsapi.Caller
}

var workloadNames = []string{"a", "b", "c", "d", "e", "f", "g", "h"}

func (w *workload) caller() *fsapi.Caller {
	if w.rng.IntN(2) == 0 {
		return rootCaller
	}
	return userCaller
}

func (w *workload) name() string { return workloadNames[w.rng.IntN(len(workloadNames))] }

// pick returns a random live inode for which keep returns true, or 0.
func (w *workload) pick(keep func(*inode) bool) fsapi.Ino {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	var candidates []fsapi.Ino
	for _, ino := range slices.Sorted(maps.Keys(w.e.inodes)) {
		if keep(w.e.inodes[ino]) {
			candidates = append(candidates, ino)
		}
	}
	if len(candidates) == 0 {
		return 0
	}
	return candidates[w.rng.IntN(len(candidates))]
}

func (w *workload) dir() fsapi.Ino {
	return w.pick(func(n *inode) bool { return n.isDir() && n.attr.Nlink > 0 })
}

func (w *workload) file() fsapi.Ino {
	return w.pick(func(n *inode) bool { return n.isRegular() })
}

func (w *workload) any() fsapi.Ino {
	return w.pick(func(*inode) bool { return true })
}

func (w *workload) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(w.rng.UintN(256))
	}
	return b
}

// openFile opens a regular file for writing, or returns 0.
func (w *workload) open(flags uint32) (openFile, bool) {
	ino := w.file()
	if ino == 0 {
		return openFile{}, false
	}
	c := w.caller()
	h, err := w.e.Open(ctx, c, ino, flags)
	if err != nil {
		return openFile{}, false
	}
	return openFile{ino: ino, handle: h, caller: c}, true
}

func (w *workload) release(f openFile) {
	if err := w.e.Release(ctx, f.ino, f.handle); err != nil {
		w.t.Fatalf("Release %d: %v", f.ino, err)
	}
}

func (w *workload) step() {
	e, c := w.e, w.caller()
	switch w.rng.IntN(17) {
	case 0:
		modes := []uint32{0o755, 0o777, 0o1777, 0o2775}
		e.Mkdir(ctx, c, w.dir(), w.name(), modes[w.rng.IntN(len(modes))])
	case 1:
		flags := []uint32{syscall.O_RDWR, syscall.O_RDWR | syscall.O_EXCL, syscall.O_WRONLY | syscall.O_TRUNC}
		attr, h, err := e.Create(ctx, c, w.dir(), w.name(), 0o666|uint32(w.rng.IntN(2))*syscall.S_ISUID, flags[w.rng.IntN(len(flags))])
		if err == nil {
			w.handles = append(w.handles, openFile{ino: attr.Ino, handle: h, caller: c})
		}
	case 2:
		types := []uint32{syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, 0}
		e.Mknod(ctx, c, w.dir(), w.name(), types[w.rng.IntN(len(types))]|0o644, uint64(w.rng.IntN(3)))
	case 3:
		e.Symlink(ctx, c, w.dir(), w.name(), "../"+w.name())
	case 4:
		e.Link(ctx, c, w.any(), w.dir(), w.name())
	case 5:
		e.Unlink(ctx, c, w.dir(), w.name())
	case 6:
		// Random names rarely hit an empty directory, so mostly pick one.
		parent, name := w.dir(), w.name()
		if ino := w.pick(func(n *inode) bool { return n.isDir() && len(n.entries) == 0 && len(n.links) > 0 }); ino != 0 && w.rng.IntN(4) > 0 {
			e.mu.Lock()
			l := e.inodes[ino].links[0]
			e.mu.Unlock()
			parent, name = l.parent, l.name
		}
		e.Rmdir(ctx, c, parent, name)
	case 7:
		flags := []uint32{0, 0, fsapi.RenameNoReplace, fsapi.RenameExchange}
		e.Rename(ctx, c, w.dir(), w.name(), w.dir(), w.name(), flags[w.rng.IntN(len(flags))])
	case 8:
		w.write()
	case 9:
		w.setattr()
	case 10:
		if f, ok := w.open(syscall.O_RDWR); ok {
			modes := []uint32{0, FallocKeepSize, FallocKeepSize | FallocPunchHole}
			off := int64(w.rng.IntN(3 * SectorSize * 4))
			e.Fallocate(ctx, f.caller, f.ino, f.handle, modes[w.rng.IntN(len(modes))], off, int64(1+w.rng.IntN(3*SectorSize)))
			w.release(f)
		}
	case 11:
		names := []string{"user.a", "user.b", "trusted.t", "security.s"}
		flags := []uint32{0, 0, fsapi.XattrCreate, fsapi.XattrReplace}
		e.SetXattr(ctx, c, w.any(), names[w.rng.IntN(len(names))], w.bytes(w.rng.IntN(64)), flags[w.rng.IntN(len(flags))])
	case 12:
		names := []string{"user.a", "user.b", "trusted.t"}
		e.RemoveXattr(ctx, c, w.any(), names[w.rng.IntN(len(names))])
	case 13:
		// Keep a file open while its names go away, for the reclaim path.
		if f, ok := w.open(syscall.O_RDWR); ok {
			w.handles = append(w.handles, f)
		}
	case 14:
		if len(w.handles) > 0 {
			i := w.rng.IntN(len(w.handles))
			w.release(w.handles[i])
			w.handles = slices.Delete(w.handles, i, i+1)
		}
	case 15:
		in, okIn := w.open(syscall.O_RDONLY)
		out, okOut := w.open(syscall.O_WRONLY)
		if okIn && okOut {
			e.CopyFileRange(ctx, out.caller, in.ino, in.handle, int64(w.rng.IntN(5000)), out.ino, out.handle, int64(w.rng.IntN(20000)), uint64(w.rng.IntN(9000)), 0)
		}
		if okIn {
			w.release(in)
		}
		if okOut {
			w.release(out)
		}
	case 16:
		if f, ok := w.open(syscall.O_WRONLY | syscall.O_TRUNC); ok {
			w.release(f)
		}
	}
}

func (w *workload) write() {
	var f openFile
	fromList := len(w.handles) > 0 && w.rng.IntN(2) == 0
	if fromList {
		f = w.handles[w.rng.IntN(len(w.handles))]
	} else {
		flags := uint32(syscall.O_WRONLY)
		if w.rng.IntN(4) == 0 {
			flags |= syscall.O_APPEND
		}
		var ok bool
		if f, ok = w.open(flags); !ok {
			return
		}
		defer w.release(f)
	}
	off := int64(w.rng.IntN(4 * SectorSize))
	if w.rng.IntN(10) == 0 {
		off += 1 << 30
	}
	w.e.Write(ctx, f.caller, f.ino, f.handle, off, w.bytes(1+w.rng.IntN(2*SectorSize)))
}

func (w *workload) setattr() {
	in := &fsapi.SetAttrIn{}
	switch w.rng.IntN(5) {
	case 0:
		in.Valid = fsapi.SetMode
		in.Mode = uint32(w.rng.IntN(0o10000))
	case 1:
		in.Valid = fsapi.SetUID | fsapi.SetGID
		in.UID, in.GID = uint32(w.rng.IntN(2))*1000, uint32(w.rng.IntN(2))*1000
	case 2:
		in.Valid = fsapi.SetSize
		in.Size = uint64(w.rng.IntN(5 * SectorSize))
	case 3:
		in.Valid = fsapi.SetAtime | fsapi.SetMtime
		in.Atime, in.Mtime = w.rng.Int64(), w.rng.Int64()
	case 4:
		in.Valid = fsapi.SetAtimeNow | fsapi.SetMtimeNow
	}
	w.e.SetAttr(ctx, w.caller(), w.any(), in)
}

func TestApplyReplaysWorkload(t *testing.T) {
	seed := *workloadSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("workload seed %d (rerun with -fsys.seed=%d)", seed, seed)

	steps := 3000
	if testing.Short() {
		steps = 600
	}
	e, j := newTestEngineWith(t, func(o *Options) { o.Logger = discardLogger() })
	w := &workload{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), e: e}

	var mid *Checkpoint
	var midEntries int
	for i := range steps {
		w.step()
		if i == steps/2 {
			mid = e.Checkpoint()
			midEntries = len(j.snapshot())
		}
	}
	for _, f := range w.handles {
		w.release(f)
	}
	entries := j.snapshot()
	t.Logf("%d steps made %d journal entries and %d inodes", steps, len(entries), len(allStates(t, e)))

	counts := make(map[Op]int)
	for _, ent := range entries {
		decoded, err := DecodeEntry(ent.payload)
		mustOK(t, err)
		counts[decoded.Op]++
	}
	for op := OpInitRoot; op <= OpReclaim; op++ {
		if counts[op] == 0 && !testing.Short() {
			t.Errorf("the workload made no %s entry", op)
		}
	}
	t.Logf("entries by operation: %v", counts)

	first := replay(t, entries)
	compareEngines(t, "replay", e, first)
	second := replay(t, entries)
	compareEngines(t, "second replay", first, second)
	if got, want := first.FreedInodes(), e.FreedInodes(); !slices.Equal(got, want) {
		t.Errorf("replay freed %d inodes, expected %d", len(got), len(want))
	}

	// A checkpoint from the middle plus the rest of the journal must give
	// the same tree as the whole journal.
	loaded := NewEmpty(Options{Logger: discardLogger()})
	if err := loaded.LoadFrom(mid.Header, roundTripStates(t, mid.Inodes)); err != nil {
		t.Fatalf("LoadFrom the middle checkpoint: %v", err)
	}
	for _, ent := range entries[midEntries:] {
		if err := loaded.Apply(ent.seq, ent.payload); err != nil {
			t.Fatalf("Apply %d after the checkpoint: %v", ent.seq, err)
		}
	}
	compareEngines(t, "checkpoint and replay", e, loaded)
}

// roundTripStates encodes and decodes every state, checking that the
// encoding is stable.
func roundTripStates(t *testing.T, states []*InodeState) []*InodeState {
	t.Helper()
	var out []*InodeState
	for _, st := range states {
		meta, data := EncodeInode(st)
		decoded, err := DecodeInode(meta, data)
		if err != nil {
			t.Fatalf("DecodeInode of node %d: %v", st.Ino, err)
		}
		// The chunks travel in blocks of their own.
		for _, ch := range st.Chunks {
			decoded.Chunks = append(decoded.Chunks, Chunk{Index: ch.Index, Data: ch.Bytes()})
		}
		compareStates(t, "inode round trip", st, decoded)
		out = append(out, decoded)
	}
	return out
}

func TestApplySkipsAppliedSeq(t *testing.T) {
	e, j := newTestEngine(t)
	createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, []byte("x"))
	entries := j.snapshot()

	replayed := replay(t, entries)
	for _, ent := range entries {
		if err := replayed.Apply(ent.seq, ent.payload); err != nil {
			t.Errorf("Apply of the already applied entry %d: %v", ent.seq, err)
		}
	}
	compareEngines(t, "after applying twice", e, replayed)
}

func TestApplyRejectsMismatch(t *testing.T) {
	e, j := newTestEngine(t)
	mkdir(t, e, rootCaller, fsapi.RootIno, "d", 0o755)
	entries := j.snapshot()

	// The mkdir entry applied to a state that already has "d" must fail
	// and change nothing.
	replayed := replay(t, entries)
	before := allStates(t, replayed)
	mkdirEntry := entries[len(entries)-1]
	err := replayed.Apply(mkdirEntry.seq+1, mkdirEntry.payload)
	wantErrno(t, err, syscall.EEXIST)
	after := allStates(t, replayed)
	for ino, st := range before {
		compareStates(t, "after a rejected entry", st, after[ino])
	}
	if replayed.Header().AppliedSeq != mkdirEntry.seq {
		t.Errorf("applied seq = %d, expected %d", replayed.Header().AppliedSeq, mkdirEntry.seq)
	}
}

func TestApplyRejectsGarbage(t *testing.T) {
	e := NewEmpty(Options{Logger: discardLogger()})
	wantErrno(t, e.Apply(1, []byte{1, 2, 3}), syscall.EINVAL)
}

// TestConcurrentRequestsReplay runs requests from several goroutines at
// once: the journal order must still be an order in which Apply rebuilds
// the same tree.
func TestConcurrentRequestsReplay(t *testing.T) {
	e, j := newTestEngineWith(t, func(o *Options) { o.Logger = discardLogger() })
	shared := mkdir(t, e, rootCaller, fsapi.RootIno, "shared", 0o777)
	const workers = 8
	done := make(chan error, workers)
	for worker := range workers {
		go func() {
			done <- func() error {
				for i := range 50 {
					name := workloadNames[(worker+i)%len(workloadNames)]
					attr, h, err := e.Create(ctx, userCaller, shared, name, 0o644, syscall.O_RDWR)
					if err != nil {
						continue // another worker removed or renamed it meanwhile
					}
					e.Write(ctx, userCaller, attr.Ino, h, int64(i*100), []byte{byte(worker), byte(i)})
					e.Rename(ctx, userCaller, shared, name, shared, workloadNames[(worker+i+1)%len(workloadNames)], 0)
					e.SetXattr(ctx, userCaller, attr.Ino, "user.w", []byte{byte(worker)}, 0)
					if i%3 == 0 {
						e.Unlink(ctx, userCaller, shared, workloadNames[(worker+i+2)%len(workloadNames)])
					}
					if err := e.Release(ctx, attr.Ino, h); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for range workers {
		mustOK(t, <-done)
	}
	compareEngines(t, "replay of concurrent requests", e, replay(t, j.snapshot()))
}
