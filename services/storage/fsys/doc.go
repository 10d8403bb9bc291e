// Package fsys is the file-system engine of the storage daemon: an
// in-memory tree of inodes that implements fsapi.FS with POSIX semantics.
// The storage daemon is the only process that touches the block store and
// the journal, and this engine is the only code in it that changes the tree.
//
// # Model
//
// Every file, directory, symlink and special file is an inode, and each
// inode is stored as one block (see EncodeInode). The data of a regular
// file is stored by chunk (ChunkSize bytes of the file), one block each.
// The engine keeps the whole tree in memory, except for the data of chunks
// that it evicted. Clients name inodes by number; numbers are never reused,
// and the root directory is fsapi.RootIno.
//
// Every change is one Entry. An FS method checks the request (names,
// permissions, the writecap through Options.Authorize, space), then makes an
// entry, appends its encoding to the journal and only then applies it. The
// entry is self-contained: whatever is not a function of the prior state is
// chosen when the entry is made and recorded in it. These values are the
// new inode numbers, the new 32-byte block ids from crypto/rand, and the
// time, which sets ctime and mtime. They also include the offset of an
// O_APPEND write, the bytes that copy_file_range copies, the mode after the
// setuid and setgid bits are cleared, and whether an unlinked inode is
// freed now or when its last handle closes.
//
// # Determinism of Apply
//
// Apply(seq, payload) replays an entry at startup and on Raft followers. It
// must build exactly the state that the entry built when it was made, so it
// depends only on the entry and the prior state. It reads no clock and no
// random source, never iterates over a map where the order would matter,
// and ignores handles, locks and the caller. Every apply function checks
// its preconditions before its first change, so an entry that does not fit
// the state returns an error and changes nothing. A replica whose state
// differs from the leader's thus stops rather than diverges further. The
// one exception is local damage: an entry that fails on an inode whose
// block or journal record was damaged is skipped, and the inodes it touches
// become damaged too (see damage.go).
//
// Directory cookies are deterministic for the same reason: each directory
// counts its cookies, the counter is part of the state and the checkpoint,
// and a new entry takes the next value when it is applied.
//
// If an entry that this engine made and journaled fails to apply, the
// state no longer matches what a replay would build. The engine then stops
// and returns EIO for every request.
//
// # Locking
//
// One mutex (Engine.mu) guards the whole tree, the handle table and the
// lock table. A single lock is the simple choice at this stage: requests
// are short and memory-bound. It costs concurrency between unrelated files.
// The lock order is:
//
//  1. Engine.mu, held from the first check of a request until its entry is
//     appended and applied. Journal.Append is called under it, so the
//     journal order is the apply order, and no two entries made from the
//     same state can conflict.
//  2. Whatever locks the Journal, the Authorize function, the Loader and
//     the Changed function take inside, which must never call back into
//     the engine.
//
// Journal.Sync (Fsync, FsyncDir, SyncFS) runs without Engine.mu, so other
// writers go on while the disk flushes. Blocking SetLk and Flock calls wait
// on a channel with Engine.mu released. The Loader and Authorize run under
// Engine.mu.
//
// # What is not journaled
//
// Handles, POSIX record locks, flock locks and damage marks are state of
// the running daemon. They are neither journaled nor checkpointed, so locks
// do not survive a restart, like the locks of a local file system over a
// reboot. An inode that is unlinked while open stays until its last
// Release, which journals a reclaim entry. After a restart no handle is
// open any more, and ReclaimOrphans frees such inodes.
//
// # POSIX behaviour
//
// The engine checks permissions itself: owner, group and other classes with
// supplementary groups, root bypassing read and write and needing some x
// bit to execute, search permission on each directory that Lookup and the
// namespace operations go through, and the sticky bit on unlink, rmdir and
// rename. Reads do not change the atime (noatime behaviour), so that a read
// needs no journal entry. Directory link counts are 2 plus the number of
// subdirectories. Data is stored sparse in sectors of SectorSize bytes; a
// sector never written, or punched, is a hole and costs no memory.
//
// # Persistence
//
// The persistence layer takes a Checkpoint (the dirty inodes with their
// changed chunks, the freed inodes and the Header). It stores each inode as
// a block with EncodeInode and each chunk as a block of its own, deletes
// the blocks of freed inodes, calls MarkClean and, once it no longer reads
// the chunks, EndCheckpoint. A Checkpoint does not copy file data: until
// EndCheckpoint the engine copies a sector of a chunk that the checkpoint
// holds before it changes the sector (copy on write).
//
// At startup it decodes the inode blocks with DecodeInode, calls LoadFrom
// on an engine from NewEmpty, replays the journal after Header.AppliedSeq
// with Apply and calls ReclaimOrphans. Blocks that fail to open become
// damaged placeholders through LoadFrom, and journal records that fail
// their checks go to SkipDamaged.
//
// The data of files larger than InlineSize starts out evicted. The Loader
// brings a chunk back when a request or a replayed entry first uses it.
// When it fails, the request gets EIO and the chunk stays evicted, so the
// rest of the file, and its changes, are still served and stored. When it
// fails for a replayed entry, the inode is marked damaged, because the
// entry cannot be applied. The layout of every file (which sectors are stored, and
// which only reserved) stays in memory, so sizes, block counts and
// SEEK_DATA/SEEK_HOLE need no load. The persistence layer may Evict the
// clean chunks of a file; loaded chunks are evicted oldest first beyond
// Options.CachedChunks, when a read loads another.
package fsys
