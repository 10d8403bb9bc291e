package proto

import (
	"errors"
	"fmt"
	"slices"

	"github.com/blocktree/blocktree/services/crypto/wire"
)

// KindVersions is the server's reply to a request or subscribe of a
// version that it does not implement. It lists the versions that the
// server does implement, so that the client can fail with an error that
// names both sides instead of waiting for a response that never comes.
// Its kind and its version 1 layout are fixed forever:
//
//	header      kind 0x0205, version 1
//	u8          number of request and response versions, at least 1
//	u8 each     those versions
//	u8          number of notification versions, at least 1
//	u8 each     those versions
const KindVersions wire.Kind = 0x0205

const (
	versionsVersion = 1
	busKindVersions = uint32(KindVersions)
)

// requestVersions and notifyVersions are the versions that this package
// implements.
var (
	requestVersions = []uint8{Version}
	notifyVersions  = []uint8{NotifyVersion}
)

// VersionError is the cause of a ConnError when the server implements none
// of the client's versions.
type VersionError struct {
	Requests []uint8 // the server's request and response versions
	Notify   []uint8 // the server's notification versions
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("the storage daemon speaks protocol versions %v (notifications %v), and this program speaks %d (notifications %d): run a bt and a node of the same release",
		e.Requests, e.Notify, Version, NotifyVersion)
}

// appendVersions appends a versions message with the two lists, each of 1
// to 255 versions.
func appendVersions(dst []byte, requests, notify []uint8) []byte {
	b := appendHeader(dst, KindVersions, versionsVersion)
	for _, list := range [][]uint8{requests, notify} {
		b = append(b, uint8(len(list)))
		b = append(b, list...)
	}
	return b
}

// errEmptyVersions is returned for a versions message with an empty list.
var errEmptyVersions = errors.New("empty list of versions")

// decodeVersions decodes a versions message.
func decodeVersions(data []byte) (*VersionError, error) {
	d := wire.NewDecoder(data, KindVersions, versionsVersion)
	var lists [2][]uint8
	for i := range lists {
		n := int(d.Uint8())
		for range n {
			lists[i] = append(lists[i], d.Uint8())
		}
		if d.Err() == nil && n == 0 {
			return nil, fmt.Errorf("decode versions: %w", errEmptyVersions)
		}
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode versions: %w", err)
	}
	return &VersionError{Requests: slices.Clip(lists[0]), Notify: slices.Clip(lists[1])}, nil
}
