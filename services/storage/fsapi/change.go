package fsapi

import (
	"context"
	"fmt"
)

// ChangeKind is the kind of a Change.
type ChangeKind uint8

// Kinds of Change. Values are fixed forever, because the storage protocol
// carries them.
const (
	// ChangeEntry reports that the name Name in directory Ino was
	// created, removed or now names another inode.
	ChangeEntry ChangeKind = 1
	// ChangeAttr reports that the attributes of Ino changed (mode, owner,
	// times, link count, extended attributes) but not its contents.
	ChangeAttr ChangeKind = 2
	// ChangeData reports that the contents of Ino changed, and with them
	// possibly its size and times.
	ChangeData ChangeKind = 3
	// ChangeAll reports that changes were lost, so anything may have
	// changed. Its Ino is 0 and its Name empty.
	ChangeAll ChangeKind = 4
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeEntry:
		return "entry"
	case ChangeAttr:
		return "attr"
	case ChangeData:
		return "data"
	case ChangeAll:
		return "all"
	}
	return fmt.Sprintf("change(%d)", uint8(k))
}

// Change is one change to the tree that a Subscription reports: the
// cached names or attributes that a client must drop. It carries no new
// values, only that something changed.
type Change struct {
	Kind ChangeKind
	Ino  Ino    // the directory of ChangeEntry, the inode of ChangeAttr and ChangeData
	Name string // the entry name of ChangeEntry, otherwise empty
}

// Check returns an error unless c is a valid change of its kind: a known
// kind, an inode number only where the kind has one, and a name of 1 to
// MaxNameLen bytes exactly for ChangeEntry.
func (c Change) Check() error {
	switch c.Kind {
	case ChangeEntry:
		if c.Ino == 0 {
			return fmt.Errorf("entry change with directory 0")
		}
		if len(c.Name) == 0 || len(c.Name) > MaxNameLen {
			return fmt.Errorf("entry change in directory %d: name of %d bytes, expected 1 to %d", c.Ino, len(c.Name), MaxNameLen)
		}
	case ChangeAttr, ChangeData:
		if c.Ino == 0 {
			return fmt.Errorf("%s change of inode 0", c.Kind)
		}
		if c.Name != "" {
			return fmt.Errorf("%s change of inode %d has a name", c.Kind, c.Ino)
		}
	case ChangeAll:
		if c.Ino != 0 || c.Name != "" {
			return fmt.Errorf("all change with inode %d and a name of %d bytes, expected neither", c.Ino, len(c.Name))
		}
	default:
		return fmt.Errorf("unknown change kind %d", uint8(c.Kind))
	}
	return nil
}

// Subscriber is implemented by a file system that reports the changes
// that others make to it, such as the storage protocol's client, which
// receives them from the storage daemon.
type Subscriber interface {
	// Subscribe starts the reports. Every change that takes effect after
	// Subscribe returns, except those made through this file system value
	// itself, is reported, unless reports are lost, which the
	// subscription then reports as ChangeAll. An FS that cannot report
	// changes returns an error that wraps syscall.EOPNOTSUPP.
	Subscribe(ctx context.Context) (Subscription, error)
}

// Subscription is a stream of changes.
type Subscription interface {
	// Next waits until changes are pending and returns them. A change
	// that was reported again before Next took it is returned once. Next
	// returns an error when ctx ends or when the subscription ends, for
	// example when the connection to the storage daemon went down.
	Next(ctx context.Context) ([]Change, error)
}
