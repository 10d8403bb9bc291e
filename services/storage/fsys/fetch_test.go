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
// and evicts it.
func evictedFile(t *testing.T, chunks int) (*Engine, *mapLoader, fsapi.Ino, []byte) {
	t.Helper()
	loader := &mapLoader{chunks: map[chunkKey][]byte{}}
	e, _ := newTestEngineWith(t, func(o *Options) { o.Loader = loader })
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
	e, _, file, content := evictedFile(t, 6)
	h, err := e.Open(ctx, userCaller, file, syscall.O_RDONLY)
	mustOK(t, err)
	defer e.Release(ctx, file, h)

	buf := make([]byte, 64<<10)
	_, err = e.Read(ctx, userCaller, file, h, 0, buf)
	mustOK(t, err)
	if !bytes.Equal(buf, content[:len(buf)]) {
		t.Fatalf("first read returned other bytes")
	}
	testenv.Poll(t, 10*time.Second, "chunks 1 to 3 loaded ahead", func() error {
		if got := residentChunks(e, file); !slices.Equal(got, []uint64{0, 1, 2, 3}) {
			return fmt.Errorf("resident chunks %v", got)
		}
		return nil
	})

	// A read elsewhere is not sequential and loads only its own chunk.
	_, err = e.Read(ctx, userCaller, file, h, 5*ChunkSize+5, buf[:10])
	mustOK(t, err)
	if got := residentChunks(e, file); !slices.Equal(got, []uint64{0, 1, 2, 3, 5}) {
		t.Errorf("resident chunks after reading chunk 5 = %v, expected [0 1 2 3 5]", got)
	}
}

func TestConcurrentReadsOfEvictedChunks(t *testing.T) {
	e, loader, file, content := evictedFile(t, 6)
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
