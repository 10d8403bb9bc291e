package fusefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// DefaultTimeout is the attribute timeout when Options leaves it zero and
// the file system reports the changes that others make (fsapi.Subscriber),
// so that the server invalidates what the kernel cached. It is also the
// longest time for which the kernel remembers that a name does not exist,
// and the entry timeout of a name beyond maxKnownNames. It bounds how long
// a change that was never reported (a bug, or a change that took effect
// without passing through the daemon's notifications) stays invisible
// there.
const DefaultTimeout = time.Minute

// NamedEntryTimeout is the entry timeout when Options leaves it zero and
// the file system reports changes. The server records every name that it
// gives the kernel with this timeout (knownNames) and invalidates them all
// when reports were lost or ended, so it needs no expiry to bound a loss.
// A name that expired costs a LOOKUP round trip at its next use: 10,000
// files created more than a minute before were deleted at 8,900 files per
// second with a one-minute timeout and at 11,000 with this one. Directories
// get at most DefaultTimeout (see knownNames).
const NamedEntryTimeout = time.Hour

// ShortTimeout is the entry and attribute timeout when Options leaves
// them zero and the file system reports no changes, and the longest
// timeout for one DefaultTimeout after reports were lost. It bounds how
// long a change made elsewhere stays invisible, as libfuse's default of
// one second does.
const ShortTimeout = time.Second

// maxReadAhead is the readahead the server offers. Linux lowers it to its
// own readahead size (128 KiB unless the admin raised it), so a server
// running as root raises the mount's readahead to it after mounting.
const maxReadAhead = fsapi.MaxWrite

// Options configures Mount.
type Options struct {
	FS        fsapi.FS
	Principal principal.Principal // the principal every request of this mount acts for
	Logger    *slog.Logger        // nil means slog.Default()

	// EntryTimeout and AttrTimeout are how long the kernel may use a
	// looked-up name and an inode's attributes without asking again.
	// Zero means DefaultTimeout when FS reports changes and ShortTimeout
	// otherwise, and a negative value turns the cache off. When FS
	// reports changes, the kernel also remembers for EntryTimeout that a
	// name does not exist.
	EntryTimeout time.Duration
	AttrTimeout  time.Duration

	// Debug logs every FUSE request and reply at level Info.
	Debug bool
}

// Server is a mounted file system.
type Server struct {
	mountpoint string
	fuse       *fuse.Server
	raw        *rawFS
	logger     *slog.Logger
	timeouts   *cacheTimeouts
	procs      int // GOMAXPROCS when the server was made
	readers    int // goroutines that may block in read(2) on /dev/fuse at once
}

// Mount mounts opts.FS on mountpoint and serves it until Unmount or until
// someone unmounts the directory. As root it calls mount(2) itself and
// falls back to fusermount3; otherwise it uses fusermount3. The mount point
// must be an existing directory on which nothing is mounted.
func Mount(mountpoint string, opts Options) (*Server, error) {
	if opts.FS == nil {
		return nil, errors.New("fusefs: Options.FS is nil: set the file system to serve")
	}
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", mountpoint, err)
	}
	if err := checkMountpoint(abs); err != nil {
		return nil, err
	}
	// The kernel lists the mount under the path without symbolic links.
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", abs, err)
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("path", abs, "principal", opts.Principal)

	// Subscribing before the mount means that the kernel caches nothing
	// from before the subscription.
	sub := subscribe(opts.FS, logger)
	timeouts := &cacheTimeouts{
		entry: cacheTimeout(opts.EntryTimeout, sub != nil, NamedEntryTimeout),
		attr:  cacheTimeout(opts.AttrTimeout, sub != nil, DefaultTimeout),
	}
	timeouts.notified.Store(sub != nil)
	ctx, stopFollowing := context.WithCancel(context.Background())
	reporter, ok := opts.FS.(fsapi.DirReporter)
	if !ok {
		reporter = withoutDirAttrs{opts.FS}
	}
	raw := &rawFS{
		fs:        opts.FS,
		principal: opts.Principal,
		logger:    logger,
		timeouts:  timeouts,
		groups:    newGroupCache(groupCacheTTL),
		pages:     newPageCache(),
		dirAttrs:  newDirAttrs(),
		noCap:     newNoCapability(),
		setID:     newSetIDFiles(),
		names:     newKnownNames(maxKnownNames),
		reporter:  reporter,
		unmounted: stopFollowing,
	}

	root := os.Geteuid() == 0
	goFuseLevel := slog.LevelWarn
	if opts.Debug {
		goFuseLevel = slog.LevelInfo
	}
	mountOpts := &fuse.MountOptions{
		FsName:       "blocktree",
		Name:         "blocktree", // the type shows as fuse.blocktree
		AllowOther:   root,
		DirectMount:  root,
		MaxWrite:     fsapi.MaxWrite,
		MaxReadAhead: maxReadAhead,
		EnableLocks:  true,
		// The daemon clears set-ID bits and capabilities itself (see
		// setIDFiles).
		ExtraCapabilities: fuse.CAP_HANDLE_KILLPRIV_V2,
		Options:           []string{"default_permissions"},
		Debug:             opts.Debug,
		Logger:            slog.NewLogLogger(logger.With("component", "go-fuse").Handler(), goFuseLevel),
	}

	procs := runtime.GOMAXPROCS(0)
	srv, err := fuse.NewServer(raw, abs, mountOpts)
	if err != nil {
		stopFollowing()
		return nil, fmt.Errorf("mount blocktree on %s: %w", abs, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		stopFollowing()
		_ = srv.Unmount()
		return nil, fmt.Errorf("mount blocktree on %s: %w", abs, err)
	}
	if root {
		raiseReadAhead(resolved, logger)
	}
	s := &Server{mountpoint: abs, fuse: srv, raw: raw, logger: logger, timeouts: timeouts, procs: procs, readers: blockingReaders(procs)}
	if sub != nil {
		go s.followChanges(ctx, sub, timeouts)
	}
	logger.Info("file system mounted", "allow_other", root, "notified", sub != nil, "entry_timeout", timeouts.entry, "attr_timeout", timeouts.attr)
	return s, nil
}

// Notified reports whether the server invalidates the kernel's caches for
// changes made elsewhere, because the file system reports them, and so lets
// the kernel cache names and attributes for long.
func (s *Server) Notified() bool { return s.timeouts.notified.Load() }

// blockingReaders returns how many goroutines of a go-fuse server read
// requests when GOMAXPROCS was procs at its creation. go-fuse v2.12.1
// allows GOMAXPROCS readers, at least 2 and at most 16, and one more
// because it checks the limit after a reader starts. Each of them waits in
// read(2) on /dev/fuse while the kernel has no request for it.
func blockingReaders(procs int) int { return min(max(procs, 2), 16) + 1 }

// BlockingReaders returns how many goroutines of the server may wait in
// read(2) on /dev/fuse at the same time. A goroutine blocked in a system
// call keeps its P (one of GOMAXPROCS) until the runtime's sysmon thread
// takes it back. So in a process whose GOMAXPROCS equals its CPUs these
// waits cost CPU time, which ReserveReaderProcs gives back.
func (s *Server) BlockingReaders() int { return s.readers }

// ReserveReaderProcs raises GOMAXPROCS to its value at the mount plus
// BlockingReaders, so that the readers waiting in read(2) leave as many Ps
// for work as there were before the mount. It never lowers GOMAXPROCS and
// leaves it alone when the environment sets it. It returns the value in
// force afterwards. GOMAXPROCS applies to the whole process, so the
// program that mounts decides whether to call this.
//
// On a 2-core machine with GOMAXPROCS 2, a sequential read of 1 GiB
// through a host-mode mount left the CPUs idle a quarter of the time while
// goroutines were runnable, because the three readers and the block
// store's reads held the Ps (docs/benchmarks.md, "GOMAXPROCS and the FUSE
// readers").
func (s *Server) ReserveReaderProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	procs := max(runtime.GOMAXPROCS(0), s.procs+s.readers)
	runtime.GOMAXPROCS(procs)
	s.logger.Info("raised GOMAXPROCS for the FUSE readers", "gomaxprocs", procs, "readers", s.readers)
	return procs
}

// Mountpoint returns the absolute path of the mount point.
func (s *Server) Mountpoint() string { return s.mountpoint }

// ErrBusy is wrapped by the error of Unmount while a process has a file or
// its working directory on the mount. The server then goes on serving.
var ErrBusy = errors.New("mount point is busy")

// Unmount unmounts the file system and waits until the server has stopped.
func (s *Server) Unmount() error {
	err := s.fuse.Unmount()
	if err == nil {
		s.logger.Info("file system unmounted")
		return nil
	}
	text := strings.Join(strings.Fields(err.Error()), " ")
	s.logger.Error("unmount failed", "error", text)
	if errors.Is(err, syscall.EBUSY) || fusermountCause(text) == syscall.EBUSY.Error() {
		return fmt.Errorf("unmount %s: %w", s.mountpoint, ErrBusy)
	}
	return fmt.Errorf("unmount %s: %w", s.mountpoint, oneLineError{text: text, err: err})
}

// fusermountCause returns the reason, in lower case, from the error that
// go-fuse v2.12.1 makes of fusermount3's output: "fusermount3: failed to
// unmount PATH: REASON (code exit status 1)" with line breaks. go-fuse runs
// fusermount3 unless it mounted the file system itself, and its error then
// wraps no errno.
func fusermountCause(text string) string {
	text, _, _ = strings.Cut(text, " (code ")
	if i := strings.LastIndex(text, ": "); i >= 0 {
		text = text[i+2:]
	}
	return strings.ToLower(text)
}

// oneLineError is an error whose text was joined into one line.
type oneLineError struct {
	text string
	err  error
}

func (e oneLineError) Error() string { return e.text }
func (e oneLineError) Unwrap() error { return e.err }

// Wait blocks until the file system is unmounted, by Unmount or from
// outside.
func (s *Server) Wait() { s.fuse.Wait() }

// InvalidateEntry makes the kernel forget the name in directory parent, so
// that the next access looks it up again. Call it when the tree changes
// other than through this mount, but not while handling a request of this
// mount for parent, which would deadlock the kernel.
func (s *Server) InvalidateEntry(parent fsapi.Ino, name string) error {
	return notifyError("invalidate entry", s.fuse.EntryNotify(uint64(parent), name))
}

// InvalidateInode makes the kernel drop the cached attributes and data of
// ino. The same restriction as for InvalidateEntry applies.
func (s *Server) InvalidateInode(ino fsapi.Ino) error {
	return notifyError("invalidate inode", s.fuse.InodeNotify(uint64(ino), 0, 0))
}

// notifyError converts a notification status. ENOENT means that the kernel
// has nothing cached for the inode, so nothing needed invalidating.
func notifyError(op string, st fuse.Status) error {
	if st == fuse.OK || st == fuse.ENOENT {
		return nil
	}
	return fmt.Errorf("%s: %w", op, syscall.Errno(st))
}

// cacheTimeout returns the timeout for an Options value d, where 0 picks
// long, the default for a file system that reports changes (notified), or
// ShortTimeout.
func cacheTimeout(d time.Duration, notified bool, long time.Duration) time.Duration {
	switch {
	case d == 0 && notified:
		return long
	case d == 0:
		return ShortTimeout
	case d < 0:
		return 0
	}
	return d
}

// checkMountpoint returns a one-line error naming path unless it is an
// existing directory with nothing mounted on it.
func checkMountpoint(path string) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist: create the directory first", path)
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("mount point %s is busy: a FUSE file system whose server has stopped is still mounted there; run fusermount3 -u %s", path, path)
	case err != nil:
		return fmt.Errorf("mount point %s: %w", path, err)
	case !info.IsDir():
		return fmt.Errorf("mount point %s is not a directory", path)
	}

	mounted, fstype, err := isMountpoint(path)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	if mounted {
		return fmt.Errorf("mount point %s is busy: a %s file system is already mounted there; unmount it first", path, fstype)
	}
	return nil
}

// isMountpoint reports whether path (absolute, and resolved here through
// symbolic links) is the mount point of a mount in /proc/self/mountinfo,
// and that mount's file system type.
func isMountpoint(path string) (bool, string, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false, "", err
	}
	entry, found, err := findMount(resolved)
	return found, entry.fstype, err
}

// mountEntry holds the fields of a mount's line in /proc/self/mountinfo
// that the server uses.
type mountEntry struct {
	device string // major:minor of the mount's device
	fstype string
}

// findMount returns the last mount, the one on top, whose mount point is
// resolved (an absolute path without symbolic links) in
// /proc/self/mountinfo. It does not touch the mount itself.
func findMount(resolved string) (mountEntry, bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false, err
	}
	defer f.Close()

	var last mountEntry
	found := false
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		// Fields: id parent major:minor root mountpoint options [optional...] - fstype source superoptions.
		fields := strings.Fields(scanner.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != resolved {
			continue
		}
		last, found = mountEntry{device: fields[2], fstype: "unknown"}, true
		for i, field := range fields {
			if field == "-" && i+1 < len(fields) {
				last.fstype = fields[i+1]
				break
			}
		}
	}
	return last, found, scanner.Err()
}

// unescapeMountinfo decodes the octal escapes (\040 for a space and so on)
// that the kernel writes for space, tab, newline and backslash in
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// raiseReadAhead sets the readahead of the mount at resolved (its mount
// point without symbolic links) to maxReadAhead through sysfs, which only
// root may write. Linux offers a FUSE server at most 128 KiB in INIT, and
// each readahead request is a round trip through the server and the
// daemon. A sequential 1 GiB read through a host-mode mount ran at 340 to
// 350 MB/s with 128 KiB and at 440 to 480 MB/s with 1 MiB. A failure only
// costs speed, so it is logged.
//
// The mount's device comes from /proc/self/mountinfo, because a stat(2) of
// the mount point would be a request to this server.
func raiseReadAhead(resolved string, logger *slog.Logger) {
	entry, found, err := findMount(resolved)
	if err == nil && !found {
		err = errors.New("mount point not found in /proc/self/mountinfo")
	}
	if err != nil {
		logger.Warn("readahead left at the kernel's default", "path", resolved, "error", err)
		return
	}
	file := readAheadFile(entry.device)
	value := strconv.Itoa(maxReadAhead / 1024)
	if err := os.WriteFile(file, []byte(value), 0); err != nil {
		logger.Warn("readahead left at the kernel's default", "path", resolved, "file", file, "error", err)
		return
	}
	logger.Debug("readahead raised", "path", resolved, "file", file, "kib", value)
}

// readAheadFile returns the sysfs file that holds the readahead, in KiB,
// of the file system on device (major:minor).
func readAheadFile(device string) string {
	return "/sys/class/bdi/" + device + "/read_ahead_kb"
}
