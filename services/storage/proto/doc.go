// Package proto carries the file-system protocol of package fsapi between
// processes: the messages for every fsapi.FS method, a server (Serve) that
// exposes an fsapi.FS on a local bus endpoint (package bus), and a client
// (Client) that implements fsapi.FS over a bus connection. The storage
// daemon serves its file system this way, and the FUSE server is its
// client. The encodings do not depend on the transport, so the network
// can carry the same messages.
//
// # Model
//
// A client sends requests, each with a 64-bit id that is unique among its
// running requests on the connection, and the server sends for each a
// response that carries the same id. Responses arrive in the order the
// requests finish. A small request that cannot wait for long (a lookup, a
// create, an unlink, a read or write of at most 64 KiB, ...) runs in the
// goroutine that reads requests when no other request of the connection is
// running. Every other request runs in
// its own goroutine, so a SetLk that waits for a lock holds up nothing else.
// When the client is in the daemon's process, the goroutine that reads
// requests is often the client's own caller, which commits its request
// without waking the daemon and then handles it (Client.do,
// serverConn.handleThrough).
// A client cancels a request by sending OpInterrupt with the request's id.
// The server then cancels that request's context and still sends a
// response, typically EINTR. The client does not wait for that response.
// An interrupt for a request that ran in the goroutine that reads requests
// arrives after that request finished, and is ignored.
//
// The server decides who each request comes from. A peer that
// ServerOptions.TrustCallers accepts names the Caller in every request, as
// the FUSE server does for the processes it relays. Any other peer acts as
// itself: the uid, gid, pid and supplementary groups that the kernel
// recorded when it connected (SO_PEERCRED, SO_PEERGROUPS). The principal
// comes from ServerOptions.Principal, unless a trusted peer names one.
// Only a trusted peer may also mark an open as the one that execve(2)
// makes (fsapi.OpenForExec), which needs execute permission and no read
// permission. The server clears that flag in the opens and creates of any
// other peer.
//
// Handles belong to the connection that opened them. A request that names
// a handle which its connection did not open, or opened on another inode
// or as the other kind (file or directory), fails with EBADF. When a
// connection ends, which includes the peer exiting, the server cancels its
// running requests without answering them, unlocks the POSIX locks of
// every lock owner that called SetLk on its handles, and releases the
// handles the peer left open. A flock belongs to its handle, so the file
// system drops it on Release.
//
// # Messages
//
// Messages use the canonical encoding of package wire: fixed-width
// big-endian integers, byte strings with a u32 length, and a header of a
// two-byte kind and a one-byte version. A request (KindRequest) is
//
//	kind u16 = 0x0200, version u8 = 3, op u16, id u64, arguments of op
//
// and a response (KindResponse) is
//
//	kind u16 = 0x0201, version u8 = 3, op u16, id u64, errno u32, results of op
//
// where the results are present only when errno is 0. The Caller comes
// first in the arguments of every op except release, releasedir and
// interrupt. The other arguments follow the parameters of the fsapi.FS
// method, and the results its return values:
//
//	code op               arguments after the Caller                           results
//	 1   lookup           parent u64, name                                     attr
//	 2   getattr          ino u64                                              attr
//	 3   setattr          ino u64, setattr                                     attr
//	 4   access           ino u64, mask u32
//	 5   mknod            parent u64, name, mode u32, rdev u64                 attr
//	 6   mkdir            parent u64, name, mode u32                           attr
//	 7   create           parent u64, name, mode u32, flags u32                attr, handle u64
//	 8   symlink          parent u64, name, target                             attr
//	 9   link             ino u64, new parent u64, new name                    attr
//	10   unlink           parent u64, name
//	11   rmdir            parent u64, name
//	12   rename           old parent u64, old name, new parent u64, new name, flags u32
//	13   readlink         ino u64                                              target
//	14   open             ino u64, flags u32                                   handle u64
//	15   read             ino u64, handle u64, offset i64, size u32            data
//	16   write            ino u64, handle u64, offset i64, data                written u64
//	17   flush            ino u64, handle u64, lock owner u64
//	18   release          ino u64, handle u64
//	19   fsync            ino u64, handle u64, datasync bool
//	20   fallocate        ino u64, handle u64, mode u32, offset i64, length i64
//	21   lseek            ino u64, handle u64, offset i64, whence u32          offset i64
//	22   copy_file_range  in ino u64, in handle u64, in offset i64,            copied u64
//	                      out ino u64, out handle u64, out offset i64,
//	                      length u64, flags u32
//	23   opendir          ino u64, flags u32                                   handle u64
//	24   readdir          ino u64, handle u64, cookie u64, max u32             entries
//	25   releasedir       ino u64, handle u64
//	26   fsyncdir         ino u64, handle u64
//	27   statfs           ino u64                                              statfs
//	28   syncfs
//	29   getxattr         ino u64, xattr name                                  xattr value
//	30   setxattr         ino u64, xattr name, xattr value, flags u32
//	31   listxattr        ino u64                                              names
//	32   removexattr      ino u64, xattr name
//	33   getlk            ino u64, handle u64, lock owner u64, lock            lock
//	34   setlk            ino u64, handle u64, lock owner u64, lock, wait bool
//	35   flock            ino u64, handle u64, how u32, wait bool
//	36   interrupt        none; the id is that of the request to cancel        no response
//	37   open_attr        ino u64, flags u32                                   attr, handle u64
//	38   create_attrs     parent u64, name, mode u32, flags u32                attr, handle u64, dir attr
//	39   mkdir_attrs      parent u64, name, mode u32                           attr, dir attr
//	40   unlink_attrs     parent u64, name                                     dir attr
//	41   rmdir_attrs      parent u64, name                                     dir attr
//
// The composite fields are:
//
//	Caller       uid u32, gid u32, pid u32, u32 count of groups, each group u32,
//	             principal (32 bytes)
//	name, target, xattr name
//	             u32 length || bytes
//	data, xattr value
//	             u32 length || bytes
//	bool         one byte, 0 or 1
//	setattr      valid u32, mode u32, uid u32, gid u32, size u64, atime i64,
//	             mtime i64, ctime i64, handle u64
//	attr, dir attr
//	             ino u64, mode u32, nlink u32, uid u32, gid u32, rdev u64,
//	             size u64, blocks u64, atime i64, mtime i64, ctime i64
//	lock         start u64, end u64, type u32, pid u32
//	statfs       blocks, bfree, bavail, files, ffree u64; bsize, namelen, frsize u32
//	entries      u32 count, then per entry: name, ino u64, mode u32, cookie u64
//	names        u32 count, then each name as u32 length || bytes
//
// layout.go holds the same layouts as the tables that the encoder and the
// decoder both walk.
//
// Decoders are strict. They reject other kinds and versions, unknown op
// codes, names above fsapi.MaxNameLen, symlink targets above
// fsapi.MaxSymlinkLen, data above fsapi.MaxWrite, extended attribute
// values above fsapi.MaxXattrSize, more than MaxGroups groups or
// MaxDirEntries directory entries, booleans other than 0 and 1, and bytes
// after the last field. Their errors name the field. The encoders reject
// the same values, so every message that encodes also decodes, and every
// message that decodes encodes back to the same bytes.
//
// # Transport
//
// Each message is one bus message, of bus kind 0x0200 for a request and
// 0x0201 for a response (and 0x0202 to 0x0204 for change notifications),
// the same values as the kinds inside the message.
// The client requests rings of RingSize (4 MiB) in each direction, the
// smallest that carries MaxMessageSize, so a connection costs 8 MiB of
// shared memory.
//
// The data of reads and writes crosses without a copy beyond the one into
// shared memory. The client encodes a Write request straight into a
// reservation in its send ring, copying the data once from the caller's
// buffer. The server passes the data to fs.Write as a view into the ring
// and releases it when fs.Write returns. For a Read, the server reserves
// room for a response of the requested size, lets fs.Read write the data
// in place, fills in the data length and truncates the reservation to it.
// The client returns the response to ReadView callers as a view (the FUSE
// server hands it to the kernel), and copies it for Read. Messages below
// the bus's copy threshold (4 KiB) arrive as copies instead.
//
// The peer can write the shared memory at any time. Decoders read every
// value once, so the lengths and counts that they check are the ones they
// use, and a peer that changes a message in flight garbles only that
// message's own data. Except for Write data, the server copies the
// request's data before use.
//
// A view holds ring space, and ring space returns in the order of receipt,
// so a Read response that the FUSE server holds until it has written it to
// the kernel delays the release of later messages. That delay is bounded,
// because nothing that the holder waits for needs ring space: the server
// reserves the Read response's space before it calls fs.Read, and
// releases a Write's view before it sends the response.
//
// A request or subscribe that does not decode, a message of another kind,
// or a request whose id is already running is dropped, counted and logged with the
// peer's pid, at most once a second. The connection stays up, because the
// bus keeps message boundaries. A corrupted ring ends the connection. A
// client whose connection fails in any way, or whose daemon sends a
// response that does not decode, fails every waiting and later request
// with a ConnError, which matches syscall.EIO.
//
// # Change notifications
//
// A client may subscribe to the changes that other connections make, so
// that it can drop what it cached, as the FUSE server does for the
// kernel's caches. Three message kinds, each with its own version
// (NotifyVersion, 1), carry the subscription and travel as bus messages of
// the same kind values:
//
//	subscribe     kind u16 = 0x0202, version u8 = 1                       client to server
//	subscribed    kind u16 = 0x0203, version u8 = 1, errno u32            server to client
//	notification  kind u16 = 0x0204, version u8 = 1, u32 count, changes   server to client
//
// where each change is
//
//	kind u8, ino u64, name (u32 length || bytes)
//
// with the kinds of fsapi.ChangeKind: 1 entry (ino is the directory and
// the name is 1 to fsapi.MaxNameLen bytes), 2 attr and 3 data (ino is the
// inode and the name is empty), and 4 all (ino 0, empty name). A
// notification carries at most MaxChanges changes, and fewer when the
// client's rings are too small for that many changes with names of
// fsapi.MaxNameLen bytes. The decoders are as strict as those of requests
// and responses.
//
// The server replies to a subscribe with subscribed. Errno 0 means the
// connection is registered, so that every change after the reply is
// reported. EOPNOTSUPP means the server has no Notifier (ServerOptions),
// and EMSGSIZE that the client's rings cannot carry one change. A second
// subscribe is replied to again and changes nothing. A client that never
// subscribes gets no notifications, and there is no way to unsubscribe
// other than closing the connection.
//
// The file system reports the changes of each mutation to the Notifier
// (the storage daemon's engine does so for every entry it commits, see
// fsys.Options.Changed), with the request's context, from which the
// Notifier learns the connection that made the change. It queues the
// changes for every other subscribed connection, in the order they took
// effect and before the response to the request that made them is sent.
// A goroutine per subscriber sends them. The queue merges repeated
// changes and holds DefaultMaxQueuedChanges distinct ones. When it is
// full, because the peer does not read its ring, the queue drops what it
// holds and the next notification starts with an all change, so no
// request ever waits for a subscriber. The client queues the changes it
// receives the same way until its caller takes them (Subscription.Next),
// and reports its own overflow as an all change too.
//
// A notification is sent after the change took effect, so a subscriber
// learns of it shortly after, not at the moment when the other client's
// request returns. Notifications are not journaled: a client that
// connects again after its connection ended may have missed some and
// must assume that anything changed.
//
// # Versioning
//
// Requests and responses are at version 3. Version 2 added open_attr (37)
// to version 1, and version 3 added create_attrs, mkdir_attrs,
// unlink_attrs and rmdir_attrs (38 to 41), whose dir attr is the
// attributes of the parent directory after the change. Notifications are
// at version 1. Any change to a layout, and any new op, makes a new
// version, and a decoder accepts only the versions it implements. Kinds
// 0x0200 to 0x0205 are fixed forever, and so is version 1 of versions
// (0x0205).
//
// The server replies to a request or subscribe of a version that it does
// not implement with versions, the list of the versions that it does
// (KindVersions), and serves the connection on. The client then fails the
// connection with a VersionError that names both sides' versions, so
// every waiting call returns at once. A client of a newer release whose
// own version the server lacks learns it at its first request. There is no
// negotiation of a common version, because the FUSE server and the storage
// daemon of one node come from the same release.
package proto
