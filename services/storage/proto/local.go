package proto

import (
	"context"
	"errors"
	"sync"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/ring"
)

// Both ends of a connection whose client is in the daemon's process
// receive the same way. A goroutine of the end waits with WaitMessage and
// then receives everything waiting under the end's receiving mutex.
// Goroutines of the other end may take that mutex to receive their own
// messages (serverConn.handleThrough, Client.receiveResponses).

// errStopServing is returned by receiveWaiting when a message ended the
// connection.
var errStopServing = errors.New("connection ended")

// receiveLocal waits for messages on conn and passes each to handle under
// receiving, until ctx ends, conn fails or handle returns false. It
// returns nil in the last case, and otherwise the error that stopped it.
func receiveLocal(ctx context.Context, conn *bus.Conn, receiving *sync.Mutex, handle func(bus.Message) bool) error {
	for {
		if err := conn.WaitMessage(ctx); err != nil {
			return err
		}
		receiving.Lock()
		err := receiveWaiting(ctx, conn, handle)
		receiving.Unlock()
		if errors.Is(err, errStopServing) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// receiveWaiting passes each message waiting on conn to handle. It
// returns nil once none waits, errStopServing when handle returns false,
// and the error of ctx or conn otherwise. The caller holds the end's
// receiving mutex.
func receiveWaiting(ctx context.Context, conn *bus.Conn, handle func(bus.Message) bool) error {
	for {
		// A message handled on another goroutine may have ended the
		// connection, and WaitMessage still returns while messages wait.
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, err := conn.TryRecv()
		if errors.Is(err, ring.ErrEmpty) {
			return nil
		}
		if err != nil {
			return err
		}
		if !handle(msg) {
			return errStopServing
		}
	}
}
