package fsys

import (
	"fmt"
	"slices"
	"syscall"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Wire kinds of the file-system engine's encodings.
const (
	KindEntry     wire.Kind = 0x0300 // a journal entry
	KindInodeMeta wire.Kind = 0x0301 // an inode's attributes, the block metadata
	KindInodeData wire.Kind = 0x0302 // an inode's xattrs, entries and sectors, the block data
	KindHeader    wire.Kind = 0x0303 // the engine header of a checkpoint
)

const entryVersion = 1

// Op is the kind of change an Entry makes. Values are fixed forever.
type Op uint8

// Operations of journal entries.
const (
	OpInitRoot    Op = 1  // create the root directory of an empty tree
	OpCreate      Op = 2  // create a regular file (Create, or Mknod with S_IFREG)
	OpMknod       Op = 3  // create a FIFO, socket, character or block device
	OpMkdir       Op = 4  // create a directory
	OpSymlink     Op = 5  // create a symbolic link
	OpLink        Op = 6  // add a hard link
	OpUnlink      Op = 7  // remove a non-directory entry
	OpRmdir       Op = 8  // remove an empty directory
	OpRename      Op = 9  // rename, replace or exchange entries
	OpWrite       Op = 10 // store bytes in a regular file (Write, CopyFileRange)
	OpSetAttr     Op = 11 // change attributes, including the size
	OpFallocate   Op = 12 // reserve or punch file space
	OpSetXattr    Op = 13 // set an extended attribute
	OpRemoveXattr Op = 14 // remove an extended attribute
	OpReclaim     Op = 15 // free an unlinked inode after its last handle closed
)

var opNames = map[Op]string{
	OpInitRoot: "init-root", OpCreate: "create", OpMknod: "mknod", OpMkdir: "mkdir",
	OpSymlink: "symlink", OpLink: "link", OpUnlink: "unlink", OpRmdir: "rmdir",
	OpRename: "rename", OpWrite: "write", OpSetAttr: "setattr", OpFallocate: "fallocate",
	OpSetXattr: "setxattr", OpRemoveXattr: "removexattr", OpReclaim: "reclaim",
}

func (op Op) String() string {
	if name, ok := opNames[op]; ok {
		return name
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// Bits of Entry.Flags for OpSetAttr: which attributes the entry sets.
// The ctime is set by every OpSetAttr entry.
const (
	AttrMode uint32 = 1 << iota
	AttrUID
	AttrGID
	AttrSize
	AttrAtime
	AttrMtime

	attrAll = AttrMode | AttrUID | AttrGID | AttrSize | AttrAtime | AttrMtime
)

// Fallocate modes, as fallocate(2) defines them on Linux.
const (
	FallocKeepSize  uint32 = 0x01
	FallocPunchHole uint32 = 0x02
)

// Entry is one change to the tree, made by an FS method and replayed by
// Apply. It is self-contained: every value chosen when it was made (new inode
// numbers, block ids, times, resolved offsets and modes) is in it, so Apply
// needs nothing but the entry and the prior state.
//
// Which fields an entry carries depends on Op; the others are zero:
//
//	every op      Time, Principal, UID, GID
//	init-root     Ino, BlockID, Mode, Owner, Group
//	create, mknod, mkdir, symlink
//	              Parent, Name, Ino, BlockID, Mode, Owner, Group, Rdev,
//	              Symlink (symlink only)
//	link          Ino, Parent (the new parent), Name (the new name)
//	unlink, rmdir Parent, Name, Ino, Free
//	rename        Parent, Name, NewParent, NewName, Flags (RENAME_*), Ino (the
//	              source), Target (the replaced or exchanged inode or 0), Free
//	write         Ino, Offset, Data, KillPriv
//	setattr       Ino, Flags (Attr* bits), and Mode, Owner, Group, Size,
//	              Atime, Mtime as Flags select them, and Ctime always
//	fallocate     Ino, Flags (FALLOC_FL_* mode), Offset, Length, KillPriv
//	setxattr      Ino, Name (the attribute name), Data (the value), Flags (XATTR_*)
//	removexattr   Ino, Name
//	reclaim       Ino
type Entry struct {
	Op        Op
	Time      int64               // when the entry was made, ns since the Unix epoch
	Principal principal.Principal // the caller's principal; zero for the daemon itself
	UID, GID  uint32              // the caller's credentials, for audit

	Ino       fsapi.Ino
	Parent    fsapi.Ino
	Name      string
	NewParent fsapi.Ino
	NewName   string
	Target    fsapi.Ino
	BlockID   [32]byte
	Mode      uint32
	Owner     uint32
	Group     uint32
	Rdev      uint64
	Symlink   string
	Flags     uint32
	Offset    uint64
	Length    uint64
	Size      uint64
	Atime     int64
	Mtime     int64
	Ctime     int64
	Data      []byte

	// Free marks an entry whose unlinked inode reaches link count 0 with no
	// open handle, so that the inode is freed now, not by a later reclaim.
	Free bool

	// KillPriv makes a write or fallocate clear the setuid and setgid bits,
	// because the caller is not root.
	KillPriv bool
}

// tags returns the inode numbers the entry touches, sorted, for the journal.
func (ent *Entry) tags() []uint64 {
	var tags []uint64
	for _, ino := range []fsapi.Ino{ent.Ino, ent.Parent, ent.NewParent, ent.Target} {
		if ino != 0 {
			tags = append(tags, uint64(ino))
		}
	}
	slices.Sort(tags)
	return slices.Compact(tags)
}

// EncodeEntry returns the canonical encoding of ent (KindEntry, version 1).
func EncodeEntry(ent *Entry) []byte { return AppendEntry(nil, ent) }

// AppendEntry appends the encoding of EncodeEntry to buf.
func AppendEntry(buf []byte, ent *Entry) []byte {
	e := wire.AppendEncoder(buf, KindEntry, entryVersion)
	e.Uint8(uint8(ent.Op))
	e.Int64(ent.Time)
	e.Fixed(ent.Principal[:])
	e.Uint32(ent.UID)
	e.Uint32(ent.GID)

	switch ent.Op {
	case OpInitRoot:
		e.Uint64(uint64(ent.Ino))
		e.Fixed(ent.BlockID[:])
		e.Uint32(ent.Mode)
		e.Uint32(ent.Owner)
		e.Uint32(ent.Group)
	case OpCreate, OpMknod, OpMkdir, OpSymlink:
		e.Uint64(uint64(ent.Parent))
		e.String(ent.Name)
		e.Uint64(uint64(ent.Ino))
		e.Fixed(ent.BlockID[:])
		e.Uint32(ent.Mode)
		e.Uint32(ent.Owner)
		e.Uint32(ent.Group)
		e.Uint64(ent.Rdev)
		if ent.Op == OpSymlink {
			e.String(ent.Symlink)
		}
	case OpLink:
		e.Uint64(uint64(ent.Ino))
		e.Uint64(uint64(ent.Parent))
		e.String(ent.Name)
	case OpUnlink, OpRmdir:
		e.Uint64(uint64(ent.Parent))
		e.String(ent.Name)
		e.Uint64(uint64(ent.Ino))
		e.Bool(ent.Free)
	case OpRename:
		e.Uint64(uint64(ent.Parent))
		e.String(ent.Name)
		e.Uint64(uint64(ent.NewParent))
		e.String(ent.NewName)
		e.Uint32(ent.Flags)
		e.Uint64(uint64(ent.Ino))
		e.Uint64(uint64(ent.Target))
		e.Bool(ent.Free)
	case OpWrite:
		e.Uint64(uint64(ent.Ino))
		e.Uint64(ent.Offset)
		e.Bytes(ent.Data)
		e.Bool(ent.KillPriv)
	case OpSetAttr:
		e.Uint64(uint64(ent.Ino))
		e.Uint32(ent.Flags)
		e.Uint32(ent.Mode)
		e.Uint32(ent.Owner)
		e.Uint32(ent.Group)
		e.Uint64(ent.Size)
		e.Int64(ent.Atime)
		e.Int64(ent.Mtime)
		e.Int64(ent.Ctime)
	case OpFallocate:
		e.Uint64(uint64(ent.Ino))
		e.Uint32(ent.Flags)
		e.Uint64(ent.Offset)
		e.Uint64(ent.Length)
		e.Bool(ent.KillPriv)
	case OpSetXattr:
		e.Uint64(uint64(ent.Ino))
		e.String(ent.Name)
		e.Bytes(ent.Data)
		e.Uint32(ent.Flags)
	case OpRemoveXattr:
		e.Uint64(uint64(ent.Ino))
		e.String(ent.Name)
	case OpReclaim:
		e.Uint64(uint64(ent.Ino))
	}
	return e.Data()
}

// DecodeEntry parses an encoding made by EncodeEntry. It rejects unknown
// operations, trailing bytes, out-of-range names and sizes, and fields that
// an operation does not allow, so that every accepted input re-encodes to
// the same bytes. Errors wrap syscall.EINVAL and a wire error.
func DecodeEntry(data []byte) (*Entry, error) {
	d := wire.NewDecoder(data, KindEntry, entryVersion)
	ent := &Entry{}
	ent.Op = Op(d.Uint8())
	ent.Time = d.Int64()
	copy(ent.Principal[:], d.Fixed(principal.Size))
	ent.UID = d.Uint32()
	ent.GID = d.Uint32()
	if d.Err() != nil {
		return nil, decodeError(d.Err())
	}

	switch ent.Op {
	case OpInitRoot:
		ent.Ino = fsapi.Ino(d.Uint64())
		copy(ent.BlockID[:], d.Fixed(32))
		ent.Mode = d.Uint32()
		ent.Owner = d.Uint32()
		ent.Group = d.Uint32()
	case OpCreate, OpMknod, OpMkdir, OpSymlink:
		ent.Parent = fsapi.Ino(d.Uint64())
		ent.Name = d.String(fsapi.MaxNameLen)
		ent.Ino = fsapi.Ino(d.Uint64())
		copy(ent.BlockID[:], d.Fixed(32))
		ent.Mode = d.Uint32()
		ent.Owner = d.Uint32()
		ent.Group = d.Uint32()
		ent.Rdev = d.Uint64()
		if ent.Op == OpSymlink {
			ent.Symlink = d.String(fsapi.MaxSymlinkLen)
		}
	case OpLink:
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Parent = fsapi.Ino(d.Uint64())
		ent.Name = d.String(fsapi.MaxNameLen)
	case OpUnlink, OpRmdir:
		ent.Parent = fsapi.Ino(d.Uint64())
		ent.Name = d.String(fsapi.MaxNameLen)
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Free = d.Bool()
	case OpRename:
		ent.Parent = fsapi.Ino(d.Uint64())
		ent.Name = d.String(fsapi.MaxNameLen)
		ent.NewParent = fsapi.Ino(d.Uint64())
		ent.NewName = d.String(fsapi.MaxNameLen)
		ent.Flags = d.Uint32()
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Target = fsapi.Ino(d.Uint64())
		ent.Free = d.Bool()
	case OpWrite:
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Offset = d.Uint64()
		ent.Data = d.BytesCopy(fsapi.MaxWrite)
		ent.KillPriv = d.Bool()
	case OpSetAttr:
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Flags = d.Uint32()
		ent.Mode = d.Uint32()
		ent.Owner = d.Uint32()
		ent.Group = d.Uint32()
		ent.Size = d.Uint64()
		ent.Atime = d.Int64()
		ent.Mtime = d.Int64()
		ent.Ctime = d.Int64()
	case OpFallocate:
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Flags = d.Uint32()
		ent.Offset = d.Uint64()
		ent.Length = d.Uint64()
		ent.KillPriv = d.Bool()
	case OpSetXattr:
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Name = d.String(fsapi.MaxXattrNameLen)
		ent.Data = d.BytesCopy(fsapi.MaxXattrSize)
		ent.Flags = d.Uint32()
	case OpRemoveXattr:
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Name = d.String(fsapi.MaxXattrNameLen)
	case OpReclaim:
		ent.Ino = fsapi.Ino(d.Uint64())
	default:
		d.Fail(fmt.Errorf("operation %d: %w", uint8(ent.Op), wire.ErrInvalid))
	}
	if err := d.Finish(); err != nil {
		return nil, decodeError(err)
	}
	if err := ent.validate(); err != nil {
		return nil, decodeError(err)
	}
	return ent, nil
}

func decodeError(err error) error {
	return fmt.Errorf("%w: decode entry: %w", syscall.EINVAL, err)
}

// validate checks the values that the layout alone does not restrict.
func (ent *Entry) validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%s entry: %s: %w", ent.Op, fmt.Sprintf(format, args...), wire.ErrInvalid)
	}
	switch ent.Op {
	case OpInitRoot:
		if ent.Ino != fsapi.RootIno || ent.Mode&syscall.S_IFMT != syscall.S_IFDIR || ent.Mode&^(syscall.S_IFMT|07777) != 0 {
			return invalid("ino %d mode %#o", ent.Ino, ent.Mode)
		}
	case OpCreate, OpMknod, OpMkdir, OpSymlink:
		if err := checkName(ent.Name); err != nil {
			return invalid("name %q", ent.Name)
		}
		if ent.Ino <= fsapi.RootIno || ent.Parent == 0 {
			return invalid("ino %d parent %d", ent.Ino, ent.Parent)
		}
		if ent.Mode&^(syscall.S_IFMT|07777) != 0 || !typeFitsOp(ent.Op, ent.Mode&syscall.S_IFMT) {
			return invalid("mode %#o", ent.Mode)
		}
		isDevice := ent.Mode&syscall.S_IFMT == syscall.S_IFCHR || ent.Mode&syscall.S_IFMT == syscall.S_IFBLK
		if ent.Rdev != 0 && !isDevice {
			return invalid("rdev %#x on a non-device", ent.Rdev)
		}
		if ent.Op == OpSymlink && ent.Symlink == "" {
			return invalid("empty symlink target")
		}
	case OpLink:
		if err := checkName(ent.Name); err != nil {
			return invalid("name %q", ent.Name)
		}
	case OpUnlink, OpRmdir:
		if err := checkName(ent.Name); err != nil {
			return invalid("name %q", ent.Name)
		}
	case OpRename:
		if checkName(ent.Name) != nil || checkName(ent.NewName) != nil {
			return invalid("names %q and %q", ent.Name, ent.NewName)
		}
		if err := checkRenameFlags(ent.Flags); err != nil {
			return invalid("flags %#x", ent.Flags)
		}
		if ent.Flags&fsapi.RenameExchange != 0 && (ent.Target == 0 || ent.Free) {
			return invalid("exchange without a target or with free")
		}
		if ent.Target == 0 && ent.Free {
			return invalid("free without a target")
		}
	case OpWrite:
		if ent.Offset > MaxFileSize || uint64(len(ent.Data)) > MaxFileSize-ent.Offset {
			return invalid("write of %d bytes at %d", len(ent.Data), ent.Offset)
		}
	case OpSetAttr:
		if ent.Flags&^attrAll != 0 {
			return invalid("flags %#x", ent.Flags)
		}
		if ent.Mode&^07777 != 0 || ent.Size > MaxFileSize {
			return invalid("mode %#o size %d", ent.Mode, ent.Size)
		}
		unset := func(bit uint32, zero bool) bool { return ent.Flags&bit == 0 && !zero }
		if unset(AttrMode, ent.Mode == 0) || unset(AttrUID, ent.Owner == 0) || unset(AttrGID, ent.Group == 0) ||
			unset(AttrSize, ent.Size == 0) || unset(AttrAtime, ent.Atime == 0) || unset(AttrMtime, ent.Mtime == 0) {
			return invalid("a field that flags %#x do not select is set", ent.Flags)
		}
	case OpFallocate:
		if ent.Flags != 0 && ent.Flags != FallocKeepSize && ent.Flags != FallocKeepSize|FallocPunchHole {
			return invalid("mode %#x", ent.Flags)
		}
		if ent.Length == 0 || ent.Offset > MaxFileSize || ent.Length > MaxFileSize-ent.Offset {
			return invalid("range %d+%d", ent.Offset, ent.Length)
		}
	case OpSetXattr, OpRemoveXattr:
		if ent.Name == "" {
			return invalid("empty name")
		}
		if ent.Flags&^(fsapi.XattrCreate|fsapi.XattrReplace) != 0 || ent.Flags == fsapi.XattrCreate|fsapi.XattrReplace {
			return invalid("flags %#x", ent.Flags)
		}
	}
	return nil
}

// typeFitsOp reports whether an entry of op may create a file of type.
func typeFitsOp(op Op, fileType uint32) bool {
	switch op {
	case OpCreate:
		return fileType == syscall.S_IFREG
	case OpMknod:
		switch fileType {
		case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
			return true
		}
	case OpMkdir:
		return fileType == syscall.S_IFDIR
	case OpSymlink:
		return fileType == syscall.S_IFLNK
	}
	return false
}

// Changes returns what ent changes, in the terms that clients cache: the
// directory entries it creates, removes or repoints, and the inodes whose
// attributes or data it changes, including the link counts and the parents'
// mtime. It depends only on the entry. init-root and reclaim change
// nothing that a client can have cached.
func (ent *Entry) Changes() []fsapi.Change {
	entry := func(dir fsapi.Ino, name string) fsapi.Change {
		return fsapi.Change{Kind: fsapi.ChangeEntry, Ino: dir, Name: name}
	}
	attr := func(ino fsapi.Ino) fsapi.Change { return fsapi.Change{Kind: fsapi.ChangeAttr, Ino: ino} }
	data := func(ino fsapi.Ino) fsapi.Change { return fsapi.Change{Kind: fsapi.ChangeData, Ino: ino} }

	switch ent.Op {
	case OpCreate, OpMknod, OpMkdir, OpSymlink:
		return []fsapi.Change{entry(ent.Parent, ent.Name), attr(ent.Parent)}
	case OpLink, OpUnlink, OpRmdir:
		return []fsapi.Change{entry(ent.Parent, ent.Name), attr(ent.Parent), attr(ent.Ino)}
	case OpRename:
		changes := []fsapi.Change{entry(ent.Parent, ent.Name), entry(ent.NewParent, ent.NewName), attr(ent.Parent)}
		if ent.NewParent != ent.Parent {
			changes = append(changes, attr(ent.NewParent))
		}
		changes = append(changes, attr(ent.Ino))
		if ent.Target != 0 {
			changes = append(changes, attr(ent.Target))
		}
		return changes
	case OpWrite, OpFallocate:
		return []fsapi.Change{data(ent.Ino)}
	case OpSetAttr:
		if ent.Flags&AttrSize != 0 {
			return []fsapi.Change{data(ent.Ino)}
		}
		return []fsapi.Change{attr(ent.Ino)}
	case OpSetXattr, OpRemoveXattr:
		return []fsapi.Change{attr(ent.Ino)}
	}
	return nil
}
