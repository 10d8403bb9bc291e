package fsys

import (
	"fmt"
	"maps"
	"slices"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Damage is local to one daemon: a block that failed to load or verify, or
// a journal record that failed its checks. It is never journaled, because
// another server may hold good copies.
//
// A damaged inode returns EIO to every request that reads or changes it.
// Lookup still finds it, and Unlink and Rename still remove or move its
// entry, so that a user can delete it. Rmdir of a damaged directory returns
// EIO, because its entries are unknown. Checkpoint leaves damaged inodes
// out, so their blocks keep what they hold for a later repair, unless the
// inode is freed.
//
// During replay an entry that fails on damaged state is skipped instead of
// stopping the replay, and every inode it touches becomes damaged too: its
// state is no longer known. Inode numbers that such entries (or damaged
// journal records) name but that do not exist are remembered as lost, so
// that later entries on them are skipped as well. Entries that touch no
// damaged inode must still apply, or Apply returns an error.

// DamagedInode is an inode of a checkpoint whose block could not be opened,
// for LoadFrom.
type DamagedInode struct {
	Ino     fsapi.Ino
	BlockID [32]byte
	Reason  string
}

// MarkDamaged records that the block of ino failed to load or verify. Every
// later request that reads or changes the inode returns EIO (see Damage
// above). An ino that does not exist is remembered as lost.
func (e *Engine) MarkDamaged(ino fsapi.Ino, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.taint(ino, reason)
}

// SkipDamaged records that the journal record seq could not be read: it
// counts as applied, and every inode in tags (the inodes the record
// touched) becomes damaged or lost. Inode numbers in tags are never handed
// out again, since the record may have created them.
func (e *Engine) SkipDamaged(seq uint64, tags []uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq <= e.appliedSeq {
		return nil
	}
	e.skipEntry(seq, tags, fmt.Sprintf("journal record %d is damaged", seq))
	return nil
}

// skipEntry counts seq as applied without applying it and taints the inodes
// in tags. e.mu is held.
func (e *Engine) skipEntry(seq uint64, tags []uint64, reason string) {
	e.log.Warn("skipping a journal entry on damaged state", "seq", seq, "tags", tags, "reason", reason)
	for _, tag := range tags {
		ino := fsapi.Ino(tag)
		e.taint(ino, reason)
		if ino >= e.nextIno {
			e.nextIno = ino + 1
		}
	}
	e.appliedSeq = seq
}

// taint marks ino damaged, or lost when it does not exist. e.mu is held.
func (e *Engine) taint(ino fsapi.Ino, reason string) {
	if n := e.inodes[ino]; n != nil {
		if n.damaged == "" {
			e.markDamaged(n, reason)
		}
		return
	}
	if _, lost := e.lost[ino]; !lost {
		e.lost[ino] = reason
		e.log.Error("inode lost to damage", "ino", ino, "reason", reason)
	}
}

// touchesDamage reports whether ent names a damaged or lost inode.
func (e *Engine) touchesDamage(ent *Entry) bool {
	return slices.ContainsFunc(ent.tags(), func(tag uint64) bool {
		ino := fsapi.Ino(tag)
		if n := e.inodes[ino]; n != nil {
			return n.damaged != ""
		}
		_, lost := e.lost[ino]
		return lost
	})
}

// markDamaged logs the damage once, with the block id and a path, since the
// damaged inode returns EIO silently from then on.
func (e *Engine) markDamaged(n *inode, reason string) {
	path, err := e.pathOf(n)
	if err != nil {
		path = "(unlinked)"
	}
	n.damaged = reason
	e.log.Error("inode damaged; requests on it now return EIO", "ino", n.attr.Ino, "block", blockHex(n.blockID), "path", path, "reason", reason)
}

// damagedPlaceholder returns the inode that stands for a checkpoint inode
// whose block could not be opened. Only its type (from the entries that name
// it) is known; a directory has no known entries and other files no data.
// LoadFrom sets its link count from the entries.
func damagedPlaceholder(d DamagedInode, fileType uint32) *inode {
	n := &inode{
		blockID: d.BlockID,
		attr:    fsapi.Attr{Ino: d.Ino, Mode: fileType},
		damaged: d.Reason,
	}
	if fileType == syscall.S_IFDIR {
		n.entries = make(map[string]*dirent)
		n.nextCookie = firstCookie
	}
	return n
}

// Damaged returns every live inode that is damaged, by increasing number.
// Checkpoints leave them out, so the persistence layer records them itself
// and hands them back to LoadFrom: a damaged inode must stay damaged across
// restarts rather than come back with the contents of an older block.
func (e *Engine) Damaged() []DamagedInode {
	e.mu.Lock()
	defer e.mu.Unlock()
	var damaged []DamagedInode
	for _, ino := range slices.Sorted(maps.Keys(e.inodes)) {
		if n := e.inodes[ino]; n.damaged != "" {
			damaged = append(damaged, DamagedInode{Ino: ino, BlockID: n.blockID, Reason: n.damaged})
		}
	}
	return damaged
}
