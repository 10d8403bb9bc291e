package hostmode

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is what the tests compare of one file, directory or symlink.
type entry struct {
	mode     uint32 // st_mode: type and permission bits, with setuid, setgid and sticky
	uid, gid uint32
	size     int64
	mtime    unix.Timespec
	nlink    uint64
	ino      uint64
	sum      [sha256.Size]byte // contents of a regular file
	target   string            // target of a symlink
	xattrs   map[string]string // user.* extended attributes
	links    []string          // every path of the tree with the same inode, for hard links
}

// scanTree returns every entry under root by path relative to root, with
// "." for root itself. Symlinks are not followed.
func scanTree(t *testing.T, root string) map[string]*entry {
	t.Helper()
	tree := map[string]*entry{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		e, err := scanEntry(path)
		if err != nil {
			return err
		}
		tree[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}

	byInode := map[uint64][]string{}
	for rel, e := range tree {
		if e.mode&syscall.S_IFMT != syscall.S_IFDIR && e.nlink > 1 {
			byInode[e.ino] = append(byInode[e.ino], rel)
		}
	}
	for _, paths := range byInode {
		slices.Sort(paths)
		for _, rel := range paths {
			tree[rel].links = paths
		}
	}
	return tree
}

func scanEntry(path string) (*entry, error) {
	var st unix.Stat_t
	if err := ignoringEINTR(func() error { return unix.Lstat(path, &st) }); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	e := &entry{
		mode:  st.Mode,
		uid:   st.Uid,
		gid:   st.Gid,
		size:  st.Size,
		mtime: st.Mtim,
		nlink: st.Nlink,
		ino:   st.Ino,
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		sum, err := hashFile(path)
		if err != nil {
			return nil, err
		}
		e.sum = sum
	case syscall.S_IFLNK:
		target, err := os.Readlink(path)
		if err != nil {
			return nil, err
		}
		e.target = target
	}
	xattrs, err := userXattrs(path)
	if err != nil {
		return nil, err
	}
	e.xattrs = xattrs
	return e, nil
}

func hashFile(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("read %s: %w", path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// userXattrs returns the user.* extended attributes of path, without
// following a symlink.
func userXattrs(path string) (map[string]string, error) {
	size, err := ignoringEINTR2(func() (int, error) { return unix.Llistxattr(path, nil) })
	if err != nil {
		return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = ignoringEINTR2(func() (int, error) { return unix.Llistxattr(path, buf) })
	if err != nil {
		return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
	}
	xattrs := map[string]string{}
	for name := range strings.SplitSeq(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		value, err := getXattr(path, name)
		if err != nil {
			return nil, err
		}
		xattrs[name] = value
	}
	return xattrs, nil
}

func getXattr(path, name string) (string, error) {
	size, err := ignoringEINTR2(func() (int, error) { return unix.Lgetxattr(path, name, nil) })
	if err != nil {
		return "", &fs.PathError{Op: "lgetxattr " + name, Path: path, Err: err}
	}
	buf := make([]byte, size)
	size, err = ignoringEINTR2(func() (int, error) { return unix.Lgetxattr(path, name, buf) })
	if err != nil {
		return "", &fs.PathError{Op: "lgetxattr " + name, Path: path, Err: err}
	}
	return string(buf[:size]), nil
}

// ignoringEINTR calls fn again while it fails with EINTR. Since Go 1.14
// the runtime preempts goroutines with signals, so a system call made
// through x/sys/unix may fail with EINTR where a FUSE server honors the
// kernel's interrupt, as Blocktree's does (services/fuse returns EINTR for
// an interrupted request). The os package retries such calls itself.
func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
		eintrRetries.Add(1)
	}
}

func ignoringEINTR2[T any](fn func() (T, error)) (T, error) {
	for {
		v, err := fn()
		if !errors.Is(err, syscall.EINTR) {
			return v, err
		}
		eintrRetries.Add(1)
	}
}

// eintrRetries counts the calls that ignoringEINTR repeated, for the logs.
var eintrRetries atomic.Int64

// compareOptions selects what compareTrees checks beyond type, contents,
// permission bits and symlink targets.
type compareOptions struct {
	owner     bool // uid and gid
	mtime     bool // mtime to the second, symlinks included
	mtimeNsec bool // mtime to the nanosecond as well
	xattrs    bool
	hardLinks bool // the same paths share an inode, and link counts match
}

// maxReported bounds the differences compareTrees reports, so that one
// systematic failure does not print thousands of lines.
const maxReported = 25

// compareTrees reports every difference of got from want as a test error.
func compareTrees(t *testing.T, label string, want, got map[string]*entry, opts compareOptions) {
	t.Helper()
	reported := 0
	report := func(format string, args ...any) {
		t.Helper()
		reported++
		if reported <= maxReported {
			t.Errorf(label+": "+format, args...)
		}
	}

	for _, rel := range slices.Sorted(maps.Keys(want)) {
		w := want[rel]
		g, ok := got[rel]
		if !ok {
			report("%s is missing", rel)
			continue
		}
		if w.mode != g.mode {
			report("%s has mode %s (%#o), expected %s (%#o)", rel, modeString(g.mode), g.mode, modeString(w.mode), w.mode)
			continue
		}
		switch w.mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			if w.size != g.size {
				report("%s has %d bytes, expected %d", rel, g.size, w.size)
			} else if w.sum != g.sum {
				report("%s differs in contents from the original (same size %d)", rel, w.size)
			}
		case syscall.S_IFLNK:
			if w.target != g.target {
				report("symlink %s points to %q, expected %q", rel, g.target, w.target)
			}
		}
		if opts.owner && (w.uid != g.uid || w.gid != g.gid) {
			report("%s is owned by %d:%d, expected %d:%d", rel, g.uid, g.gid, w.uid, w.gid)
		}
		if opts.mtime && w.mtime.Sec != g.mtime.Sec {
			report("%s has mtime %d.%09d, expected %d.%09d (compared to the second)", rel, g.mtime.Sec, g.mtime.Nsec, w.mtime.Sec, w.mtime.Nsec)
		} else if opts.mtimeNsec && w.mtime.Nsec != g.mtime.Nsec {
			report("%s has mtime %d.%09d, expected %d.%09d (compared to the nanosecond)", rel, g.mtime.Sec, g.mtime.Nsec, w.mtime.Sec, w.mtime.Nsec)
		}
		if opts.xattrs && !maps.Equal(w.xattrs, g.xattrs) {
			report("%s has user xattrs %q, expected %q", rel, g.xattrs, w.xattrs)
		}
		if opts.hardLinks && w.mode&syscall.S_IFMT != syscall.S_IFDIR {
			if !slices.Equal(w.links, g.links) {
				report("%s shares its inode with %v, expected %v", rel, g.links, w.links)
			}
			if w.nlink != g.nlink {
				report("%s has link count %d, expected %d", rel, g.nlink, w.nlink)
			}
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[rel]; !ok {
			report("%s is there but not in the original", rel)
		}
	}
	if reported > maxReported {
		t.Errorf("%s: %d more differences not shown", label, reported-maxReported)
	}
}

func modeString(mode uint32) string {
	fm := fs.FileMode(mode & 0o777)
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		fm |= fs.ModeDir
	case syscall.S_IFLNK:
		fm |= fs.ModeSymlink
	}
	if mode&syscall.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if mode&syscall.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if mode&syscall.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm.String()
}

// snapshot is the exact contents of a directory tree: each entry's type and
// permission bits, and the bytes of each regular file and symlink target.
type snapshot map[string]string

// takeSnapshot records every entry under root. A missing root gives an
// empty snapshot with a marker, so that creating root later is a change.
func takeSnapshot(t *testing.T, root string) snapshot {
	t.Helper()
	snap := snapshot{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			snap["."] = "(does not exist)"
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d bytes sha256 %x", len(data), sha256.Sum256(data))
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		snap[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return snap
}

// compareSnapshots reports every entry that was added, removed or changed.
func compareSnapshots(t *testing.T, label string, before, after snapshot) {
	t.Helper()
	for _, rel := range slices.Sorted(maps.Keys(before)) {
		if a, ok := after[rel]; !ok {
			t.Errorf("%s: %s was removed (was %s)", label, rel, before[rel])
		} else if a != before[rel] {
			t.Errorf("%s: %s changed from %s to %s", label, rel, before[rel], a)
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[rel]; !ok {
			t.Errorf("%s: %s was created (%s)", label, rel, after[rel])
		}
	}
}

// findBytes returns the files under root (regular files only) that contain
// needle.
func findBytes(t *testing.T, root string, needle []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("search %s: %v", root, err)
	}
	return found
}
