package fsys

import (
	"fmt"
	"maps"
	"slices"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// LoadFrom installs a checkpoint into an engine made by NewEmpty: the
// header and the state of every live inode. Regular files may come without
// some or all of their chunks, which the Loader then fetches on first use. The journal entries after h.AppliedSeq are replayed
// with Apply afterwards, and ReclaimOrphans frees what was open and
// unlinked when the daemon stopped.
//
// LoadFrom checks that the states form one tree. Every entry must name a
// live inode of the type it records, and every directory but the root must
// have exactly one parent and lead to the root. Link counts must match the
// entries, and every inode number must lie below h.NextIno. Nothing is
// installed when a check fails.
//
// The inodes in damaged, whose blocks could not be opened, are installed as
// damaged placeholders (see damage.go) of the type their entries record.
// Since the entries of a damaged directory are unknown, an inode may then
// have fewer links than its link count, and a directory may have no parent.
func (e *Engine) LoadFrom(h Header, states []*InodeState, damaged ...DamagedInode) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.inodes) != 0 || e.appliedSeq != 0 {
		return fmt.Errorf("load checkpoint: the engine already has a tree: %w", syscall.EEXIST)
	}
	inodes, used, err := buildTree(h, states, damaged)
	if err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	for _, n := range inodes {
		n.dirtySeq = h.AppliedSeq
		n.cleanSeq = h.AppliedSeq
	}
	e.inodes = inodes
	e.usedBytes = used
	e.nextIno = h.NextIno
	e.appliedSeq = h.AppliedSeq
	e.log.Info("loaded checkpoint", "inodes", len(inodes), "damaged", len(damaged), "applied_seq", h.AppliedSeq, "next_ino", h.NextIno)
	for _, d := range damaged {
		e.markDamaged(inodes[d.Ino], d.Reason)
	}
	return nil
}

func buildTree(h Header, states []*InodeState, damaged []DamagedInode) (map[fsapi.Ino]*inode, uint64, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), syscall.EINVAL)
	}
	inodes := make(map[fsapi.Ino]*inode, len(states))
	var used uint64
	for _, st := range states {
		if err := validateState(st); err != nil {
			return nil, 0, err
		}
		if st.Ino >= h.NextIno {
			return nil, 0, bad("node %d is not below the next inode number %d", st.Ino, h.NextIno)
		}
		if inodes[st.Ino] != nil {
			return nil, 0, bad("node %d appears twice", st.Ino)
		}
		n := inodeFromState(st)
		inodes[st.Ino] = n
		used += n.storedSectors() * SectorSize
	}
	if err := addPlaceholders(h, inodes, damaged); err != nil {
		return nil, 0, err
	}
	relaxed := len(damaged) > 0
	root := inodes[fsapi.RootIno]
	if root == nil || !root.isDir() {
		return nil, 0, bad("no root directory")
	}

	// Link the entries in a fixed order, so that PathOf picks the same
	// link of a hard-linked file after every load.
	subdirs := make(map[fsapi.Ino]uint32)
	for _, ino := range slices.Sorted(maps.Keys(inodes)) {
		dir := inodes[ino]
		if !dir.isDir() {
			continue
		}
		for d := range dir.liveEntries() {
			child := inodes[d.ino]
			switch {
			case child == nil:
				return nil, 0, bad("entry %q of node %d names missing node %d", d.name, ino, d.ino)
			case child.fileType() != d.mode:
				return nil, 0, bad("entry %q of node %d has type %#o, node %d has %#o", d.name, ino, d.mode, d.ino, child.fileType())
			case child.isDir() && len(child.links) != 0:
				return nil, 0, bad("directory %d has two parents", d.ino)
			}
			child.links = append(child.links, link{parent: ino, name: d.name})
			if child.isDir() {
				subdirs[ino]++
			}
		}
	}

	for _, ino := range slices.Sorted(maps.Keys(inodes)) {
		n := inodes[ino]
		want := uint32(len(n.links))
		if n.isDir() {
			want = 2 + subdirs[ino]
			if ino != fsapi.RootIno && len(n.links) == 0 && n.attr.Nlink == 0 {
				// A directory removed while open: no entries, no links.
				want = 0
			}
		}
		if n.damaged != "" {
			n.attr.Nlink = want
		}
		switch {
		case n.attr.Nlink == want:
		case relaxed && !n.isDir() && n.attr.Nlink > want:
			// The missing links may be entries of a damaged directory.
		default:
			return nil, 0, bad("node %d has link count %d, the entries give %d", ino, n.attr.Nlink, want)
		}
		if n.isDir() && n.attr.Nlink == 0 && len(n.entries) != 0 {
			return nil, 0, bad("removed directory %d has entries", ino)
		}
	}
	if len(root.links) != 0 {
		return nil, 0, bad("the root directory is an entry of node %d", root.links[0].parent)
	}
	if err := checkReachable(inodes, relaxed); err != nil {
		return nil, 0, err
	}
	return inodes, used, nil
}

// checkReachable rejects directories whose parent chain does not reach the
// root, which only a cycle of directories can cause once every directory
// has one parent. With relaxed, a chain may also end at a directory without
// a parent, whose parent may be a damaged directory.
func checkReachable(inodes map[fsapi.Ino]*inode, relaxed bool) error {
	reaches := map[fsapi.Ino]bool{fsapi.RootIno: true}
	for _, ino := range slices.Sorted(maps.Keys(inodes)) {
		n := inodes[ino]
		if !n.isDir() || len(n.links) == 0 {
			continue
		}
		var chain []fsapi.Ino
		cur := n
		for !reaches[cur.attr.Ino] {
			if relaxed && len(cur.links) == 0 {
				break
			}
			if len(chain) > len(inodes) || len(cur.links) == 0 {
				return fmt.Errorf("directory %d does not lead to the root: %w", ino, syscall.EINVAL)
			}
			chain = append(chain, cur.attr.Ino)
			cur = inodes[cur.links[0].parent]
		}
		for _, c := range chain {
			reaches[c] = true
		}
	}
	return nil
}

// inodeFromState builds an inode from a validated state. Links are added
// by buildTree.
func inodeFromState(st *InodeState) *inode {
	n := &inode{
		blockID:    st.BlockID,
		attr:       st.Attr,
		target:     st.Target,
		nextCookie: st.NextCookie,
	}
	if len(st.Xattrs) > 0 {
		n.xattrs = make(map[string][]byte, len(st.Xattrs))
		for name, value := range st.Xattrs {
			n.xattrs[name] = append([]byte{}, value...)
		}
	}
	if n.isDir() {
		n.entries = make(map[string]*dirent, len(st.Entries))
		for _, ent := range st.Entries {
			d := &dirent{name: ent.Name, ino: ent.Ino, mode: ent.Mode, cookie: ent.Cookie}
			n.entries[ent.Name] = d
			n.order = append(n.order, d)
		}
	}
	if n.isRegular() {
		n.data = sparseFromState(st.Extents, st.Chunks)
	}
	return n
}

// addPlaceholders adds a damaged placeholder for each inode in damaged, of
// the type that the entries naming it record (a regular file when none do).
func addPlaceholders(h Header, inodes map[fsapi.Ino]*inode, damaged []DamagedInode) error {
	if len(damaged) == 0 {
		return nil
	}
	types := make(map[fsapi.Ino]uint32)
	for _, dir := range inodes {
		for d := range dir.liveEntries() {
			types[d.ino] = d.mode
		}
	}
	for _, d := range damaged {
		if d.Ino == 0 || d.Ino >= h.NextIno || inodes[d.Ino] != nil {
			return fmt.Errorf("damaged node %d is invalid or also has a state: %w", d.Ino, syscall.EINVAL)
		}
		fileType, named := types[d.Ino]
		switch {
		case d.Ino == fsapi.RootIno:
			fileType = syscall.S_IFDIR
		case !named:
			fileType = syscall.S_IFREG
		}
		inodes[d.Ino] = damagedPlaceholder(d, fileType)
	}
	return nil
}
