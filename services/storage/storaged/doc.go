// Package storaged is the storage daemon: the only process that reads and
// writes a node's block store and journal. It joins the file-system engine
// (services/storage/fsys), the journal (services/storage/journal) and the
// block store (services/storage/blockstore), and serves the engine to
// clients over the file-system protocol (services/storage/proto).
//
// # Start
//
// Open loads the latest checkpoint: it checks the checkpoint's signature and
// its TPM counter value, opens every inode's block at the version the
// checkpoint names (an older block put back is a rollback), and installs the
// inodes in the engine. It then replays the journal entries after the
// checkpoint. The data of large files stays on disk: the engine loads a
// chunk block, at the version that its inode block lists, when the chunk is
// first used (see chunks.go). A block or journal record that fails its checks marks the
// inodes it holds as damaged: reads of them fail with EIO and the log names
// the block and the path, but the rest of the tree is served.
//
// # Checkpoints
//
// A checkpoint makes the journal durable up to the last entry it includes,
// so that after a crash the journal never ends before the checkpoint. It
// seals every inode changed since the last one as a new block version, and
// every changed chunk of a file too. It writes those blocks next to the old
// versions (copy-on-write), increments the TPM counter, and then replaces
// the checkpoint file, which names the new versions and the last journal
// entry they include. Only then
// are the old versions and the covered journal segments deleted. A crash at
// any point leaves either the old checkpoint with its blocks and journal, or
// the new one: versions newer than the checkpoint file are garbage that the
// next start removes, and the journal still holds every entry after the
// checkpoint in force.
//
// The TPM counter is incremented before the checkpoint file is written, so
// after a crash between the two the file's value is one behind the TPM's.
// Open accepts that and nothing older: a checkpoint two or more behind comes
// from a restored disk image.
package storaged
