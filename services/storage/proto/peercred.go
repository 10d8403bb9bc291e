package proto

import (
	"encoding/binary"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerCredentials returns the credentials that the kernel recorded for the
// peer of conn when it called connect(2): SO_PEERCRED for the pid, uid and
// gid, and SO_PEERGROUPS (Linux 4.13 and later) for the supplementary
// groups. A kernel without SO_PEERGROUPS yields no groups and groupsErr.
func peerCredentials(conn *net.UnixConn) (cred *unix.Ucred, groups []uint32, groupsErr error, err error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("get peer credentials: %w", err)
	}
	controlErr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return
		}
		groups, groupsErr = peerGroups(int(fd))
	})
	if controlErr != nil {
		return nil, nil, nil, fmt.Errorf("get peer credentials: %w", controlErr)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("get peer credentials: SO_PEERCRED: %w", err)
	}
	return cred, groups, groupsErr, nil
}

// peerGroups reads SO_PEERGROUPS, an array of gid_t in host byte order.
// x/sys/unix has no helper for it: GetsockoptString stops at the first
// zero byte, which every small gid contains.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]byte, 64*4)
	for {
		size := uint32(len(buf))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno == unix.ERANGE && int(size) > len(buf) {
			// The kernel stored the size it needs in size.
			buf = make([]byte, size)
			continue
		}
		if errno != 0 {
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
		if size%4 != 0 || int(size) > len(buf) {
			return nil, fmt.Errorf("SO_PEERGROUPS: %d bytes is not a whole number of gids", size)
		}
		groups := make([]uint32, size/4)
		for i := range groups {
			groups[i] = binary.NativeEndian.Uint32(buf[4*i:])
		}
		return groups, nil
	}
}
