// Package grant lets the processes of a running node have the node issue
// writecaps. Only a device's running services hold its key, so this is how
// a device grants another principal access to part of its tree, for
// example its shell address to a workstation.
//
// The service is the node's bus endpoint svc/keys, served by netd. It
// answers only connections that speak for the node itself: a process of
// this node that can open the endpoint's socket, which the run directory's
// permissions limit to root. A connection that netd relayed for another
// node is closed unanswered and counted.
//
// A request is one rpc call (package bus/rpc) with method MethodIssue and
// this body, big-endian:
//
//	kind    u16  0x0600 (KindIssueRequest), version u8 1
//	subject      32 bytes, the principal that receives the grant
//	expires i64  Unix nanoseconds at which the grant ends
//	prefix       u32 length || the tree path the grant covers
//
// The reply body is the canonical encoding of the subject's new chain
// (capability.Chain): the node's own chain, empty when the node is the
// root of its tree, followed by the new writecap.
package grant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/bus/rpc"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// ServiceName is the endpoint name of the service: /btROOT/dev/btNODE/svc/keys.
const ServiceName = "keys"

// MethodIssue is the rpc method of an issue request.
const MethodIssue uint32 = 1

// KindIssueRequest is the wire kind of an issue request's body.
const KindIssueRequest wire.Kind = 0x0600

const requestVersion = 1

// MaxLifetime bounds how far in the future a grant may end.
const MaxLifetime = 10 * 365 * 24 * time.Hour

// Request is a request for a writecap that lets Subject write under Prefix
// until Expires.
type Request struct {
	Subject principal.Principal
	Prefix  string
	Expires time.Time
}

// EncodeRequest returns the body of an issue request.
func EncodeRequest(r Request) []byte {
	e := wire.NewEncoder(KindIssueRequest, requestVersion)
	e.Fixed(r.Subject[:])
	e.Int64(r.Expires.UnixNano())
	e.String(r.Prefix)
	return e.Data()
}

// DecodeRequest parses the body of an issue request and checks the prefix.
func DecodeRequest(b []byte) (Request, error) {
	d := wire.NewDecoder(b, KindIssueRequest, requestVersion)
	var r Request
	copy(r.Subject[:], d.Fixed(len(r.Subject)))
	r.Expires = time.Unix(0, d.Int64())
	r.Prefix = d.String(capability.MaxPathLen)
	if err := d.Finish(); err != nil {
		return Request{}, fmt.Errorf("decode issue request: %w", err)
	}
	if r.Subject.IsZero() {
		return Request{}, errors.New("decode issue request: the subject is the zero principal")
	}
	if err := capability.ValidatePath(r.Prefix); err != nil {
		return Request{}, fmt.Errorf("decode issue request: prefix: %w", err)
	}
	return r, nil
}

// Server issues writecaps with a node's key.
type Server struct {
	// Node is the node's credential, whose key signs the grants.
	Node *principal.Credential
	// Chain is the node's own chain from its tree's root, empty when the
	// node is the root. A grant must lie inside its last prefix.
	Chain  capability.Chain
	Logger *slog.Logger

	rejectedRemote atomic.Uint64
}

// RejectedRemote returns how many connections relayed for other nodes the
// server closed.
func (s *Server) RejectedRemote() uint64 { return s.rejectedRemote.Load() }

// Serve serves the connections of l until ctx ends.
func (s *Server) Serve(ctx context.Context, l *endpoint.Listener) error {
	logger := s.logger()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, origin, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, endpoint.ErrHello) || errors.Is(err, bus.ErrSetup) {
				logger.Warn("key service connection rejected", "error", err)
				continue
			}
			return fmt.Errorf("key service: %w", err)
		}
		if origin.Remote {
			s.rejectedRemote.Add(1)
			logger.Warn("key service rejected a connection relayed for another node", "principal", origin.Principal.String())
			conn.Close()
			continue
		}
		conns.Go(func() {
			defer conn.Close()
			if err := rpc.Serve(ctx, conn, s.handle); err != nil && ctx.Err() == nil && !errors.Is(err, bus.ErrPeerGone) {
				logger.Warn("key service connection failed", "error", err)
			}
		})
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// handle serves one rpc request.
func (s *Server) handle(_ context.Context, method uint32, body []byte) ([]byte, error) {
	if method != MethodIssue {
		return nil, fmt.Errorf("unknown method %d: this service issues writecaps only (method %d)", method, MethodIssue)
	}
	r, err := DecodeRequest(body)
	if err != nil {
		return nil, err
	}
	chain, err := s.Issue(r, time.Now())
	if err != nil {
		return nil, err
	}
	return chain.MarshalBinary()
}

// Issue signs a writecap for r at time now and returns the subject's chain.
func (s *Server) Issue(r Request, now time.Time) (capability.Chain, error) {
	self := s.Node.Principal()
	scope := capability.RootPath(self)
	if len(s.Chain) > 0 {
		scope = s.Chain[len(s.Chain)-1].Prefix
	}
	if !capability.Covers(scope, r.Prefix) {
		return nil, fmt.Errorf("prefix %s lies outside this node's scope %s: grant a path under it", r.Prefix, scope)
	}
	if !r.Expires.After(now) {
		return nil, fmt.Errorf("expiry %s is not in the future: pass a later time", r.Expires.UTC().Format(time.RFC3339))
	}
	if r.Expires.Sub(now) > MaxLifetime {
		return nil, fmt.Errorf("expiry %s is more than %v away: pass an earlier time", r.Expires.UTC().Format(time.RFC3339), MaxLifetime)
	}
	link, err := capability.Issue(s.Node.Signing, r.Subject, r.Prefix, now, r.Expires)
	if err != nil {
		return nil, err
	}
	chain := append(append(capability.Chain{}, s.Chain...), link)
	s.logger().Info("writecap issued", "principal", r.Subject.String(), "path", r.Prefix, "expires", r.Expires.UTC().Format(time.RFC3339))
	return chain, nil
}

// Ask sends r to the key service through client, an rpc client on a
// connection to the service, and returns the subject's new chain.
func Ask(ctx context.Context, client *rpc.Client, r Request) (capability.Chain, error) {
	reply, err := client.Call(ctx, MethodIssue, EncodeRequest(r))
	if err != nil {
		return nil, err
	}
	chain, err := capability.ParseChain(reply)
	if err != nil {
		return nil, fmt.Errorf("the key service replied with an invalid chain: %w", err)
	}
	return chain, nil
}
