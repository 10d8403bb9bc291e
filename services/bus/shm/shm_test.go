package shm

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// dupFd returns a second descriptor for the memfd of r, as a peer would
// receive it.
func dupFd(t *testing.T, r *Region) int {
	t.Helper()
	fd, err := unix.FcntlInt(uintptr(r.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("dup memfd: %v", err)
	}
	return fd
}

func TestCreateOpenShareMemory(t *testing.T) {
	const size = 3 * 4096
	creator, err := Create("test", size)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer creator.Close()

	peer, err := Open(dupFd(t, creator), size)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer peer.Close()

	creator.Bytes()[size-1] = 0x5a
	if got := peer.Bytes()[size-1]; got != 0x5a {
		t.Errorf("peer reads %#x at the last byte, want 0x5a written by the creator", got)
	}
	peer.Bytes()[0] = 0xa5
	if got := creator.Bytes()[0]; got != 0xa5 {
		t.Errorf("creator reads %#x at the first byte, want 0xa5 written by the peer", got)
	}
}

func TestCreateSealsPreventResize(t *testing.T) {
	r, err := Create("test", 4096)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer r.Close()

	if err := unix.Ftruncate(r.Fd(), 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("shrink sealed memfd: err = %v, want EPERM", err)
	}
	if err := unix.Ftruncate(r.Fd(), 8192); !errors.Is(err, unix.EPERM) {
		t.Errorf("grow sealed memfd: err = %v, want EPERM", err)
	}
	if _, err := unix.FcntlInt(uintptr(r.Fd()), unix.F_ADD_SEALS, unix.F_SEAL_FUTURE_WRITE); !errors.Is(err, unix.EPERM) {
		t.Errorf("add seal after F_SEAL_SEAL: err = %v, want EPERM", err)
	}
}

func TestOpenRejectsUnsealedMemfd(t *testing.T) {
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	if err := unix.Ftruncate(fd, 4096); err != nil {
		t.Fatalf("ftruncate: %v", err)
	}
	// Two of the three seals: a peer could still grow the file.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		t.Fatalf("add seals: %v", err)
	}

	r, err := Open(fd, 4096)
	if err == nil {
		r.Close()
		t.Fatal("Open accepted a memfd without F_SEAL_GROW")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Open error = %v, want it to wrap ErrInvalid", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("Open left the rejected fd open (F_GETFD err = %v)", err)
	}
}

func TestOpenRejectsMemfdWithoutSealing(t *testing.T) {
	fd, err := unix.MemfdCreate("nosealing", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	if err := unix.Ftruncate(fd, 4096); err != nil {
		t.Fatalf("ftruncate: %v", err)
	}

	r, err := Open(fd, 4096)
	if err == nil {
		r.Close()
		t.Fatal("Open accepted a memfd created without MFD_ALLOW_SEALING")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Open error = %v, want it to wrap ErrInvalid", err)
	}
}

func TestOpenRejectsWrongSize(t *testing.T) {
	r, err := Create("small", 4096)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer r.Close()

	for _, size := range []int{8192, 4095} {
		peer, err := Open(dupFd(t, r), size)
		if err == nil {
			peer.Close()
			t.Errorf("Open accepted a 4096-byte memfd as %d bytes", size)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Open as %d bytes: error = %v, want it to wrap ErrInvalid", size, err)
		}
	}
}

func TestOpenRejectsRegularFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notmemfd")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}

	r, err := Open(fd, 4096)
	if err == nil {
		r.Close()
		t.Fatal("Open accepted a regular file")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Open error = %v, want it to wrap ErrInvalid", err)
	}
}

func TestCloseTwice(t *testing.T) {
	r, err := Create("close", 4096)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
