package proto

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Kinds of the messages of change notifications (see "Change
// notifications" in the package documentation). Each has its own version,
// NotifyVersion.
const (
	KindSubscribe    wire.Kind = 0x0202 // client to server: start notifications
	KindSubscribed   wire.Kind = 0x0203 // server to client: the result of a subscribe
	KindNotification wire.Kind = 0x0204 // server to client: changes
)

// NotifyVersion is the only version of the notification kinds that this
// package encodes and decodes.
const NotifyVersion = 1

// MaxChanges is the largest number of changes in one notification
// message. 1024 changes with names of fsapi.MaxNameLen bytes take about
// 270 KiB, well inside MaxMessageSize.
const MaxChanges = 1024

// Sizes of the encoding of a notification: the header with the count,
// and the smallest and largest change (kind, ino and a name of 0 or
// fsapi.MaxNameLen bytes).
const (
	notificationHeaderSize = 2 + 1 + 4
	minChangeSize          = 1 + 8 + 4
	maxChangeSize          = minChangeSize + fsapi.MaxNameLen
)

// changesPerMessage returns how many changes a notification may carry so
// that it fits in maxPayload bytes, at most MaxChanges.
func changesPerMessage(maxPayload int) int {
	return min(MaxChanges, (maxPayload-notificationHeaderSize)/maxChangeSize)
}

const (
	busKindSubscribe    = uint32(KindSubscribe)
	busKindSubscribed   = uint32(KindSubscribed)
	busKindNotification = uint32(KindNotification)
)

// appendSubscribe appends a subscribe message, which has no fields.
func appendSubscribe(dst []byte) []byte {
	return appendHeader(dst, KindSubscribe, NotifyVersion)
}

// decodeSubscribe checks a subscribe message.
func decodeSubscribe(data []byte) error {
	d := wire.NewDecoder(data, KindSubscribe, NotifyVersion)
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode subscribe: %w", err)
	}
	return nil
}

// appendSubscribed appends the server's reply to a subscribe: errno 0 when
// notifications follow.
func appendSubscribed(dst []byte, errno syscall.Errno) []byte {
	b := appendHeader(dst, KindSubscribed, NotifyVersion)
	return binary.BigEndian.AppendUint32(b, uint32(errno))
}

// decodeSubscribed decodes the server's reply to a subscribe.
func decodeSubscribed(data []byte) (syscall.Errno, error) {
	d := wire.NewDecoder(data, KindSubscribed, NotifyVersion)
	errno := syscall.Errno(d.Uint32())
	if err := d.Finish(); err != nil {
		return 0, fmt.Errorf("decode subscribed: %w", err)
	}
	return errno, nil
}

// AppendNotification appends a notification message that carries changes
// to dst and returns the extended slice. It rejects more than MaxChanges
// changes and every change that fsapi.Change.Check rejects, so every
// message it produces decodes. On error it returns dst unchanged.
func AppendNotification(dst []byte, changes []fsapi.Change) ([]byte, error) {
	if len(changes) > MaxChanges {
		return dst, fmt.Errorf("encode notification: %d changes, limit %d: %w", len(changes), MaxChanges, wire.ErrTooLong)
	}
	b := appendHeader(dst, KindNotification, NotifyVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(changes)))
	for i, c := range changes {
		if err := c.Check(); err != nil {
			return dst, fmt.Errorf("encode notification: change %d: %w", i, err)
		}
		b = append(b, uint8(c.Kind))
		b = binary.BigEndian.AppendUint64(b, uint64(c.Ino))
		b = appendString(b, c.Name)
	}
	return b, nil
}

// DecodeNotification decodes a notification message. It rejects other
// kinds and versions, more than MaxChanges changes, changes that
// fsapi.Change.Check rejects, and trailing bytes. The names are copies.
func DecodeNotification(data []byte) ([]fsapi.Change, error) {
	d := wire.NewDecoder(data, KindNotification, NotifyVersion)
	n := d.Count(MaxChanges)
	checkCount(d, n, minChangeSize)
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("decode notification: %w", err)
	}
	var changes []fsapi.Change
	if n > 0 {
		changes = make([]fsapi.Change, n)
	}
	for i := range changes {
		c := &changes[i]
		c.Kind = fsapi.ChangeKind(d.Uint8())
		c.Ino = fsapi.Ino(d.Uint64())
		c.Name = d.String(fsapi.MaxNameLen)
		if err := d.Err(); err != nil {
			return nil, fmt.Errorf("decode notification: change %d: %w", i, err)
		}
		if err := c.Check(); err != nil {
			return nil, fmt.Errorf("decode notification: change %d: %w", i, err)
		}
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode notification: %w", err)
	}
	return changes, nil
}
