package fsys

import (
	"strings"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Access bits of access(2) and of the permission checks.
const (
	mayExec  uint32 = 1 // X_OK, search on directories
	mayWrite uint32 = 2 // W_OK
	mayRead  uint32 = 4 // R_OK
)

// checkName validates one name of a directory entry. "." and ".." pass
// here; each operation decides what they mean for it.
func checkName(name string) error {
	switch {
	case name == "":
		return syscall.EINVAL
	case len(name) > fsapi.MaxNameLen:
		return syscall.ENAMETOOLONG
	case strings.ContainsAny(name, "/\x00"):
		return syscall.EINVAL
	}
	return nil
}

func isDotName(name string) bool { return name == "." || name == ".." }

// checkCaller rejects a request without credentials, which no client sends.
func checkCaller(c *fsapi.Caller) error {
	if c == nil {
		return syscall.EINVAL
	}
	return nil
}

// permitted applies the POSIX rules of Linux's generic_permission. Root may
// read and write anything, search every directory and execute anything with
// at least one x bit. Everyone else gets the first class that matches
// (owner, group, other), with no fallback to a later class.
func permitted(c *fsapi.Caller, attr *fsapi.Attr, mask uint32) bool {
	if c.UID == 0 {
		if mask&mayExec == 0 || attr.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			return true
		}
		return attr.Mode&0o111 != 0
	}
	var bits uint32
	switch {
	case c.UID == attr.UID:
		bits = attr.Mode >> 6
	case c.InGroup(attr.GID):
		bits = attr.Mode >> 3
	default:
		bits = attr.Mode
	}
	return bits&7&mask == mask
}

// checkAccess returns EACCES unless c has every permission of mask on n.
func checkAccess(c *fsapi.Caller, n *inode, mask uint32) error {
	if !permitted(c, &n.attr, mask) {
		return syscall.EACCES
	}
	return nil
}

// isOwner reports whether c owns n or is root, the condition for chmod,
// utimes with explicit times and the sticky-bit exemption.
func isOwner(c *fsapi.Caller, n *inode) bool {
	return c.UID == 0 || c.UID == n.attr.UID
}

// clearsOnlySetID reports whether changing the permission bits from old to
// new clears the set-user-ID bit, the set-group-ID bit or both, and
// changes nothing else.
func clearsOnlySetID(old, new uint32) bool {
	const setID = syscall.S_ISUID | syscall.S_ISGID
	cleared := old &^ new
	return new&^old == 0 && cleared != 0 && cleared&^setID == 0
}

// checkSticky implements the restricted deletion flag: in a directory with
// the sticky bit only the owner of the entry, the owner of the directory or
// root may remove or rename the entry.
func checkSticky(c *fsapi.Caller, dir, child *inode) error {
	if dir.attr.Mode&syscall.S_ISVTX == 0 || c.UID == 0 || c.UID == dir.attr.UID || c.UID == child.attr.UID {
		return nil
	}
	return syscall.EPERM
}

// checkHardlink implements Linux's fs.protected_hardlinks=1. A caller who
// does not own the file may link it only if it is a regular file that is
// neither setuid nor executable-setgid and the caller may read and write it.
// This stops a user from pinning a setuid binary of another user in place
// after its owner removed it.
func checkHardlink(c *fsapi.Caller, n *inode) error {
	if isOwner(c, n) {
		return nil
	}
	mode := n.attr.Mode
	if !n.isRegular() || mode&syscall.S_ISUID != 0 || mode&(syscall.S_ISGID|syscall.S_IXGRP) == syscall.S_ISGID|syscall.S_IXGRP {
		return syscall.EPERM
	}
	if !permitted(c, &n.attr, mayRead|mayWrite) {
		return syscall.EPERM
	}
	return nil
}

// newOwner returns the owner, group and mode of a new inode made by c in
// dir: the group of a setgid directory is inherited, with the setgid bit
// for new subdirectories, and a non-root caller outside the inherited group
// loses the setgid bit of a new file, as inode_init_owner does on Linux.
func newOwner(c *fsapi.Caller, dir *inode, mode uint32) (uid, gid, newMode uint32) {
	uid, gid, newMode = c.UID, c.GID, mode
	if dir.attr.Mode&syscall.S_ISGID == 0 {
		return uid, gid, newMode
	}
	gid = dir.attr.GID
	switch {
	case mode&syscall.S_IFMT == syscall.S_IFDIR:
		newMode |= syscall.S_ISGID
	case mode&(syscall.S_ISGID|syscall.S_IXGRP) == syscall.S_ISGID|syscall.S_IXGRP && c.UID != 0 && !c.InGroup(gid):
		newMode &^= syscall.S_ISGID
	}
	return uid, gid, newMode
}
