package shm

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// RequiredSeals are the seals that Create sets and Open requires.
const RequiredSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// ErrInvalid is wrapped by the errors of Open for a descriptor that must not
// be mapped: not a memfd, a seal missing, or a size other than the one
// expected.
var ErrInvalid = errors.New("invalid shared memory descriptor")

// Region is a sealed memfd mapped MAP_SHARED for reading and writing.
// Close is safe to call from any goroutine; the other methods must not run
// concurrently with Close.
type Region struct {
	fd   int
	data []byte

	closeOnce sync.Once
	closeErr  error
}

// Create makes a memfd of size bytes named name (the name shows in
// /proc/PID/maps and is not unique), seals it with RequiredSeals and maps
// it. The memory starts zeroed.
func Create(name string, size int) (*Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("create shared memory %q: size %d must be positive", name, size)
	}

	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("create shared memory %q: memfd_create: %w", name, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create shared memory %q: set size to %d bytes: %w", name, size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, RequiredSeals); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create shared memory %q: add seals: %w", name, err)
	}

	return mapRegion(fd, size)
}

// Open checks that fd is a memfd with RequiredSeals and exactly size bytes,
// and maps it. Open takes ownership of fd: the Region closes it, and Open
// closes it when it fails. An error for a descriptor that fails a check
// wraps ErrInvalid.
//
// Other seals are accepted as long as the memory can still be mapped for
// writing. If the peer added F_SEAL_WRITE or F_SEAL_FUTURE_WRITE, the
// mapping fails with EPERM.
func Open(fd int, size int) (*Region, error) {
	if err := check(fd, size); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return mapRegion(fd, size)
}

// check reads the seals before the size, but the order does not matter:
// once F_SEAL_SHRINK and F_SEAL_GROW are present the size cannot change.
func check(fd int, size int) error {
	if size <= 0 {
		return fmt.Errorf("open shared memory: expected size %d must be positive", size)
	}

	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		// EINVAL means the file system has no seals, so fd is no memfd.
		return fmt.Errorf("open shared memory: read seals of fd %d (is it a memfd?): %w: %w", fd, ErrInvalid, err)
	}
	if missing := RequiredSeals &^ seals; missing != 0 {
		return fmt.Errorf("open shared memory: fd %d has seals %#x, missing %#x (the creator must add F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL): %w",
			fd, seals, missing, ErrInvalid)
	}

	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("open shared memory: fstat fd %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("open shared memory: fd %d has file mode %#o, expected a regular file: %w", fd, st.Mode, ErrInvalid)
	}
	if st.Size != int64(size) {
		return fmt.Errorf("open shared memory: fd %d has %d bytes, expected %d: %w", fd, st.Size, size, ErrInvalid)
	}
	return nil
}

func mapRegion(fd int, size int) (*Region, error) {
	data, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("map shared memory of %d bytes: %w", size, err)
	}
	return &Region{fd: fd, data: data}, nil
}

// Bytes returns the mapped memory. Its start is page-aligned.
func (r *Region) Bytes() []byte { return r.data }

// Fd returns the memfd, for sending it to a peer. It stays owned by r.
func (r *Region) Fd() int { return r.fd }

// Close unmaps the memory and closes the memfd. The kernel frees the
// memory when no process maps or holds it any more. Only the first call
// does anything; later calls return its result.
func (r *Region) Close() error {
	r.closeOnce.Do(func() {
		errUnmap := unix.Munmap(r.data)
		errClose := unix.Close(r.fd)
		r.data = nil
		r.fd = -1
		if errUnmap != nil {
			r.closeErr = fmt.Errorf("unmap shared memory: %w", errUnmap)
		} else if errClose != nil {
			r.closeErr = fmt.Errorf("close shared memory fd: %w", errClose)
		}
	})
	return r.closeErr
}
