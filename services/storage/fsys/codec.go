package fsys

import (
	"fmt"
	"maps"
	"slices"
	"syscall"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

const (
	inodeMetaVersion = 1
	inodeDataVersion = 2
	headerVersion    = 1
)

// maxSectorIndex bounds sector indexes: no sector starts at or past
// MaxFileSize.
const maxSectorIndex = MaxFileSize / SectorSize

// EncodeInode returns the canonical encodings of st for its block: meta
// for the block's metadata (attributes, at most a few KiB) and data for the
// block's data (xattrs, directory entries and the layout of file data).
// The file data itself is not included: the persistence layer stores each
// chunk (Chunk.Bytes) as a block of its own. The formats are:
//
//	meta (KindInodeMeta, version 1):
//	  ino uint64, block id 32 bytes, mode, nlink, uid, gid uint32,
//	  rdev, size, blocks uint64, atime, mtime, ctime int64,
//	  next cookie uint64 (0 unless a directory),
//	  symlink target string (empty unless a symlink)
//
//	data (KindInodeData, version 2):
//	  uint32 xattr count, then by increasing name: name string, value bytes
//	  uint32 entry count, then by increasing cookie:
//	      name string, ino uint64, mode uint32 (type bits), cookie uint64
//	  uint32 extent count, then by increasing first sector:
//	      first uint64, count uint64, reserved bool
func EncodeInode(st *InodeState) (meta, data []byte) {
	m := wire.NewEncoder(KindInodeMeta, inodeMetaVersion)
	m.Uint64(uint64(st.Ino))
	m.Fixed(st.BlockID[:])
	m.Uint32(st.Attr.Mode)
	m.Uint32(st.Attr.Nlink)
	m.Uint32(st.Attr.UID)
	m.Uint32(st.Attr.GID)
	m.Uint64(st.Attr.Rdev)
	m.Uint64(st.Attr.Size)
	m.Uint64(st.Attr.Blocks)
	m.Int64(st.Attr.Atime)
	m.Int64(st.Attr.Mtime)
	m.Int64(st.Attr.Ctime)
	m.Uint64(st.NextCookie)
	m.String(st.Target)

	d := wire.NewEncoder(KindInodeData, inodeDataVersion)
	d.Uint32(uint32(len(st.Xattrs)))
	for _, name := range slices.Sorted(maps.Keys(st.Xattrs)) {
		d.String(name)
		d.Bytes(st.Xattrs[name])
	}
	d.Uint32(uint32(len(st.Entries)))
	for _, ent := range st.Entries {
		d.String(ent.Name)
		d.Uint64(uint64(ent.Ino))
		d.Uint32(ent.Mode)
		d.Uint64(ent.Cookie)
	}
	d.Uint32(uint32(len(st.Extents)))
	for _, ext := range st.Extents {
		d.Uint64(ext.First)
		d.Uint64(ext.Count)
		d.Bool(ext.Reserved)
	}
	return m.Data(), d.Data()
}

// DecodeInode parses the encodings of EncodeInode and checks that they
// describe a consistent inode (see validateState). The state has no
// chunks. Every accepted input re-encodes to the same bytes. Errors wrap
// syscall.EINVAL.
func DecodeInode(meta, data []byte) (*InodeState, error) {
	st, err := decodeInodeMeta(meta)
	if err != nil {
		return nil, err
	}
	part, err := decodeInodeData(data)
	if err != nil {
		return nil, err
	}
	st.Xattrs, st.Entries, st.Extents = part.xattrs, part.entries, part.extents
	if err := validateState(st); err != nil {
		return nil, err
	}
	return st, nil
}

func invalidInode(err error) error {
	return fmt.Errorf("%w: decode inode: %w", syscall.EINVAL, err)
}

func decodeInodeMeta(meta []byte) (*InodeState, error) {
	d := wire.NewDecoder(meta, KindInodeMeta, inodeMetaVersion)
	st := &InodeState{}
	st.Ino = fsapi.Ino(d.Uint64())
	copy(st.BlockID[:], d.Fixed(32))
	st.Attr.Ino = st.Ino
	st.Attr.Mode = d.Uint32()
	st.Attr.Nlink = d.Uint32()
	st.Attr.UID = d.Uint32()
	st.Attr.GID = d.Uint32()
	st.Attr.Rdev = d.Uint64()
	st.Attr.Size = d.Uint64()
	st.Attr.Blocks = d.Uint64()
	st.Attr.Atime = d.Int64()
	st.Attr.Mtime = d.Int64()
	st.Attr.Ctime = d.Int64()
	st.NextCookie = d.Uint64()
	st.Target = d.String(fsapi.MaxSymlinkLen)
	if err := d.Finish(); err != nil {
		return nil, invalidInode(err)
	}
	return st, nil
}

// dataPart is the decoded data encoding of an inode.
type dataPart struct {
	xattrs  map[string][]byte
	entries []DirEntryState
	extents []Extent
}

// Smallest encodings of one list element, which bound the counts that the
// decoder accepts before it allocates.
const (
	minXattrSize  = 4 + 4
	minEntrySize  = 4 + 8 + 4 + 8
	minExtentSize = 8 + 8 + 1
)

func decodeInodeData(data []byte) (*dataPart, error) {
	d := wire.NewDecoder(data, KindInodeData, inodeDataVersion)
	part := &dataPart{}

	count := d.Count(d.Remaining() / minXattrSize)
	previous := ""
	for i := range count {
		name := d.String(fsapi.MaxXattrNameLen)
		value := d.BytesCopy(fsapi.MaxXattrSize)
		if d.Err() != nil {
			break
		}
		if i > 0 && name <= previous {
			d.Fail(fmt.Errorf("xattr %q after %q: names must increase: %w", name, previous, wire.ErrInvalid))
			break
		}
		if part.xattrs == nil {
			part.xattrs = make(map[string][]byte, count)
		}
		part.xattrs[name] = append([]byte{}, value...) // empty values are non-nil, as the engine keeps them
		previous = name
	}

	count = d.Count(d.Remaining() / minEntrySize)
	for range count {
		ent := DirEntryState{}
		ent.Name = d.String(fsapi.MaxNameLen)
		ent.Ino = fsapi.Ino(d.Uint64())
		ent.Mode = d.Uint32()
		ent.Cookie = d.Uint64()
		if d.Err() != nil {
			break
		}
		part.entries = append(part.entries, ent)
	}

	count = d.Count(d.Remaining() / minExtentSize)
	nextFree := uint64(0) // extents may not overlap
	for range count {
		ext := Extent{}
		ext.First = d.Uint64()
		ext.Count = d.Uint64()
		ext.Reserved = d.Bool()
		if d.Err() != nil {
			break
		}
		if ext.Count == 0 || ext.First < nextFree || ext.First >= maxSectorIndex || ext.Count > maxSectorIndex-ext.First {
			d.Fail(fmt.Errorf("extent of %d sectors at %d: %w", ext.Count, ext.First, wire.ErrInvalid))
			break
		}
		nextFree = ext.First + ext.Count
		part.extents = append(part.extents, ext)
	}
	if err := d.Finish(); err != nil {
		return nil, invalidInode(err)
	}
	return part, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// validateState checks everything that makes an inode state consistent:
// the fields that its file type allows, sorted and unique entries and
// extents, the block count, and zeros past the end of the file. DecodeInode
// and LoadFrom call it, so the engine never holds a state that its own
// operations could not have made.
// ValidateState checks that st is consistent, as DecodeInode and LoadFrom
// do, including the sizes of the chunks it carries.
func ValidateState(st *InodeState) error { return validateState(st) }

func validateState(st *InodeState) error {
	bad := func(format string, args ...any) error {
		return invalidInode(fmt.Errorf("node %d: %s: %w", st.Ino, fmt.Sprintf(format, args...), wire.ErrInvalid))
	}
	a := &st.Attr
	fileType := a.Mode & syscall.S_IFMT
	switch {
	case st.Ino == 0 || a.Ino != st.Ino:
		return bad("inode number %d, attributes say %d", st.Ino, a.Ino)
	case !validFileType(fileType) || a.Mode&^(syscall.S_IFMT|0o7777) != 0:
		return bad("mode %#o", a.Mode)
	case a.Rdev != 0 && fileType != syscall.S_IFCHR && fileType != syscall.S_IFBLK:
		return bad("rdev %#x on a non-device", a.Rdev)
	case (fileType == syscall.S_IFDIR) != (st.NextCookie != 0):
		return bad("next cookie %d for mode %#o", st.NextCookie, a.Mode)
	case fileType == syscall.S_IFDIR && st.NextCookie < firstCookie:
		return bad("next cookie %d", st.NextCookie)
	case fileType == syscall.S_IFLNK && (st.Target == "" || a.Size != uint64(len(st.Target))):
		return bad("symlink of size %d with a target of %d bytes", a.Size, len(st.Target))
	case fileType != syscall.S_IFLNK && st.Target != "":
		return bad("target on a non-symlink")
	case fileType != syscall.S_IFREG && fileType != syscall.S_IFLNK && a.Size != 0:
		return bad("size %d for mode %#o", a.Size, a.Mode)
	case fileType != syscall.S_IFREG && (a.Blocks != 0 || len(st.Extents) != 0 || len(st.Chunks) != 0):
		return bad("stored sectors on a non-regular file")
	case fileType != syscall.S_IFDIR && len(st.Entries) != 0:
		return bad("entries on a non-directory")
	case a.Size > MaxFileSize:
		return bad("size %d", a.Size)
	}
	for name, value := range st.Xattrs {
		if name == "" || len(name) > fsapi.MaxXattrNameLen || len(value) > fsapi.MaxXattrSize {
			return bad("xattr %q of %d bytes", name, len(value))
		}
	}
	if err := validateEntries(st); err != nil {
		return bad("%v", err)
	}
	if err := validateExtents(st.Extents, a.Size, a.Blocks); err != nil {
		return bad("%v", err)
	}
	if err := validateChunks(st.Extents, st.Chunks, a.Size); err != nil {
		return bad("%v", err)
	}
	return nil
}

func validFileType(fileType uint32) bool {
	switch fileType {
	case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK, syscall.S_IFIFO,
		syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
		return true
	}
	return false
}

func validateEntries(st *InodeState) error {
	names := make(map[string]bool, len(st.Entries))
	previous := uint64(firstCookie - 1)
	for _, ent := range st.Entries {
		switch {
		case checkName(ent.Name) != nil || isDotName(ent.Name):
			return fmt.Errorf("entry name %q", ent.Name)
		case names[ent.Name]:
			return fmt.Errorf("entry name %q appears twice", ent.Name)
		case ent.Ino == 0 || ent.Ino == fsapi.RootIno:
			return fmt.Errorf("entry %q names node %d", ent.Name, ent.Ino)
		case !validFileType(ent.Mode) || ent.Mode&^syscall.S_IFMT != 0:
			return fmt.Errorf("entry %q has mode %#o", ent.Name, ent.Mode)
		case ent.Cookie <= previous || ent.Cookie >= st.NextCookie:
			return fmt.Errorf("entry %q has cookie %d after %d, next %d", ent.Name, ent.Cookie, previous, st.NextCookie)
		}
		names[ent.Name] = true
		previous = ent.Cookie
	}
	return nil
}

// validateExtents checks that extents are in range, sorted, maximal and
// consistent with the block count, and that no sector with data starts at
// or past size.
func validateExtents(extents []Extent, size, blocks uint64) error {
	var sectors uint64
	for i, ext := range extents {
		if ext.Count == 0 || ext.First >= maxSectorIndex || ext.Count > maxSectorIndex-ext.First {
			return fmt.Errorf("extent of %d sectors at %d", ext.Count, ext.First)
		}
		if i > 0 {
			prev := extents[i-1]
			end := prev.First + prev.Count
			if ext.First < end || ext.First == end && ext.Reserved == prev.Reserved {
				return fmt.Errorf("extent at %d overlaps or continues the one at %d", ext.First, prev.First)
			}
		}
		if !ext.Reserved && (ext.First+ext.Count-1)*SectorSize >= size {
			return fmt.Errorf("data past the end of the file (size %d)", size)
		}
		sectors += ext.Count
	}
	if blocks != sectors*sectorBlocks {
		return fmt.Errorf("%d blocks for %d stored sectors", blocks, sectors)
	}
	return nil
}

// validateChunks checks that chunks are sorted, that each is a chunk of the
// extents with data and has the bytes of its data sectors, and that no data
// byte at or past size is set.
func validateChunks(extents []Extent, chunks []Chunk, size uint64) error {
	if len(chunks) == 0 {
		return nil
	}
	counts := make(map[uint64]uint64)
	for _, ext := range extents {
		if ext.Reserved {
			continue
		}
		for index := ext.First; index < ext.First+ext.Count; index++ {
			counts[chunkOf(index)]++
		}
	}
	for i, ch := range chunks {
		data := ch.Bytes()
		switch {
		case i > 0 && ch.Index <= chunks[i-1].Index:
			return fmt.Errorf("chunk %d after chunk %d", ch.Index, chunks[i-1].Index)
		case counts[ch.Index] == 0:
			return fmt.Errorf("chunk %d has no data sector", ch.Index)
		case uint64(len(data)) != counts[ch.Index]*SectorSize:
			return fmt.Errorf("chunk %d has %d bytes, its %d data sectors need %d", ch.Index, len(data), counts[ch.Index], counts[ch.Index]*SectorSize)
		}
		if end := (ch.Index + 1) * ChunkSize; end > size {
			// The last data sector of the file ends the chunk's data.
			tail := data[len(data)-SectorSize:]
			if !isZero(tail[size%SectorSize:]) && size/SectorSize == lastDataSector(extents) {
				return fmt.Errorf("data past the end of the file (size %d)", size)
			}
		}
	}
	return nil
}

// lastDataSector returns the index of the last sector with data.
func lastDataSector(extents []Extent) uint64 {
	for i := len(extents) - 1; i >= 0; i-- {
		if !extents[i].Reserved {
			return extents[i].First + extents[i].Count - 1
		}
	}
	return 0
}

// EncodeHeader returns the canonical encoding of h (KindHeader, version 1):
// next ino uint64, applied seq uint64.
func EncodeHeader(h Header) []byte {
	e := wire.NewEncoder(KindHeader, headerVersion)
	e.Uint64(uint64(h.NextIno))
	e.Uint64(h.AppliedSeq)
	return e.Data()
}

// DecodeHeader parses an encoding of EncodeHeader.
func DecodeHeader(data []byte) (Header, error) {
	d := wire.NewDecoder(data, KindHeader, headerVersion)
	h := Header{NextIno: fsapi.Ino(d.Uint64()), AppliedSeq: d.Uint64()}
	if err := d.Finish(); err != nil {
		return Header{}, fmt.Errorf("%w: decode engine header: %w", syscall.EINVAL, err)
	}
	if h.NextIno <= fsapi.RootIno {
		return Header{}, fmt.Errorf("%w: decode engine header: next inode %d: %w", syscall.EINVAL, h.NextIno, wire.ErrInvalid)
	}
	return h, nil
}
