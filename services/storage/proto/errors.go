package proto

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrUnknownOp is wrapped by encoding and decoding errors for an operation
// code that this version does not define, or that has no response.
var ErrUnknownOp = errors.New("unknown operation code")

// ErrConnDown is wrapped by every error of a Client whose connection to the
// storage daemon has failed or been closed. Those errors also match
// syscall.EIO.
var ErrConnDown = errors.New("storage daemon connection is down")

// fieldError is an encoding or decoding error in one field of a message.
type fieldError struct {
	action  string // "encode" or "decode"
	message string // "request" or "response"
	op      Op
	field   string
	errno   syscall.Errno // the error a client reports for a request it cannot encode
	err     error
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("%s %s %s field %s: %v", e.action, e.op, e.message, e.field, e.err)
}

func (e *fieldError) Unwrap() error { return e.err }

// Error is the error of a Client request that failed with a POSIX error
// code, either in the storage daemon or in the client before sending.
// errors.Is(err, syscall.ENOENT) and errors.As with a syscall.Errno both
// work.
type Error struct {
	Op    Op
	Errno syscall.Errno
	// Err is the cause when the client itself failed the request, such as
	// an argument above its limit or a cancelled context. It is nil when
	// the daemon returned Errno.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("storage %s: %v (%v)", e.Op, e.Errno, e.Err)
	}
	return fmt.Sprintf("storage %s: %v", e.Op, e.Errno)
}

// Unwrap returns Errno and, if set, Err.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Errno, e.Err}
	}
	return []error{e.Errno}
}

// ConnError is the error of a Client request that could not complete
// because the connection to the storage daemon is down. It matches
// ErrConnDown and syscall.EIO.
type ConnError struct {
	Op   Op
	Path string // path of the bus endpoint
	Err  error  // cause of the connection failure
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("storage %s: %v (bus endpoint %s): %v", e.Op, ErrConnDown, e.Path, e.Err)
}

// Unwrap returns ErrConnDown, syscall.EIO and the cause.
func (e *ConnError) Unwrap() []error { return []error{ErrConnDown, syscall.EIO, e.Err} }
