package endpoint

import (
	"errors"

	"github.com/blocktree/blocktree/services/bus"
)

// The errors of docs/msg.md, matched with errors.Is. Dial and netd wrap
// them with the address and the reason.
var (
	ErrNoEndpoint   = errors.New("no endpoint at the address")
	ErrUnreachable  = errors.New("destination node unreachable")
	ErrUnauthorized = errors.New("sender not authorized for the address")
	ErrTooLarge     = bus.ErrTooLarge
	ErrTimedOut     = errors.New("timed out")
	ErrPeerGone     = bus.ErrPeerGone
)

// Code is the one-byte form of an error in open replies and in netd's link
// frames.
type Code uint8

// Codes. 0 is not a valid code.
const (
	CodeNoEndpoint   Code = 1
	CodeUnreachable  Code = 2
	CodeUnauthorized Code = 3
	CodeTooLarge     Code = 4
	CodeTimedOut     Code = 5
	CodePeerGone     Code = 6
	CodeInternal     Code = 7 // a failure that none of the others describes
)

var codeErrors = map[Code]error{
	CodeNoEndpoint:   ErrNoEndpoint,
	CodeUnreachable:  ErrUnreachable,
	CodeUnauthorized: ErrUnauthorized,
	CodeTooLarge:     ErrTooLarge,
	CodeTimedOut:     ErrTimedOut,
	CodePeerGone:     ErrPeerGone,
}

// ErrInternal is the error of CodeInternal.
var ErrInternal = errors.New("internal error in netd")

// Err returns the sentinel error of c.
func (c Code) Err() error {
	if err, ok := codeErrors[c]; ok {
		return err
	}
	return ErrInternal
}

// Valid reports whether c is one of the defined codes.
func (c Code) Valid() bool { return c >= CodeNoEndpoint && c <= CodeInternal }

// CodeOf returns the code of the first sentinel that err wraps.
func CodeOf(err error) Code {
	for code, sentinel := range codeErrors {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return CodeInternal
}

// RemoteError is an error reported by netd or by the destination node. Its
// Unwrap returns the sentinel of Code.
type RemoteError struct {
	Code   Code
	Reason string
}

// Error returns the reason, which netd words to include the sentinel's
// text, or the sentinel's text alone.
func (e *RemoteError) Error() string {
	if e.Reason == "" {
		return e.Code.Err().Error()
	}
	return e.Reason
}

func (e *RemoteError) Unwrap() error { return e.Code.Err() }
