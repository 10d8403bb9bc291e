package fusefs

import (
	"math"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Requests on locks.

// offsetMax is the kernel's OFFSET_MAX, the End of a lock that reaches to
// the end of the file. fsapi uses math.MaxUint64 for that.
const offsetMax = math.MaxInt64

func (r *rawFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	lk, err := r.fs.GetLk(ctx, c, fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh), in.Owner, apiLock(&in.Lk))
	if err != nil {
		return r.status("getlk", in.NodeId, err)
	}
	out.Lk = kernelLock(lk)
	return fuse.OK
}

func (r *rawFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	return r.setLock(cancel, in, false)
}

func (r *rawFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	return r.setLock(cancel, in, true)
}

// setLock serves SETLK and SETLKW. With FUSE_LK_FLOCK the request comes
// from flock(2), and the lock type names the flock operation.
func (r *rawFS) setLock(cancel <-chan struct{}, in *fuse.LkIn, wait bool) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	if wait {
		ctx, c = r.interruptible(cancel, &in.InHeader)
	}
	ino, h := fsapi.Ino(in.NodeId), fsapi.HandleID(in.Fh)
	if in.LkFlags&fuse.FUSE_LK_FLOCK != 0 {
		var how uint32
		switch in.Lk.Typ {
		case unix.F_RDLCK:
			how = unix.LOCK_SH
		case unix.F_WRLCK:
			how = unix.LOCK_EX
		case unix.F_UNLCK:
			how = unix.LOCK_UN
		default:
			return fuse.EINVAL
		}
		return r.status("flock", in.NodeId, r.fs.Flock(ctx, c, ino, h, how, wait))
	}
	if in.Lk.Typ != unix.F_UNLCK {
		r.locked.add(ino)
	}
	return r.status("setlk", in.NodeId, r.fs.SetLk(ctx, c, ino, h, in.Owner, apiLock(&in.Lk), wait))
}

// lockedInodes is the set of inodes on which a request through this server
// tried to take a POSIX record lock. FLUSH only releases the closing
// owner's record locks, so the server sends it to the daemon only for such
// an inode, and a close(2) of any other file costs no daemon round trip.
// An inode is marked before its lock request goes out, so a FLUSH that
// could meet a lock is always sent.
//
// NOTE: an inode stays in the set for the life of the server. FORGET cannot
// remove it, because the kernel also sends FORGET for an inode that is
// still open (after a lookup found another inode under a cached name).
type lockedInodes struct {
	mu   sync.Mutex
	inos map[fsapi.Ino]struct{}
}

func (l *lockedInodes) add(ino fsapi.Ino) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inos == nil {
		l.inos = make(map[fsapi.Ino]struct{})
	}
	l.inos[ino] = struct{}{}
}

func (l *lockedInodes) contains(ino fsapi.Ino) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.inos[ino]
	return ok
}

// apiLock converts a lock from the kernel. Its Pid is the process id
// (thread group id) of the caller, which GetLk later reports.
func apiLock(lk *fuse.FileLock) fsapi.Lock {
	end := lk.End
	if end >= offsetMax {
		end = math.MaxUint64
	}
	return fsapi.Lock{Start: lk.Start, End: end, Type: lk.Typ, PID: lk.Pid}
}

// kernelLock converts a lock for the kernel, which rejects with EIO any
// lock whose start or end lies beyond OFFSET_MAX.
func kernelLock(lk fsapi.Lock) fuse.FileLock {
	return fuse.FileLock{
		Start: min(lk.Start, offsetMax),
		End:   min(lk.End, offsetMax),
		Typ:   lk.Type,
		Pid:   lk.PID,
	}
}
