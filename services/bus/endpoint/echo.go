package endpoint

import (
	"context"
	"errors"
	"log/slog"

	"github.com/blocktree/blocktree/services/bus"
)

// EchoName is the service name of the echo service, which tools and tests
// use to check that messages reach a node.
const EchoName = "echo"

// ServeEcho accepts connections on l until ctx ends or l is closed, and
// replies to each message with one of the same kind and payload. It logs
// each connection's origin at debug level and each rejected hello.
func ServeEcho(ctx context.Context, l *Listener, logger *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		conn, origin, err := l.Accept()
		if errors.Is(err, ErrHello) || errors.Is(err, bus.ErrSetup) {
			logger.Warn("echo: connection rejected", "path", l.Address().String(), "error", err)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		logger.Debug("echo: connection", "path", l.Address().String(), "principal", origin.Principal.String(), "remote", origin.Remote)
		go echo(ctx, conn)
	}
}

// echo replies to every message on conn until either side closes it.
func echo(ctx context.Context, conn *bus.Conn) {
	defer conn.Close()
	for {
		msg, err := conn.Recv(ctx)
		if err != nil {
			return
		}
		err = conn.Send(ctx, msg.Kind, msg.Data)
		msg.Release()
		if err != nil {
			return
		}
	}
}
