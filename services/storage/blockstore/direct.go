package blockstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the alignment of buffer addresses, file offsets and lengths
// that reads with O_DIRECT need. 4096 covers the logical block size of
// common disks (512 or 4096 bytes).
const directAlign = 4096

// Buffer is memory for GetDirect, aligned for reads that bypass the page
// cache. A Buffer is reused from read to read, so that a daemon that loads
// many blocks does not fault in fresh memory for each one.
type Buffer struct {
	mem  []byte // as allocated
	data []byte // the aligned part of mem
}

// NewBuffer returns a buffer for blocks of up to size bytes. GetDirect
// grows it for a larger block.
func NewBuffer(size int) *Buffer {
	b := &Buffer{}
	b.grow(size)
	return b
}

func (b *Buffer) grow(size int) {
	size = (size + directAlign - 1) &^ (directAlign - 1)
	if len(b.data) >= size {
		return
	}
	b.mem = make([]byte, size+directAlign)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b.mem)))) & (directAlign - 1)
	b.data = b.mem[skip : skip+size]
}

// GetDirect returns the contents of a block version like Get, read into buf
// past the page cache (O_DIRECT). The result is valid until buf is used
// again. Use it for a block that the caller keeps in memory, so that a copy
// in the page cache would be of no use. In a profile of a sequential read
// through a host-mode mount, that copy cost more CPU time than checking the
// blocks' hashes. A file system without O_DIRECT is read through the page
// cache.
func (s *Store) GetDirect(r Ref, buf *Buffer) ([]byte, error) {
	path := s.Path(r)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("block %s: %w", r, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read block %s: %w", r, err)
	}
	defer unix.Close(fd)

	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("read block %s: %w", r, err)
	}
	size := int(st.Size)
	buf.grow(size)
	// One read of the whole aligned buffer: it stops at the end of the
	// file, and a second read would start at an offset that O_DIRECT does
	// not accept.
	n, err := unix.Pread(fd, buf.data, 0)
	if errors.Is(err, unix.EINVAL) {
		// The file system wants a larger alignment than directAlign.
		n, err = 0, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read block %s: %w", r, err)
	}
	if n < size {
		// The rest, or all of it after EINVAL, goes through the page cache.
		if err := readRest(path, buf.data[n:size], int64(n)); err != nil {
			return nil, fmt.Errorf("read block %s: %w", r, err)
		}
	}
	return buf.data[:size], nil
}

// readRest reads len(p) bytes of the file at path from off.
func readRest(path string, p []byte, off int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// BufferPool keeps Buffers of one size for reuse.
type BufferPool struct {
	size int
	pool sync.Pool
}

// NewBufferPool returns a pool of buffers for blocks of about size bytes.
func NewBufferPool(size int) *BufferPool {
	return &BufferPool{size: size}
}

// Get returns a buffer from the pool, or a new one.
func (p *BufferPool) Get() *Buffer {
	if b, ok := p.pool.Get().(*Buffer); ok {
		return b
	}
	return NewBuffer(p.size)
}

// Put returns a buffer to the pool. Nothing may use its data afterwards.
func (p *BufferPool) Put(b *Buffer) { p.pool.Put(b) }
