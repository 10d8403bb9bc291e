package bus

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// When both ends of a connection live in one process, as the storage
// daemon and the FUSE server do in a host-mode node, the ends wake each
// other through Go channels instead of the eventfds. An eventfd wake-up
// goes through the kernel and the runtime's network poller, and usually
// lands on another thread that the scheduler must wake first. A channel
// send makes the sleeping goroutine runnable on the sender's own thread,
// which then runs it as soon as the sender itself waits for the reply. The
// rings, the messages and the wake-up requests in shared memory stay the
// same; only the way a sleeper is woken changes.
//
// The two ends find each other through localLinks. A dialer whose listener
// is this process registers a link under the identity of its memfd before
// it sends the setup. A listener whose dialer is this process looks that
// memfd up when it accepts, and claims the link. The dialer uses the link
// only if the listener claimed it before replying, so both ends either use
// the channels or both use the eventfds.

// localWakeups turns the channel wake-ups on. Tests turn it off to run the
// eventfd path between two ends in one process.
var localWakeups = true

// localLink holds one wake-up channel per eventfd of a connection, indexed
// like connParts.eventFds. Each channel holds at most one pending wake-up,
// as an eventfd's counter coalesces several writes into one wake-up.
type localLink struct {
	wake    [setupFds - 1]chan struct{}
	id      memoryID
	claimed bool // guarded by localLinks.mu
}

// memoryID identifies a memfd by its device and inode, which stay unique
// while the memfd is open.
type memoryID struct {
	dev uint64
	ino uint64
}

var localLinks = struct {
	mu    sync.Mutex
	links map[memoryID]*localLink
}{links: map[memoryID]*localLink{}}

func memoryIDOf(fd int) (memoryID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return memoryID{}, fmt.Errorf("stat the shared memory: %w", err)
	}
	return memoryID{dev: st.Dev, ino: st.Ino}, nil
}

// offerLocalLink registers a link for the memfd fd if the peer is this
// process. It returns nil otherwise. The dialer calls it before sending the
// setup, and must call takeLocalLink once the setup ended.
func offerLocalLink(fd int, peer Cred) (*localLink, error) {
	if !localWakeups || peer.PID != os.Getpid() {
		return nil, nil
	}
	id, err := memoryIDOf(fd)
	if err != nil {
		return nil, err
	}
	link := &localLink{id: id}
	for i := range link.wake {
		link.wake[i] = make(chan struct{}, 1)
	}
	localLinks.mu.Lock()
	localLinks.links[id] = link
	localLinks.mu.Unlock()
	return link, nil
}

// takeLocalLink removes the dialer's link from the registry and returns it
// if the listener claimed it, nil otherwise.
func takeLocalLink(link *localLink) *localLink {
	if link == nil {
		return nil
	}
	localLinks.mu.Lock()
	defer localLinks.mu.Unlock()
	if localLinks.links[link.id] == link {
		delete(localLinks.links, link.id)
	}
	if !link.claimed {
		return nil
	}
	return link
}

// claimLocalLink returns the link that a dialer in this process registered
// for the memfd fd, and marks it claimed. It returns nil when the dialer is
// another process or registered nothing.
func claimLocalLink(fd int, peer Cred) *localLink {
	if !localWakeups || peer.PID != os.Getpid() {
		return nil
	}
	id, err := memoryIDOf(fd)
	if err != nil {
		return nil
	}
	localLinks.mu.Lock()
	defer localLinks.mu.Unlock()
	link := localLinks.links[id]
	if link == nil || link.claimed {
		return nil
	}
	link.claimed = true
	return link
}

// wakeLocal makes a pending or the next wait on ch return.
func wakeLocal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a wake-up is pending already
	}
}
