package fusefs

import (
	"context"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Requests on open directories.

// minDirentSize is the size of the smallest entry in a READDIR reply: the
// 24-byte fuse_dirent header and a name of up to 8 bytes, padded to 8.
const minDirentSize = 24 + 8

// entryOutSize is the size of the fuse_entry_out that precedes each entry
// in a READDIRPLUS reply.
var entryOutSize = int(unsafe.Sizeof(fuse.EntryOut{}))

func (r *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	h, err := r.fs.OpenDir(ctx, c, fsapi.Ino(in.NodeId), in.Flags)
	if err != nil {
		return r.status("opendir", in.NodeId, err)
	}
	// No FOPEN_CACHE_DIR: the kernel does not cache directory contents, so
	// every readdir reaches the daemon and lists what other clients made.
	*out = fuse.OpenOut{Fh: uint64(h)}
	return fuse.OK
}

// ReadDir requests as many entries from the daemon as can fit in the reply
// and adds them until it is full. The kernel continues from the cookie of the last
// entry it got, so entries that did not fit are read again next time.
func (r *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	entries, err := r.fs.ReadDir(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), in.Offset, max(1, int(in.Size)/minDirentSize))
	if err != nil {
		return r.status("readdir", in.NodeId, err)
	}
	for _, e := range entries {
		if !r.validCookie(in.NodeId, &e) {
			return fuse.EIO
		}
		if !out.AddDirEntry(fuse.DirEntry{Name: e.Name, Ino: uint64(e.Ino), Mode: e.Mode, Off: e.Cookie}) {
			break
		}
	}
	return fuse.OK
}

// ReadDirPlus is ReadDir with the attributes of each entry, which spares
// the kernel one LOOKUP per entry. An entry whose Lookup fails (it was
// removed meanwhile, say) is sent without attributes, and the kernel then
// treats it as a plain READDIR entry.
func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	parent := fsapi.Ino(in.NodeId)
	entries, err := r.fs.ReadDir(ctx, c, parent, fsapi.HandleID(in.Fh), in.Offset, max(1, int(in.Size)/(entryOutSize+minDirentSize)))
	if err != nil {
		return r.status("readdirplus", in.NodeId, err)
	}
	for _, e := range entries {
		if !r.validCookie(in.NodeId, &e) {
			return fuse.EIO
		}
		entryOut := out.AddDirLookupEntry(fuse.DirEntry{Name: e.Name, Ino: uint64(e.Ino), Mode: e.Mode, Off: e.Cookie})
		if entryOut == nil {
			break
		}
		if e.Name == "." || e.Name == ".." {
			// The kernel never makes dentries for these from READDIRPLUS.
			continue
		}
		attr, err := r.fs.Lookup(ctx, c, parent, e.Name)
		if err != nil || attr.Ino == 0 {
			continue
		}
		r.fillEntry("readdirplus", entryOut, parent, e.Name, &attr)
		if attr.Mode&syscall.S_IFMT != e.Mode&syscall.S_IFMT {
			// The name was replaced by another file type between ReadDir and
			// Lookup; the entry must describe the inode it now names.
			out.FixMode(attr.Mode)
		}
	}
	return fuse.OK
}

// validCookie reports whether e has a cookie the kernel can continue from.
// Cookie 0 would restart the directory.
func (r *rawFS) validCookie(dir uint64, e *fsapi.DirEntry) bool {
	if e.Cookie != 0 {
		return true
	}
	r.logger.Error("file system returned directory entry with cookie 0", "ino", dir, "entry", e.Name)
	return false
}

// ReleaseDir has no cancel channel and no reply that the kernel reads, so
// errors are only logged.
func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	if err := r.fs.ReleaseDir(context.Background(), fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh)); err != nil {
		r.logger.Error("releasedir failed", "ino", in.NodeId, "error", err)
	}
}

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	return r.status("fsyncdir", in.NodeId, r.fs.FsyncDir(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh)))
}
