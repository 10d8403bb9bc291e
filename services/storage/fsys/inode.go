package fsys

import (
	"iter"
	"slices"
	"sort"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Cookies 1 and 2 belong to "." and "..", so the first real entry of a
// directory gets firstCookie.
const (
	dotCookie    = 1
	dotDotCookie = 2
	firstCookie  = 3
)

// inode is one file, directory, symlink or special file of the tree.
type inode struct {
	blockID [32]byte
	attr    fsapi.Attr // attr.Blocks is kept equal to the stored sectors × 8
	target  string     // symlinks only
	xattrs  map[string][]byte

	// Directories only.
	entries    map[string]*dirent
	order      []*dirent // the entries sorted by cookie, and removed ones (see removeEntry)
	removed    int       // entries of order that removeEntry marked
	nextCookie uint64

	// links are the directory entries that name the inode. A directory has
	// exactly one, the root none, and an unlinked inode none.
	links []link

	data *sparseData // regular files only; nil while damaged

	// State of this daemon only, never journaled nor exported.
	opens    int    // open handles
	dirtySeq uint64 // seq of the last entry that changed the inode
	cleanSeq uint64 // the persistence layer stored the inode up to this seq
	damaged  string // reason, when the inode's block failed to load or verify
}

// dirent is one directory entry. In dir.order, an entry whose ino is 0 was
// removed.
type dirent struct {
	name   string
	ino    fsapi.Ino
	mode   uint32 // file type bits of the inode it names
	cookie uint64
}

// live reports whether the entry is still in its directory.
func (d *dirent) live() bool { return d.ino != 0 }

// link is a directory entry seen from the inode it names.
type link struct {
	parent fsapi.Ino
	name   string
}

func (n *inode) fileType() uint32 { return n.attr.Mode & syscall.S_IFMT }
func (n *inode) isDir() bool      { return n.fileType() == syscall.S_IFDIR }
func (n *inode) isRegular() bool  { return n.fileType() == syscall.S_IFREG }
func (n *inode) isSymlink() bool  { return n.fileType() == syscall.S_IFLNK }

// newInode returns an empty inode of the type in mode.
func newInode(ino fsapi.Ino, blockID [32]byte, mode, uid, gid uint32, rdev uint64, now int64) *inode {
	n := &inode{
		blockID: blockID,
		attr: fsapi.Attr{
			Ino:   ino,
			Mode:  mode,
			Nlink: 1,
			UID:   uid,
			GID:   gid,
			Rdev:  rdev,
			Atime: now,
			Mtime: now,
			Ctime: now,
		},
	}
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		n.attr.Nlink = 2
		n.entries = make(map[string]*dirent)
		n.nextCookie = firstCookie
	case syscall.S_IFREG:
		n.data = newSparseData()
	}
	return n
}

// insertEntry adds name → child to the directory with the next cookie.
func (dir *inode) insertEntry(name string, child *inode) {
	d := &dirent{name: name, ino: child.attr.Ino, mode: child.fileType(), cookie: dir.nextCookie}
	dir.nextCookie++
	dir.entries[name] = d
	dir.order = append(dir.order, d) // the new cookie is the largest
	child.links = append(child.links, link{parent: dir.attr.Ino, name: name})
}

// removeEntry deletes name from the directory and the matching link of child.
// It marks the entry in dir.order as removed instead of moving the entries
// after it, which made deleting every file of a large directory take time
// quadratic in its size. Once half of dir.order is marked, it drops the
// marked entries in one pass, so removals cost amortized constant time and
// order stays at most twice as long as the directory.
func (dir *inode) removeEntry(name string, child *inode) {
	d := dir.entries[name]
	delete(dir.entries, name)
	d.ino = 0
	dir.removed++
	if dir.removed > len(dir.order)/2 {
		dir.order = slices.DeleteFunc(dir.order, func(d *dirent) bool { return !d.live() })
		dir.removed = 0
	}
	child.removeLink(dir.attr.Ino, name)
}

// liveEntries returns the entries of the directory in cookie order.
func (dir *inode) liveEntries() iter.Seq[*dirent] {
	return func(yield func(*dirent) bool) {
		for _, d := range dir.order {
			if d.live() && !yield(d) {
				return
			}
		}
	}
}

// orderIndex returns the position in dir.order of the first entry with a
// cookie at or above cookie.
func (dir *inode) orderIndex(cookie uint64) int {
	return sort.Search(len(dir.order), func(i int) bool { return dir.order[i].cookie >= cookie })
}

func (n *inode) removeLink(parent fsapi.Ino, name string) {
	for i, l := range n.links {
		if l.parent == parent && l.name == name {
			n.links = slices.Delete(n.links, i, i+1)
			return
		}
	}
}

func (n *inode) replaceLink(oldParent fsapi.Ino, oldName string, newParent fsapi.Ino, newName string) {
	for i, l := range n.links {
		if l.parent == oldParent && l.name == oldName {
			n.links[i] = link{parent: newParent, name: newName}
			return
		}
	}
}

// parentIno returns the directory that contains a directory inode; the root
// is its own parent, as ".." of "/" is "/".
func (n *inode) parentIno() fsapi.Ino {
	if len(n.links) == 0 {
		return n.attr.Ino
	}
	return n.links[0].parent
}

// InlineSize is the largest regular file whose data the persistence layer
// stores in the inode block rather than in chunk blocks. The engine keeps
// the data of such small files in memory: it never evicts them, and a
// checkpoint of a small file always includes its data.
const InlineSize = 64 << 10

// small reports whether n is a regular file of at most InlineSize bytes.
func (n *inode) small() bool { return n.isRegular() && n.attr.Size <= InlineSize }

// storedSectors returns the number of stored sectors, 0 unless regular.
func (n *inode) storedSectors() uint64 { return n.attr.Blocks / sectorBlocks }

// needsKillPriv reports whether fsapi.ClearSetID would change mode.
func needsKillPriv(mode uint32) bool { return fsapi.ClearSetID(mode) != mode }
