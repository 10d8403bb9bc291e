package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blocktree/blocktree/services/bus"
)

// DefaultMaxConcurrent is the number of handlers that a Server runs at once
// when Server.MaxConcurrent is 0.
const DefaultMaxConcurrent = 64

// Handler runs one request. ctx carries the request's deadline and is
// cancelled when Serve returns. The returned bytes are the reply body. A
// non-nil error is sent to the caller as its text and the bytes are
// ignored.
type Handler func(ctx context.Context, method uint32, body []byte) ([]byte, error)

// Server runs a Handler for the requests that arrive on a bus connection.
// Its counters may be read while Serve runs.
type Server struct {
	Handler Handler
	// MaxConcurrent is the number of handlers that run at once. While all
	// are busy, Serve receives nothing more, so the callers' sends wait
	// for ring space. 0 means DefaultMaxConcurrent.
	MaxConcurrent int
	// Logger receives the server's log lines. nil means slog.Default().
	Logger *slog.Logger

	malformed      atomic.Uint64
	expired        atomic.Uint64
	expiredReplies atomic.Uint64
}

// Serve runs handler for each request on conn with a Server of default
// settings. See Server.Serve.
func Serve(ctx context.Context, conn *bus.Conn, handler Handler) error {
	s := &Server{Handler: handler}
	return s.Serve(ctx, conn)
}

// MalformedFrames returns the number of received messages dropped because
// they were not valid request frames. None of them got a reply.
func (s *Server) MalformedFrames() uint64 { return s.malformed.Load() }

// ExpiredRequests returns the number of requests dropped without running
// the handler, because their deadline had passed when they arrived.
func (s *Server) ExpiredRequests() uint64 { return s.expired.Load() }

// ExpiredReplies returns the number of replies not sent because the
// request's deadline passed while the handler ran or the reply waited for
// ring space.
func (s *Server) ExpiredReplies() uint64 { return s.expiredReplies.Load() }

// Serve receives requests on conn and runs the handler for each one in its
// own goroutine, at most MaxConcurrent at once, and sends each result back
// as a reply or error reply. It drops, without a reply, requests whose
// deadline has passed and messages that are not valid request frames.
// Serve must be the only receiver on conn. It returns when conn ends or
// ctx is done, after the running handlers have returned. The error then
// wraps the cause, for example bus.ErrPeerGone or ctx.Err().
func (s *Server) Serve(ctx context.Context, conn *bus.Conn) error {
	if s.Handler == nil {
		return errors.New("rpc serve: Server.Handler is nil")
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	limit := s.MaxConcurrent
	if limit <= 0 {
		limit = DefaultMaxConcurrent
	}

	ctx, cancel := context.WithCancel(ctx)
	var handlers sync.WaitGroup
	defer handlers.Wait()
	defer cancel()

	slots := make(chan struct{}, limit)
	peer := conn.Peer().PID
	var loggedMalformed bool
	for {
		msg, err := conn.Recv(ctx)
		if err != nil {
			return fmt.Errorf("rpc serve peer pid %d: %w", peer, err)
		}
		f, err := decodeMessage(msg)
		if err == nil && f.Type != TypeRequest {
			err = fmt.Errorf("%w: frame type %d received by a server, want request", ErrMalformed, f.Type)
		}
		if err != nil {
			s.malformed.Add(1)
			if !loggedMalformed {
				loggedMalformed = true
				logger.Warn("rpc server dropped a malformed frame; later ones are only counted",
					"peer_pid", peer, "error", err)
			}
			continue
		}
		if f.Deadline != 0 && time.Now().UnixNano() >= f.Deadline {
			s.expired.Add(1)
			continue
		}

		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("rpc serve peer pid %d: %w", peer, ctx.Err())
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer func() { <-slots }()
			s.handle(ctx, conn, logger, f)
		}()
	}
}

// handle runs the handler for one request and sends its reply.
func (s *Server) handle(ctx context.Context, conn *bus.Conn, logger *slog.Logger, request Frame) {
	if request.Deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, request.Deadline))
		defer cancel()
	}

	body, err := s.Handler(ctx, request.Method, request.Body)
	reply := Frame{Type: TypeReply, ID: request.ID, Method: request.Method, Body: body}
	if err != nil {
		reply.Type, reply.Body = TypeError, []byte(err.Error())
	}
	if room := conn.MaxPayload() - HeaderSize; len(reply.Body) > room {
		if reply.Type == TypeError {
			reply.Body = reply.Body[:room]
		} else {
			reply.Type = TypeError
			reply.Body = fmt.Appendf(nil, "reply of %d bytes exceeds the bus connection's maximum of %d bytes", len(body), room)
		}
	}

	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.expiredReplies.Add(1)
		return
	}
	// NOTE: Reserve picks at random between free ring space and a done
	// ctx, so a reply may still be sent just after its deadline. The
	// caller then drops it as late.
	err = sendFrame(ctx, conn, reply)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		s.expiredReplies.Add(1)
	case errors.Is(err, context.Canceled), errors.Is(err, bus.ErrPeerGone), errors.Is(err, bus.ErrClosed):
		// Serve is returning; it reports the cause.
	default:
		logger.Warn("rpc server failed to send a reply",
			"peer_pid", conn.Peer().PID, "request", request.ID, "method", request.Method, "error", err)
	}
}
