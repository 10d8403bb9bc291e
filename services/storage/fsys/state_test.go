package fsys

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// sampleTree makes one inode of every kind: a sparse file with reserved
// sectors and xattrs, a directory, a symlink, a FIFO and a device.
func sampleTree(t *testing.T) (*Engine, *memJournal) {
	t.Helper()
	e, j := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "dir", 0o755)
	ino, h := create(t, e, userCaller, dir, "sparse", 0o644)
	_, err := e.Write(ctx, userCaller, ino, h, 3*SectorSize+10, []byte("data"))
	mustOK(t, err)
	_, err = e.Write(ctx, userCaller, ino, h, 4*SectorSize, bytes.Repeat([]byte{7}, SectorSize))
	mustOK(t, err)
	mustOK(t, e.Fallocate(ctx, userCaller, ino, h, FallocKeepSize, 9*SectorSize, 2*SectorSize))
	mustOK(t, e.SetXattr(ctx, userCaller, ino, "user.b", []byte("2"), 0))
	mustOK(t, e.SetXattr(ctx, userCaller, ino, "user.a", nil, 0))
	mustOK(t, e.Release(ctx, ino, h))
	_, err = e.Symlink(ctx, userCaller, dir, "link", "sparse")
	mustOK(t, err)
	fifo, err := e.Mknod(ctx, userCaller, dir, "fifo", syscall.S_IFIFO|0o600, 0)
	mustOK(t, err)
	mustOK(t, e.SetXattr(ctx, rootCaller, fifo.Ino, "trusted.x", []byte("t"), 0))
	_, err = e.Mknod(ctx, rootCaller, dir, "null", syscall.S_IFCHR|0o666, 0x0103)
	mustOK(t, err)
	_, err = e.Link(ctx, userCaller, ino, fsapi.RootIno, "hardlink")
	mustOK(t, err)
	return e, j
}

func TestInodeEncodingRoundTrip(t *testing.T) {
	e, _ := sampleTree(t)
	for ino, st := range allStates(t, e) {
		meta, data := EncodeInode(st)
		decoded, err := DecodeInode(meta, data)
		if err != nil {
			t.Errorf("DecodeInode of node %d: %v", ino, err)
			continue
		}
		if len(decoded.Chunks) != 0 {
			t.Errorf("node %d decodes with chunks, which travel in blocks of their own", ino)
		}
		decoded.Chunks = st.Chunks
		compareStates(t, "round trip", st, decoded)
		meta2, data2 := EncodeInode(decoded)
		if !bytes.Equal(meta, meta2) || !bytes.Equal(data, data2) {
			t.Errorf("node %d re-encodes differently", ino)
		}
	}
}

func TestSparseExportExtents(t *testing.T) {
	e, _ := sampleTree(t)
	dir := lookup(t, e, fsapi.RootIno, "dir").Ino
	st, err := e.Export(lookup(t, e, dir, "sparse").Ino)
	mustOK(t, err)

	if len(st.Extents) != 2 {
		t.Fatalf("extents = %d, expected one data extent (sectors 3-4) and one reserved extent (9-10)", len(st.Extents))
	}
	data, reserved := st.Extents[0], st.Extents[1]
	if data.First != 3 || data.Count != 2 || data.Reserved {
		t.Errorf("data extent = %+v, expected sectors 3-4 with data", data)
	}
	if reserved.First != 9 || reserved.Count != 2 || !reserved.Reserved {
		t.Errorf("reserved extent = %+v, expected sectors 9-10 reserved", reserved)
	}
	if len(st.Chunks) != 1 || st.Chunks[0].Index != 0 || len(st.Chunks[0].Bytes()) != 2*SectorSize {
		t.Errorf("chunks = %d, expected chunk 0 with the two data sectors", len(st.Chunks))
	}
	if st.Attr.Blocks != 4*sectorBlocks {
		t.Errorf("blocks = %d, expected %d", st.Attr.Blocks, 4*sectorBlocks)
	}
}

func TestDecodeInodeRejects(t *testing.T) {
	e, _ := sampleTree(t)
	dir := lookup(t, e, fsapi.RootIno, "dir").Ino
	fileState, err := e.Export(lookup(t, e, dir, "sparse").Ino)
	mustOK(t, err)
	dirState, err := e.Export(dir)
	mustOK(t, err)
	fileMeta, fileData := EncodeInode(fileState)
	dirMeta, dirData := EncodeInode(dirState)

	dataPastEnd := *fileState
	dataPastEnd.Attr.Size = 3*SectorSize + 5
	pastMeta, pastData := EncodeInode(&dataPastEnd)

	badBlocks := *fileState
	badBlocks.Attr.Blocks += sectorBlocks
	blocksMeta, blocksData := EncodeInode(&badBlocks)

	unsortedEntries := *dirState
	unsortedEntries.Entries = slices.Clone(dirState.Entries)
	slices.Reverse(unsortedEntries.Entries)
	unsortedMeta, unsortedData := EncodeInode(&unsortedEntries)

	tests := []struct {
		name       string
		meta, data []byte
	}{
		{"trailing meta byte", append(slices.Clone(fileMeta), 0), fileData},
		{"trailing data byte", fileMeta, append(slices.Clone(fileData), 0)},
		{"truncated data", fileMeta, fileData[:len(fileData)-1]},
		{"directory without data", dirMeta, nil},
		{"data past the end of the file", pastMeta, pastData},
		{"block count mismatch", blocksMeta, blocksData},
		{"entries out of cookie order", unsortedMeta, unsortedData},
		{"wrong kind", dirData, dirData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeInode(tt.meta, tt.data)
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("DecodeInode error = %v, expected EINVAL", err)
			}
		})
	}
	if _, err := DecodeInode(dirMeta, dirData); err != nil {
		t.Errorf("DecodeInode of the valid directory: %v", err)
	}
}

func TestHeaderEncoding(t *testing.T) {
	h := Header{NextIno: 77, AppliedSeq: 1234}
	got, err := DecodeHeader(EncodeHeader(h))
	mustOK(t, err)
	if got != h {
		t.Errorf("DecodeHeader = %+v, expected %+v", got, h)
	}
	_, err = DecodeHeader(EncodeHeader(Header{NextIno: 1}))
	wantErrno(t, err, syscall.EINVAL)
	_, err = DecodeHeader(append(EncodeHeader(h), 0))
	if !errors.Is(err, wire.ErrTrailing) {
		t.Errorf("DecodeHeader with a trailing byte: %v, expected ErrTrailing", err)
	}
}

func TestCheckpointAndMarkClean(t *testing.T) {
	e, _ := sampleTree(t)
	cp := e.Checkpoint()
	if len(cp.Inodes) != len(allStates(t, e)) {
		t.Errorf("first checkpoint has %d inodes, expected every inode (%d)", len(cp.Inodes), len(allStates(t, e)))
	}
	for _, st := range cp.Inodes {
		e.MarkClean(st.Ino, cp.Header.AppliedSeq)
	}
	if dirty := e.DirtyInodes(); len(dirty) != 0 {
		t.Errorf("dirty after MarkClean = %v, expected none", dirty)
	}

	file := createFile(t, e, userCaller, fsapi.RootIno, "new", 0o644, nil)
	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "hardlink"))
	dirty := e.DirtyInodes()
	sparse := lookup(t, e, lookup(t, e, fsapi.RootIno, "dir").Ino, "sparse").Ino
	if !slices.Equal(dirty, []fsapi.Ino{fsapi.RootIno, sparse, file}) {
		t.Errorf("dirty = %v, expected the root, the unlinked file %d and the new file %d", dirty, sparse, file)
	}

	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "new"))
	cp = e.Checkpoint()
	if len(cp.Freed) != 1 || cp.Freed[0].Ino != file {
		t.Fatalf("freed = %+v, expected node %d", cp.Freed, file)
	}
	e.MarkClean(file, cp.Header.AppliedSeq-1)
	if len(e.FreedInodes()) != 1 {
		t.Errorf("tombstone dropped by a MarkClean before the freeing entry")
	}
	e.MarkClean(file, cp.Header.AppliedSeq)
	if len(e.FreedInodes()) != 0 {
		t.Errorf("tombstone kept after MarkClean covered the freeing entry")
	}
}

func TestLoadFromCheckpoint(t *testing.T) {
	e, _ := sampleTree(t)
	cp := e.Checkpoint()
	loaded := NewEmpty(Options{Logger: testLogger(t)})
	mustOK(t, loaded.LoadFrom(cp.Header, roundTripStates(t, cp.Inodes)))
	compareEngines(t, "loaded checkpoint", e, loaded)
	if dirty := loaded.DirtyInodes(); len(dirty) != 0 {
		t.Errorf("dirty after LoadFrom = %v, expected none", dirty)
	}
	path, err := loaded.PathOf(lookup(t, loaded, fsapi.RootIno, "hardlink").Ino)
	mustOK(t, err)
	if path != "/dir/sparse" && path != "/hardlink" {
		t.Errorf("PathOf = %q, expected one of the two links", path)
	}
	wantErrno(t, loaded.LoadFrom(cp.Header, cp.Inodes), syscall.EEXIST)
}

func TestLoadFromRejectsBrokenTrees(t *testing.T) {
	e, _ := sampleTree(t)
	cp := e.Checkpoint()
	find := func(states []*InodeState, ino fsapi.Ino) *InodeState {
		for _, st := range states {
			if st.Ino == ino {
				return st
			}
		}
		t.Fatalf("node %d not in the checkpoint", ino)
		return nil
	}
	dir := lookup(t, e, fsapi.RootIno, "dir").Ino
	clone := func() []*InodeState {
		var out []*InodeState
		for _, st := range cp.Inodes {
			copied := *st
			copied.Entries = slices.Clone(st.Entries)
			out = append(out, &copied)
		}
		return out
	}

	tests := []struct {
		name    string
		header  Header
		corrupt func(states []*InodeState) []*InodeState
	}{
		{"missing child", cp.Header, func(s []*InodeState) []*InodeState {
			return slices.DeleteFunc(s, func(st *InodeState) bool { return st.Ino == dir })
		}},
		{"wrong link count", cp.Header, func(s []*InodeState) []*InodeState {
			find(s, fsapi.RootIno).Attr.Nlink++
			return s
		}},
		{"directory cycle", cp.Header, func(s []*InodeState) []*InodeState {
			// The root no longer lists dir, and dir lists itself as its
			// only parent, so dir never leads to the root.
			root := find(s, fsapi.RootIno)
			root.Entries = slices.DeleteFunc(root.Entries, func(d DirEntryState) bool { return d.Ino == dir })
			root.Attr.Nlink--
			st := find(s, dir)
			st.Entries = append(st.Entries, DirEntryState{Name: "loop", Ino: dir, Mode: syscall.S_IFDIR, Cookie: st.NextCookie})
			st.NextCookie++
			st.Attr.Nlink++
			return s
		}},
		{"inode number not below the header", Header{NextIno: 3, AppliedSeq: cp.Header.AppliedSeq}, func(s []*InodeState) []*InodeState { return s }},
		{"no root", cp.Header, func(s []*InodeState) []*InodeState {
			return slices.DeleteFunc(s, func(st *InodeState) bool { return st.Ino == fsapi.RootIno })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded := NewEmpty(Options{Logger: discardLogger()})
			err := loaded.LoadFrom(tt.header, tt.corrupt(clone()))
			wantErrno(t, err, syscall.EINVAL)
			t.Logf("LoadFrom error: %v", err)
			if len(loaded.inodes) != 0 {
				t.Errorf("a rejected checkpoint left %d inodes installed", len(loaded.inodes))
			}
		})
	}
}

// mapLoader serves evicted chunks from copies kept in memory. Reads load
// chunks ahead in other goroutines, so it takes a lock.
type mapLoader struct {
	mu     sync.Mutex
	chunks map[chunkKey][]byte
	calls  int
	fail   error
}

func (l *mapLoader) LoadChunk(ino fsapi.Ino, blockID [32]byte, chunk uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.fail != nil {
		return nil, l.fail
	}
	data, ok := l.chunks[chunkKey{ino, chunk}]
	if !ok {
		return nil, fmt.Errorf("no chunk %d of node %d", chunk, ino)
	}
	return bytes.Clone(data), nil
}

// store plays the persistence layer: it takes a checkpoint, keeps the
// chunks it hands out and marks everything clean.
func (l *mapLoader) store(e *Engine) *Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	cp := e.Checkpoint()
	for _, st := range cp.Inodes {
		for _, ch := range st.Chunks {
			l.chunks[chunkKey{st.Ino, ch.Index}] = ch.Bytes()
		}
		e.MarkClean(st.Ino, cp.Header.AppliedSeq)
	}
	e.EndCheckpoint()
	return cp
}

// residentChunks returns the chunks of ino whose data is in memory.
func residentChunks(e *Engine, ino fsapi.Ino) []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.inodes[ino].data
	return slices.DeleteFunc(d.dataChunks(), func(c uint64) bool { return d.evicted[c] != 0 })
}

func TestEvictAndLoadChunks(t *testing.T) {
	loader := &mapLoader{chunks: map[chunkKey][]byte{}}
	e, _ := newTestEngineWith(t, func(o *Options) { o.Loader = loader })
	content := make([]byte, 2*ChunkSize+ChunkSize/2)
	for i := range content {
		content[i] = byte(i/SectorSize%255 + 1)
	}
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, content)
	mustOK(t, e.SetXattr(ctx, userCaller, file, "user.k", []byte("v"), 0))

	// Only clean chunks go.
	mustOK(t, e.Evict(file))
	if got := residentChunks(e, file); !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Fatalf("resident chunks of a dirty file after Evict = %v, expected all three", got)
	}
	loader.store(e)
	mustOK(t, e.Evict(file))
	if got := residentChunks(e, file); len(got) != 0 {
		t.Fatalf("resident chunks after Evict = %v, expected none", got)
	}
	if attr := getattr(t, e, file); attr.Size != uint64(len(content)) || attr.Blocks != uint64(len(content))/512 {
		t.Errorf("attributes of the evicted file = %+v, the layout stays in memory", attr)
	}

	// A read loads the chunk it needs and no other.
	h, err := e.Open(ctx, userCaller, file, syscall.O_RDWR)
	mustOK(t, err)
	buf := make([]byte, 100)
	_, err = e.Read(ctx, userCaller, file, h, ChunkSize+7, buf)
	mustOK(t, err)
	if !bytes.Equal(buf, content[ChunkSize+7:ChunkSize+107]) || loader.calls != 1 {
		t.Errorf("read in chunk 1 after %d loads, expected the content after 1", loader.calls)
	}
	if got := residentChunks(e, file); !slices.Equal(got, []uint64{1}) {
		t.Errorf("resident chunks = %v, expected [1]", got)
	}

	// Truncating into chunk 2 loads it; the xattrs need no load.
	mustOK(t, e.SetXattr(ctx, userCaller, file, "user.k", []byte("w"), 0))
	_, err = e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 2*ChunkSize + 10})
	mustOK(t, err)
	if loader.calls != 2 {
		t.Errorf("%d loads after the truncate, expected 2", loader.calls)
	}
	if got := readAll(t, e, file); !bytes.Equal(got, content[:2*ChunkSize+10]) {
		t.Errorf("content after reload and truncate differs")
	}
	mustOK(t, e.Release(ctx, file, h))

	// A failed load fails the read, and the rest of the file is served.
	loader.store(e)
	mustOK(t, e.Evict(file))
	h, err = e.Open(ctx, rootCaller, file, syscall.O_RDWR)
	mustOK(t, err)
	loader.fail = errors.New("block missing")
	_, err = e.Read(ctx, rootCaller, file, h, 0, make([]byte, 10))
	wantErrno(t, err, syscall.EIO)
	_, err = e.Write(ctx, rootCaller, file, h, 5, []byte("x"))
	wantErrno(t, err, syscall.EIO)
	_, err = e.GetAttr(ctx, userCaller, file)
	mustOK(t, err)
	loader.fail = nil
	_, err = e.Write(ctx, rootCaller, file, h, ChunkSize, []byte("y"))
	mustOK(t, err)
	if cp := loader.store(e); len(cp.Inodes) != 1 || len(cp.Inodes[0].Chunks) != 1 || cp.Inodes[0].Chunks[0].Index != 1 {
		t.Errorf("checkpoint after the failed load = %+v, expected the change to chunk 1", cp.Inodes)
	}
	mustOK(t, e.Release(ctx, file, h))
}

func TestCheckpointChunksAreCopyOnWrite(t *testing.T) {
	loader := &mapLoader{chunks: map[chunkKey][]byte{}}
	e, _ := newTestEngineWith(t, func(o *Options) { o.Loader = loader })
	old := bytes.Repeat([]byte{1}, ChunkSize+SectorSize)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, old)
	loader.store(e)

	// Change chunk 1 only: the next checkpoint carries chunk 1 alone.
	h, err := e.Open(ctx, userCaller, file, syscall.O_RDWR)
	mustOK(t, err)
	_, err = e.Write(ctx, userCaller, file, h, ChunkSize, []byte{2})
	mustOK(t, err)
	cp := e.Checkpoint()
	if len(cp.Inodes) != 1 || len(cp.Inodes[0].Chunks) != 1 || cp.Inodes[0].Chunks[0].Index != 1 {
		t.Fatalf("checkpoint = %+v, expected chunk 1 of the file only", cp.Inodes)
	}
	snapshot := cp.Inodes[0].Chunks[0]
	want := snapshot.Bytes()

	// Writes while the checkpoint runs leave its chunk as it was.
	_, err = e.Write(ctx, userCaller, file, h, ChunkSize, []byte{3, 3})
	mustOK(t, err)
	_, err = e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: ChunkSize + 1})
	mustOK(t, err)
	if got := snapshot.Bytes(); !bytes.Equal(got, want) || got[0] != 2 || got[1] != 1 {
		t.Errorf("the checkpoint's chunk changed under it: starts %v", got[:2])
	}
	e.EndCheckpoint()
	got := make([]byte, 4)
	n, err := e.Read(ctx, userCaller, file, h, ChunkSize-2, got)
	mustOK(t, err)
	if !bytes.Equal(got[:n], []byte{1, 1, 3}) {
		t.Errorf("file reads %v at the chunk boundary, expected [1 1 3]", got[:n])
	}
	mustOK(t, e.Release(ctx, file, h))
}

func TestLoadedChunksAreBounded(t *testing.T) {
	loader := &mapLoader{chunks: map[chunkKey][]byte{}}
	e, _ := newTestEngineWith(t, func(o *Options) {
		o.Loader = loader
		o.CachedChunks = minCachedChunks
	})
	content := bytes.Repeat([]byte("chunks "), 9*ChunkSize/7)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, content)
	loader.store(e)
	mustOK(t, e.Evict(file))
	if got := readAll(t, e, file); !bytes.Equal(got, content) {
		t.Fatalf("content read back differs")
	}
	if got := residentChunks(e, file); len(got) > minCachedChunks {
		t.Errorf("resident chunks after reading the file = %v, expected at most %d", got, minCachedChunks)
	}
}

func TestPathOfAndBlockID(t *testing.T) {
	e, _ := newTestEngine(t)
	a := mkdir(t, e, userCaller, fsapi.RootIno, "a", 0o755)
	b := mkdir(t, e, userCaller, a, "b", 0o755)
	file := createFile(t, e, userCaller, b, "c", 0o644, nil)

	for ino, want := range map[fsapi.Ino]string{fsapi.RootIno: "/", a: "/a", b: "/a/b", file: "/a/b/c"} {
		got, err := e.PathOf(ino)
		mustOK(t, err)
		if got != want {
			t.Errorf("PathOf(%d) = %q, expected %q", ino, got, want)
		}
	}
	idA, okA := e.BlockID(a)
	idB, okB := e.BlockID(b)
	if !okA || !okB || idA == idB || idA == ([32]byte{}) {
		t.Errorf("block ids %x and %x, expected two distinct non-zero ids", idA, idB)
	}
	if _, ok := e.BlockID(999); ok {
		t.Errorf("BlockID of a missing inode reported ok")
	}
}

func TestSmallFilesStayInMemory(t *testing.T) {
	loader := &mapLoader{chunks: map[chunkKey][]byte{}}
	e, _ := newTestEngineWith(t, func(o *Options) { o.Loader = loader })
	content := []byte("a small file")
	small := createFile(t, e, userCaller, fsapi.RootIno, "small", 0o644, content)
	loader.store(e)
	mustOK(t, e.Evict(small))
	if got := residentChunks(e, small); !slices.Equal(got, []uint64{0}) {
		t.Errorf("resident chunks of a small file after Evict = %v, expected [0]", got)
	}

	// A change of attributes alone brings the data of a small file along.
	_, err := e.SetAttr(ctx, userCaller, small, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o600})
	mustOK(t, err)
	cp := e.Checkpoint()
	defer e.EndCheckpoint()
	var st *InodeState
	for _, s := range cp.Inodes {
		if s.Ino == small {
			st = s
		}
	}
	if st == nil || !Inline(st) || len(st.Chunks) != 1 {
		t.Fatalf("checkpoint state of the small file = %+v, expected it inline with one chunk", st)
	}
	if got := st.Chunks[0].Bytes(); !bytes.Equal(got[:len(content)], content) {
		t.Errorf("chunk 0 of the small file starts %q, expected %q", got[:len(content)], content)
	}
}

func TestChangedInodesFollowChanges(t *testing.T) {
	e, _ := sampleTree(t)
	cp := e.Checkpoint()
	for _, st := range cp.Inodes {
		e.MarkClean(st.Ino, cp.Header.AppliedSeq)
	}
	if n := len(e.changedInodes); n != 0 {
		t.Errorf("%d changed inodes after MarkClean, expected 0", n)
	}
	if b := e.DirtyBytes(); b != 0 {
		t.Errorf("DirtyBytes after MarkClean = %d, expected 0", b)
	}

	file := createFile(t, e, userCaller, fsapi.RootIno, "new", 0o644, []byte("ten bytes!"))
	if b := e.DirtyBytes(); b != 10 {
		t.Errorf("DirtyBytes after writing 10 bytes = %d, expected 10", b)
	}
	if _, ok := e.changedInodes[file]; !ok {
		t.Errorf("new file %d missing from the changed inodes", file)
	}

	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "new"))
	if _, ok := e.changedInodes[file]; ok {
		t.Errorf("freed file %d still among the changed inodes", file)
	}
	if b := e.DirtyBytes(); b != 0 {
		t.Errorf("DirtyBytes after the file was freed = %d, expected 0", b)
	}
}

// TestChangedInodesMatchScan runs a random workload with checkpoints whose
// MarkClean comes some steps later, after newer changes, and with damaged
// inodes. After every step the set of changed inodes must give what a scan
// of every inode gives.
func TestChangedInodesMatchScan(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		e, _ := newTestEngineWith(t, func(o *Options) { o.Logger = discardLogger() })
		rng := rand.New(rand.NewPCG(seed, seed*7))
		w := &workload{t: t, rng: rng, e: e}
		var pending *Checkpoint
		for step := range 1000 {
			w.step()
			switch rng.IntN(40) {
			case 0:
				if pending == nil {
					pending = e.Checkpoint()
					e.EndCheckpoint()
				}
			case 1:
				if pending != nil {
					for _, st := range pending.Inodes {
						e.MarkClean(st.Ino, pending.Header.AppliedSeq)
					}
					for _, f := range pending.Freed {
						e.MarkClean(f.Ino, pending.Header.AppliedSeq)
					}
					pending = nil
				}
			case 2:
				if ino := w.any(); ino != 0 && ino != fsapi.RootIno && rng.IntN(5) == 0 {
					e.MarkDamaged(ino, "test")
				}
			}
			checkChangedInodes(t, e, seed, step)
		}
	}
}

// checkChangedInodes compares dirtyInodes and DirtyBytes with a scan of
// every inode.
func checkChangedInodes(t *testing.T, e *Engine, seed uint64, step int) {
	t.Helper()
	e.mu.Lock()
	var scanned []fsapi.Ino
	var scannedBytes uint64
	for ino, n := range e.inodes {
		if n.dirtySeq > n.cleanSeq && n.damaged == "" {
			scanned = append(scanned, ino)
		}
		if n.data != nil && len(n.data.dirty) > 0 {
			scannedBytes += min(uint64(len(n.data.dirty))*ChunkSize, n.attr.Size)
		}
	}
	slices.Sort(scanned)
	for ino, n := range e.changedInodes {
		if e.inodes[ino] != n {
			t.Fatalf("seed %d step %d: changed inode %d is not the live one", seed, step, ino)
		}
	}
	dirty := e.dirtyInodes()
	e.mu.Unlock()

	if !slices.Equal(dirty, scanned) {
		t.Fatalf("seed %d step %d: dirty inodes %v, a scan finds %v", seed, step, dirty, scanned)
	}
	if got := e.DirtyBytes(); got != scannedBytes {
		t.Fatalf("seed %d step %d: DirtyBytes %d, a scan finds %d", seed, step, got, scannedBytes)
	}
}
