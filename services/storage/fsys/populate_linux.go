package fsys

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// populate maps the pages of fresh memory b in one call, where writing to
// them would fault once per page. On the 2-core virtual machine of
// docs/benchmarks.md a copy of 1 GiB into fresh memory took 0.47 to 0.71 s,
// and 0.33 to 0.38 s with the memory populated first. Only the whole pages
// inside b are populated. Kernels before 5.14 lack MADV_POPULATE_WRITE,
// and the pages then fault as before.
func populate(b []byte) {
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	first := (start + page - 1) &^ (page - 1)
	end := (start + uintptr(len(b))) &^ (page - 1)
	if end <= first {
		return
	}
	_ = unix.Madvise(b[first-start:end-start], unix.MADV_POPULATE_WRITE)
}
