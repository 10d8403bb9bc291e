package bus

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PeerGroups returns the peer's supplementary groups as the kernel
// recorded them when the socket connected (SO_PEERGROUPS, Linux 4.13 and
// later). It fails on an older kernel and after Close.
func (c *Conn) PeerGroups() ([]uint32, error) {
	raw, err := c.sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("read peer groups of pid %d: %w", c.peer.PID, err)
	}
	var groups []uint32
	var groupsErr error
	if err := raw.Control(func(fd uintptr) { groups, groupsErr = peerGroups(int(fd)) }); err != nil {
		return nil, fmt.Errorf("read peer groups of pid %d: %w", c.peer.PID, err)
	}
	if groupsErr != nil {
		return nil, fmt.Errorf("read peer groups of pid %d: %w", c.peer.PID, groupsErr)
	}
	return groups, nil
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
