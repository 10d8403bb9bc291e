package swtpm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lockFileName is the file in the state directory on which swtpm 0.7 and
// later holds a POSIX write lock (fcntl F_SETLK) for as long as it runs.
const lockFileName = ".lock"

// StateSnapshot is a copy of the regular files in a swtpm state directory
// (tpm2-00.permall, .lock and any other) with their contents, modes,
// owners and access and modification times, and the directory's own times.
type StateSnapshot struct {
	dir   string
	times fileTimes
	files map[string]savedFile
}

type fileTimes struct {
	atime, mtime time.Time
}

type savedFile struct {
	data     []byte
	mode     fs.FileMode
	uid, gid uint32
	times    fileTimes
}

// SnapshotState copies the regular files in the swtpm state directory dir.
// It fails while a swtpm runs on dir, because the copy must be a state
// that swtpm finished writing.
func SnapshotState(dir string) (*StateSnapshot, error) {
	unlock, err := lockState(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot swtpm state: %w", err)
	}
	defer unlock()

	// Each entry is stat'ed before it is read, because reading may advance
	// its access time.
	dirInfo, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot swtpm state: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot swtpm state: %w", err)
	}
	s := &StateSnapshot{dir: dir, times: timesOf(dirInfo), files: map[string]savedFile{}}
	for _, entry := range entries {
		if !entry.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, entry.Name())
		info, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("snapshot swtpm state: %w", err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("snapshot swtpm state: %w", err)
		}
		stat := info.Sys().(*syscall.Stat_t)
		s.files[entry.Name()] = savedFile{data: data, mode: info.Mode().Perm(), uid: stat.Uid, gid: stat.Gid, times: timesOf(info)}
	}
	return s, nil
}

// Restore puts the state directory back as SnapshotState found it. It
// rewrites each saved file whose contents, mode or owner differ, resets the
// access and modification times of the files and the directory, and
// removes the regular files that were not there. Entries that are not
// regular files, such as the sockets of a swtpm that was killed before the
// snapshot, are left alone. Each file is replaced by a rename, so a crash
// during Restore leaves every file either as swtpm wrote it or as it was
// saved. Restore fails, and changes nothing, while a swtpm runs on the
// directory.
func (s *StateSnapshot) Restore() error {
	unlock, err := lockState(s.dir)
	if err != nil {
		return fmt.Errorf("restore swtpm state: %w", err)
	}
	defer unlock()

	for name, saved := range s.files {
		if err := restoreFile(filepath.Join(s.dir, name), saved); err != nil {
			return fmt.Errorf("restore swtpm state: %w", err)
		}
	}
	// The files added since the snapshot go last, because one of them may be
	// the lock file that guards this restore.
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("restore swtpm state: %w", err)
	}
	for _, entry := range entries {
		if _, saved := s.files[entry.Name()]; saved || !entry.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, entry.Name())); err != nil {
			return fmt.Errorf("restore swtpm state: %w", err)
		}
	}

	if err := setTimes(s.dir, s.times); err != nil {
		return fmt.Errorf("restore swtpm state: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("restore swtpm state: %w", err)
	}
	return nil
}

// restoreFile gives path the saved contents, mode, owner and times. It
// writes the file only when they differ from the saved ones.
func restoreFile(path string, saved savedFile) error {
	same, err := matchesSaved(path, saved)
	if err != nil {
		return err
	}
	if !same {
		if err := replaceFile(path, saved); err != nil {
			return err
		}
	}
	return setTimes(path, saved.times)
}

// matchesSaved reports whether path is a regular file with the saved
// contents, mode and owner.
func matchesSaved(path string, saved savedFile) (bool, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	stat := info.Sys().(*syscall.Stat_t)
	if !info.Mode().IsRegular() || info.Mode().Perm() != saved.mode || stat.Uid != saved.uid || stat.Gid != saved.gid || info.Size() != int64(len(saved.data)) {
		return false, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return bytes.Equal(data, saved.data), nil
}

// replaceFile writes the saved contents to a temporary file next to path,
// gives it the saved mode and owner, syncs it and renames it over path.
func replaceFile(path string, saved savedFile) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".restore-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(saved.data); err != nil {
		return err
	}
	if err := f.Chmod(saved.mode); err != nil {
		return err
	}
	// Only root may give a file away, and it needs to only when a node of
	// another user runs as root.
	if int(saved.uid) != os.Geteuid() || int(saved.gid) != os.Getegid() {
		if err := f.Chown(int(saved.uid), int(saved.gid)); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// setTimes sets the access and modification times of path unless they are
// already equal to times, to the nanosecond.
func setTimes(path string, times fileTimes) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if current := timesOf(info); current.atime.Equal(times.atime) && current.mtime.Equal(times.mtime) {
		return nil
	}
	return os.Chtimes(path, times.atime, times.mtime)
}

func timesOf(info fs.FileInfo) fileTimes {
	stat := info.Sys().(*syscall.Stat_t)
	return fileTimes{atime: time.Unix(stat.Atim.Unix()), mtime: time.Unix(stat.Mtim.Unix())}
}

// lockState takes the lock that swtpm holds on dir's lock file while it
// runs, so no swtpm starts on dir until unlock is called. It fails when a
// running swtpm holds the lock. Without a lock file (a directory that no
// swtpm 0.7 or later has used) it checks nothing, and unlock does nothing.
func lockState(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockFileName)
	// Opening without O_CREAT or O_TRUNC leaves the file and its times as
	// they are.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	lock := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lock); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("state directory %s is in use: a running swtpm has locked %s, so stop that swtpm first", dir, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
