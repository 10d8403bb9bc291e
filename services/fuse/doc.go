// Package fusefs serves a Blocktree file system (any fsapi.FS) to the Linux
// kernel through FUSE.
//
// # Model
//
// The server uses go-fuse's raw API (fuse.RawFileSystem), because fsapi is
// already inode-based: every kernel request becomes exactly one fsapi call,
// except READDIRPLUS, which adds one Lookup per entry, and a RELEASE that
// carries FUSE_RELEASE_FLOCK_UNLOCK, which adds one Flock(LOCK_UN). The server
// keeps no file system state of its own, only a record of the kernel's
// caches (knownNames and the sets beside it):
//
//   - Kernel node ids are fsapi inode numbers, and the root is 1 on both
//     sides. fsapi never reuses an inode number within a tree, so every
//     entry carries generation 0.
//   - FORGET reaches only the server's knowledge of the kernel's caches.
//     The daemon keeps an inode alive while it has a name or an open
//     handle, not while the kernel remembers it. A node id that the kernel
//     still holds for a deleted inode gets the daemon's error, usually
//     ENOENT.
//   - File handles (fh) are fsapi.HandleID values, passed through unchanged.
//   - Directory offsets are fsapi.DirEntry cookies. The kernel passes back
//     the cookie of the last entry it used, so a reader sees every entry
//     that existed throughout its reading exactly once, which fsapi.DirEntry
//     requires of the daemon (the posixsuite readdir subtests check it
//     through this server).
//
// # Callers and permissions
//
// Every request carries an fsapi.Caller built from the FUSE request header:
// the file system uid and gid of the calling thread (the real ids for
// ACCESS, as the kernel sends them), its thread id as PID, and
// Options.Principal. FUSE requests do not carry supplementary groups, so
// the server reads them from the "Groups:" line of /proc/PID/status and
// caches them for one second per (pid, uid, gid). A process that changes its
// groups with setgroups(2) can therefore act with its old groups for up to
// one second, and a request whose thread has already exited gets no
// supplementary groups.
//
// Permissions are checked twice. The daemon checks every request itself,
// because only it knows the principal's writecaps and the current mode and
// owner of each inode. The mount also uses the kernel's default_permissions
// option, because a name that the kernel has cached is used without a
// LOOKUP: without the option Linux would check no search permission on the
// directories of such a path, and for up to EntryTimeout after one user
// looked a name up, another could reach it through a directory it may not
// search. The kernel checks against the attributes it cached. A chmod made
// through this mount updates the kernel's copy at once. After a chmod made
// through another client of the daemon, the kernel can therefore reject
// what the daemon would allow, until the change notification arrives or,
// without notifications, for up to AttrTimeout. It can never allow what
// the daemon rejects, since the daemon checks again.
//
// When the server runs as root it mounts with allow_other, so that other
// users can reach the mount at all, and the daemon's checks decide what
// they may do there.
//
// # Kernel caches
//
// Lookups and attributes are cached by the kernel for EntryTimeout and
// AttrTimeout. Changes made through this mount are visible at once, because
// the kernel updates its caches from its own requests. Other clients of
// the same daemon (another mount, a Wasm program, the daemon's socket) make
// changes too. For those, the server subscribes to the daemon's change
// notifications at mount time, when the file system implements
// fsapi.Subscriber, as the storage protocol's client does. A goroutine of
// the server turns each notification into a FUSE invalidation:
//
//   - of the name (NOTIFY_INVAL_ENTRY) for a created, removed or renamed
//     entry;
//   - of the attributes (NOTIFY_INVAL_INODE with a negative offset) for a
//     chmod, a link count or a directory's mtime;
//   - of the attributes and cached data for a write, truncate or fallocate.
//
// A change therefore shows in stat(2), path lookup and open on this mount
// as soon as its notification has passed through the daemon, the client
// and the kernel. That is shortly after the other client's request
// returned, not at that moment. The kernel then caches the names of files
// other than directories for NamedEntryTimeout (an hour), and directory
// names and attributes for DefaultTimeout (a minute). It remembers failed
// lookups for DefaultTimeout too, because the creation of a name is
// notified. The server records every name that it gives with the long
// timeout (knownNames).
//
// The invalidations never run inside a request handler: the kernel takes
// the directory's lock for NOTIFY_INVAL_ENTRY, and a request in the same
// directory holds that lock until the server replies, so a handler that
// invalidated would wait for itself. An invalidation that the kernel
// rejects with ENOENT found nothing cached, which is success.
//
// When notifications were lost, because this server did not take them in
// time and the daemon's or the client's queue overflowed, the server gets
// one change of everything (fsapi.ChangeAll). It then invalidates every
// recorded name and the attributes of the inodes they lead to. What it did
// not record (attributes, failed lookups, names beyond maxKnownNames)
// lasts at most DefaultTimeout, so for that long it replies with
// ShortTimeout and caches no failed lookups. When the subscription ends
// (the daemon's connection went down), the server invalidates the recorded
// names too and uses ShortTimeout from then on.
//
// A file system that does not report changes gets ShortTimeout (one
// second, libfuse's default) and no cached failed lookups, so a change made
// elsewhere stays invisible for up to a second.
//
// File data goes through the kernel's page cache. At each open the server
// fetches the file's attributes. It sets FOPEN_KEEP_CACHE only when no one
// but this mount changed the file since this mount last opened it, because
// the kernel applies this mount's changes to its own pages (see pageCache). Otherwise the kernel drops the cached data at the open. It
// also drops it when a refreshed attribute shows a new size or mtime
// (CAP_AUTO_INVAL_DATA). Readers therefore get close-to-open consistency,
// and a file read again is served from the page cache.
//
// The writeback cache is off, and Options has no switch for it. With it the
// kernel would collect writes in its page cache and decide itself when they
// reach the daemon, and it would own mtime and size until then. Blocktree
// documents that an acknowledged write(2) is in the journal order, so each
// write(2) must reach the daemon before it returns. Without the writeback
// cache it does: the kernel sends every write through, in requests of at most
// MaxWrite (1 MiB, fsapi.MaxWrite), so a single write(2) larger than 1 MiB
// reaches the daemon as several requests. Reads of up to 1 MiB go into
// buffers that go-fuse takes from its pool. The kernel limits readahead to
// the smaller of MaxReadAhead and its own readahead size (128 KiB by default
// on Linux). A server that runs as root then raises the mount's readahead
// to 1 MiB through sysfs, so that a sequential reader gets 1 MiB requests.
//
// # Locks
//
// POSIX record locks and flock(2) locks are forwarded to the daemon, so that
// they hold across processes and across clients. The kernel sends flock(2)
// as SETLK or SETLKW with FUSE_LK_FLOCK, which the server maps to
// fsapi.Flock. The kernel's "to end of file" is OFFSET_MAX (2^63-1) and
// fsapi's is math.MaxUint64, and the server converts in both directions. FLUSH
// carries the lock owner of the closing process, and the daemon releases
// that owner's POSIX locks in Flush. That is all Flush does, so the server
// sends it only for an inode on which a request through this server tried
// to take a POSIX lock, and replies to it itself for every other file. The RELEASE of an open file
// description that held a flock lock carries FUSE_RELEASE_FLOCK_UNLOCK, and
// the server then calls Flock(LOCK_UN) before Release. Linux sends RELEASE
// asynchronously, after the last close(2) has returned, so another open
// file description can find the flock lock still held for a moment after
// that close. Local file systems drop it before close(2) returns.
//
// # Errors
//
// An error that wraps a syscall.Errno goes to the kernel as that errno. A
// canceled context (the kernel interrupted the request) becomes EINTR.
// Any other error becomes EIO and is logged with the operation and the
// inode number (log key node).
//
// # Not supported
//
// Linux sends FUSE_SYNCFS only to virtiofs (in Linux 6.x only
// fs/fuse/virtio_fs.c sets fc->sync_fs), and go-fuse v2.12.1 has no handler
// for it either. syncfs(2) and sync(1) therefore return 0 on the mount
// without reaching the daemon, and fsapi.SyncFS is never called from here.
// fsync(2) and fdatasync(2) do reach the daemon, as Fsync.
//
// NOTE: docs/fs.md lists syncfs among the calls that make every earlier
// entry durable, but through this mount it makes nothing durable.
//
// go-fuse v2.12.1 does not dispatch FUSE_TMPFILE, so O_TMPFILE fails with
// EOPNOTSUPP. Ioctl is not supported (ENOTTY), and poll(2) reports the file
// as always ready.
//
// # Buffer lifetime
//
// The byte slices that the server passes to Write and to Read's
// destination belong to go-fuse's buffer pool and are reused once the
// call returns, so an fsapi.FS must copy data that it keeps. Names and
// xattr values are copies.
//
// A file system that implements fsapi.ViewReader, such as the storage
// protocol's client, returns read data as a view instead of filling
// go-fuse's buffer. go-fuse writes the view to the kernel and then calls
// Done on the read result, which releases the view.
//
// # Threads
//
// go-fuse reads requests from /dev/fuse with up to GOMAXPROCS + 1
// goroutines, at least 3 and at most 17. Each one that waits in read(2)
// keeps its P until the runtime's sysmon thread takes it back.
// Server.ReserveReaderProcs raises GOMAXPROCS by that number after the
// mount, so that waiting readers do not take CPU time from the requests.
// bt node and bt mount call it, and a GOMAXPROCS set in the environment is
// left as it is.
package fusefs
