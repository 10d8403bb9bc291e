package block

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrIntegrity means the encoded block is damaged or is not what its
	// writer signed. It is wrapped by *IntegrityError.
	ErrIntegrity = errors.New("block integrity check failed")

	// ErrRollback means the block is older than the caller's minimum version.
	// It is wrapped by *RollbackError.
	ErrRollback = errors.New("block version is older than the minimum expected")

	// ErrNoReadcap means the block has no readcap for the given principal.
	ErrNoReadcap = errors.New("no readcap for this reader")

	// ErrDuplicateReader means a reader was listed twice for Seal, or
	// AddReader was given a principal that already holds a readcap.
	ErrDuplicateReader = errors.New("reader is listed twice")
)

// HeaderSector is the IntegrityError.Sector value for a failure outside the
// sectors: in the header, the sector ranges, the leaf hashes or the layout.
const HeaderSector = -1

// IntegrityError reports where a block failed a check.
type IntegrityError struct {
	ID     [32]byte // the block id the caller expected, or the header's id
	Sector int      // sector index, or HeaderSector
	Reason string
	Err    error // underlying cause, such as a wire or signature error; may be nil
}

func (e *IntegrityError) Error() string {
	where := "header"
	if e.Sector != HeaderSector {
		where = fmt.Sprintf("sector %d", e.Sector)
	}
	msg := fmt.Sprintf("block %s: %s: %s", formatID(e.ID), where, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + ": " + ErrIntegrity.Error()
}

// Unwrap returns ErrIntegrity and the underlying cause, so errors.Is matches
// both.
func (e *IntegrityError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrIntegrity}
	}
	return []error{ErrIntegrity, e.Err}
}

// RollbackError reports a block older than the caller's minimum version.
type RollbackError struct {
	ID   [32]byte
	Have uint64 // version in the block
	Want uint64 // minimum version the caller accepts
}

func (e *RollbackError) Error() string {
	return fmt.Sprintf("block %s: version %d, expected at least %d: %s", formatID(e.ID), e.Have, e.Want, ErrRollback)
}

// Unwrap returns ErrRollback.
func (e *RollbackError) Unwrap() error { return ErrRollback }

func formatID(id [32]byte) string { return hex.EncodeToString(id[:]) }

func headerError(id [32]byte, reason string, err error) *IntegrityError {
	return &IntegrityError{ID: id, Sector: HeaderSector, Reason: reason, Err: err}
}

func sectorError(id [32]byte, index int, reason string) *IntegrityError {
	return &IntegrityError{ID: id, Sector: index, Reason: reason}
}
