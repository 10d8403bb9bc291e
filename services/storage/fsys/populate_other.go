//go:build !linux

package fsys

// populate does nothing where Linux's MADV_POPULATE_WRITE does not exist:
// the pages fault as they are written.
func populate([]byte) {}
