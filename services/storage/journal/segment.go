package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	segmentSuffix = ".seg"
	tempSuffix    = ".tmp"
	seqDigits     = 20 // decimal digits of the largest uint64
)

// segmentInfo is a segment file as named in the directory.
type segmentInfo struct {
	name     string
	firstSeq uint64
}

func segmentName(firstSeq uint64) string {
	return fmt.Sprintf("%0*d%s", seqDigits, firstSeq, segmentSuffix)
}

// parseSegmentName returns the first seq in a segment file name. Only the
// exact form that segmentName writes is accepted, so each seq has one name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || seq == 0 || segmentName(seq) != name {
		return 0, false
	}
	return seq, true
}

// listSegments returns the segments in dir by first seq, and the names of
// temporary files that a crash during segment creation left behind.
func listSegments(dir string) ([]segmentInfo, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list journal %s: %w", dir, err)
	}
	var segments []segmentInfo
	var temps []string
	for _, entry := range entries {
		name := entry.Name()
		if base, ok := strings.CutSuffix(name, tempSuffix); ok {
			if _, ok := parseSegmentName(base); ok {
				temps = append(temps, name)
			}
			continue
		}
		if seq, ok := parseSegmentName(name); ok && entry.Type().IsRegular() {
			segments = append(segments, segmentInfo{name: name, firstSeq: seq})
		}
	}
	slices.SortFunc(segments, func(a, b segmentInfo) int {
		switch {
		case a.firstSeq < b.firstSeq:
			return -1
		case a.firstSeq > b.firstSeq:
			return 1
		}
		return 0
	})
	return segments, temps, nil
}

// syncHooks are the system calls that make data durable. Tests replace them
// to count the calls and to make them fail.
type syncHooks struct {
	fdatasync func(f *os.File) error
	fsyncDir  func(f *os.File) error
}

func defaultSyncHooks() syncHooks {
	return syncHooks{
		fdatasync: func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) },
		fsyncDir:  func(f *os.File) error { return f.Sync() },
	}
}

// createSegment writes a new segment with only its header and makes its
// directory entry durable. It writes the file under a temporary name first,
// so that a crash never leaves a segment without a complete header.
func createSegment(dir *os.File, hooks syncHooks, header segmentHeader) (*os.File, string, error) {
	name := segmentName(header.firstSeq)
	path := filepath.Join(dir.Name(), name)
	temp := path + tempSuffix

	if _, err := os.Lstat(path); err == nil {
		return nil, "", fmt.Errorf("create segment %s: %w", path, fs.ErrExist)
	}
	if err := os.Remove(temp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("create segment %s: %w", path, err)
	}
	f, err := os.OpenFile(temp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("create segment %s: %w", path, err)
	}
	fail := func(err error) (*os.File, string, error) {
		f.Close()
		os.Remove(temp)
		return nil, "", fmt.Errorf("create segment %s: %w", path, err)
	}
	if _, err := f.WriteAt(header.encode(), 0); err != nil {
		return fail(err)
	}
	if err := hooks.fdatasync(f); err != nil {
		return fail(fmt.Errorf("fdatasync: %w", err))
	}
	if err := os.Rename(temp, path); err != nil {
		return fail(err)
	}
	if err := hooks.fsyncDir(dir); err != nil {
		// The file has its final name, so removing the temporary name is moot,
		// and the caller stops using the journal after this error.
		f.Close()
		return nil, "", fmt.Errorf("create segment %s: fsync directory: %w", path, err)
	}
	return f, name, nil
}

// makeDir creates the journal directory with mode 0700 if it is missing and
// fsyncs its parent, so that the new directory survives a crash.
func makeDir(path string, hooks syncHooks) error {
	info, err := os.Stat(path)
	if err == nil {
		if !info.IsDir() {
			return fmt.Errorf("journal %s: not a directory", path)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create journal directory: %w", err)
	}
	parent, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("create journal directory: open parent: %w", err)
	}
	defer parent.Close()
	if err := hooks.fsyncDir(parent); err != nil {
		return fmt.Errorf("create journal directory: fsync %s: %w", parent.Name(), err)
	}
	return nil
}

// lockDir takes an exclusive flock on the directory, so that two Logs never
// append to one journal. The lock ends when dir is closed, also on a crash.
func lockDir(dir *os.File) error {
	err := unix.Flock(int(dir.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("lock journal %s: %w", dir.Name(), ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("lock journal %s: %w", dir.Name(), err)
	}
	return nil
}

// readHeaderOf reads the header of a segment file that is not open yet and
// returns it with the size of the file.
func readHeaderOf(dir string, seg segmentInfo) (segmentHeader, int64, error) {
	f, err := os.Open(filepath.Join(dir, seg.name))
	if err != nil {
		return segmentHeader{}, 0, &readError{err}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return segmentHeader{}, 0, &readError{err}
	}
	header, err := readSegmentHeader(newSegmentReader(f, info.Size()))
	return header, info.Size(), err
}
