package fsys

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// evictedFile makes a file of chunks chunks with known content, stores it
// and evicts it. The engine keeps up to cached loaded chunks (0 for the
// default).
func evictedFile(t *testing.T, chunks, cached int) (*Engine, *mapLoader, fsapi.Ino, []byte) {
	t.Helper()
	loader := &mapLoader{chunks: map[chunkKey][]byte{}}
	e, _ := newTestEngineWith(t, func(o *Options) {
		o.Loader = loader
		o.CachedChunks = cached
	})
	content := make([]byte, chunks*ChunkSize)
	for i := range content {
		content[i] = byte(i/SectorSize%251 + 1)
	}
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, content)
	loader.store(e)
	mustOK(t, e.Evict(file))
	return e, loader, file, content
}

func TestSequentialReadLoadsAhead(t *testing.T) {
	// One chunk past the read-ahead window stays out, and the last one is
	// read directly.
	last := uint64(readAhead + 2)
	e, _, file, content := evictedFile(t, int(last)+1, 0)
	h, err := e.Open(ctx, userCaller, file, syscall.O_RDONLY)
	mustOK(t, err)
	defer e.Release(ctx, file, h)

	buf := make([]byte, 64<<10)
	_, err = e.Read(ctx, userCaller, file, h, 0, buf)
	mustOK(t, err)
	if !bytes.Equal(buf, content[:len(buf)]) {
		t.Fatalf("first read returned other bytes")
	}
	var ahead []uint64
	for c := uint64(0); c <= readAhead; c++ {
		ahead = append(ahead, c)
	}
	testenv.Poll(t, 10*time.Second, fmt.Sprintf("chunks 1 to %d loaded ahead", readAhead), func() error {
		if got := residentChunks(e, file); !slices.Equal(got, ahead) {
			return fmt.Errorf("resident chunks %v", got)
		}
		return nil
	})

	// A read elsewhere is not sequential and loads only its own chunk.
	_, err = e.Read(ctx, userCaller, file, h, int64(last*ChunkSize+5), buf[:10])
	mustOK(t, err)
	want := append(slices.Clone(ahead), last)
	if got := residentChunks(e, file); !slices.Equal(got, want) {
		t.Errorf("resident chunks after reading chunk %d = %v, expected %v", last, got, want)
	}
}

func TestConcurrentReadsOfEvictedChunks(t *testing.T) {
	e, loader, file, content := evictedFile(t, 6, 0)
	var wg sync.WaitGroup
	for reader := range 4 {
		wg.Go(func() {
			h, err := e.Open(ctx, userCaller, file, syscall.O_RDONLY)
			if err != nil {
				t.Error(err)
				return
			}
			defer e.Release(ctx, file, h)
			rng := rand.New(rand.NewPCG(uint64(reader), 7))
			buf := make([]byte, 3*SectorSize)
			for range 200 {
				off := rng.IntN(len(content) - len(buf))
				n, err := e.Read(ctx, userCaller, file, h, int64(off), buf)
				if err != nil || !bytes.Equal(buf[:n], content[off:off+n]) {
					t.Errorf("read of %d bytes at %d: %d bytes, %v, or other bytes", len(buf), off, n, err)
					return
				}
			}
		})
	}
	// Evictions and checkpoints run beside the readers.
	wg.Go(func() {
		for range 20 {
			loader.store(e)
			if err := e.Evict(file); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

// TestReplayedPunchOverManyEvictedChunks replays a hole punch over more
// evicted chunks than the cache holds: loading the range's edges must not
// evict what the punch then changes.
func TestReplayedPunchOverManyEvictedChunks(t *testing.T) {
	loader := &mapLoader{chunks: map[chunkKey][]byte{}}
	e, j := newTestEngineWith(t, func(o *Options) {
		o.Loader = loader
		o.CachedChunks = minCachedChunks
	})
	content := make([]byte, 3*minCachedChunks*ChunkSize)
	for i := range content {
		content[i] = byte(i/SectorSize%251 + 1)
	}
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, content)
	cp := loader.store(e)
	states := make([]*InodeState, 0, len(cp.Inodes))
	for _, st := range cp.Inodes {
		meta, data := EncodeInode(st)
		decoded, err := DecodeInode(meta, data)
		mustOK(t, err)
		states = append(states, decoded)
	}
	mustOK(t, e.Evict(file))

	h, err := e.Open(ctx, userCaller, file, syscall.O_RDWR)
	mustOK(t, err)
	off, length := 100, len(content)-2*ChunkSize
	mustOK(t, e.Fallocate(ctx, userCaller, file, h, FallocKeepSize|FallocPunchHole, int64(off), int64(length)))
	mustOK(t, e.Release(ctx, file, h))
	clear(content[off : off+length])
	if got := readAll(t, e, file); !bytes.Equal(got, content) {
		t.Fatalf("content after the punch differs")
	}

	// A restart: the checkpoint's states without their chunks, then the
	// entries after it.
	replayed := NewEmpty(Options{Logger: testLogger(t), Loader: loader, CachedChunks: minCachedChunks})
	mustOK(t, replayed.LoadFrom(cp.Header, states))
	for _, ent := range j.snapshot() {
		if ent.seq > cp.Header.AppliedSeq {
			mustOK(t, replayed.Apply(ent.seq, ent.payload))
		}
	}
	if got := readAll(t, replayed, file); !bytes.Equal(got, content) {
		t.Errorf("content after replaying the punch differs")
	}
}

func TestCopyFileRangeAcrossEvictedChunks(t *testing.T) {
	e, _, file, content := evictedFile(t, 3*minCachedChunks, minCachedChunks)
	dst, h := create(t, e, userCaller, fsapi.RootIno, "copy", 0o644)
	src, err := e.Open(ctx, userCaller, file, syscall.O_RDONLY)
	mustOK(t, err)
	// Fill the cache with chunk 0 as its oldest entry, so that loading
	// chunk 1 for the copy would evict chunk 0 if a load evicted anything.
	for _, c := range []int{0, 2, 3, 4} {
		_, err := e.Read(ctx, userCaller, file, src, int64(c*ChunkSize+1), make([]byte, 10))
		mustOK(t, err)
	}
	n, err := e.CopyFileRange(ctx, userCaller, file, src, ChunkSize-100, dst, h, 0, 200, 0)
	mustOK(t, err)
	if got := readAll(t, e, dst); n != 200 || !bytes.Equal(got, content[ChunkSize-100:ChunkSize+100]) {
		t.Errorf("copied %d bytes, and they differ from the source", n)
	}
	mustOK(t, e.Release(ctx, file, src))
	mustOK(t, e.Release(ctx, dst, h))
}
