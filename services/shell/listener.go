package shell

import (
	"fmt"
	"os"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// ServiceName is the name of the shell service in a node's addresses,
// /btROOT/dev/btNODE/svc/shell.
const ServiceName = "shell"

// Listener is a source of connections for ServeListener.
type Listener interface {
	// Accept waits for the next connection and returns it with the
	// principal it speaks for. The zero principal is a local caller whom
	// no principal describes. An error wrapping endpoint.ErrHello or
	// bus.ErrSetup concerns only that connection.
	Accept() (*bus.Conn, principal.Principal, error)
	// Close stops Accept.
	Close() error
}

// BusListener returns a Listener over a plain bus socket. Every caller is
// local and speaks for no principal, so the socket's file mode is the
// only access control.
func BusListener(l *bus.Listener) Listener { return busListener{l} }

type busListener struct{ l *bus.Listener }

func (b busListener) Accept() (*bus.Conn, principal.Principal, error) {
	conn, err := b.l.Accept()
	return conn, principal.Principal{}, err
}

func (b busListener) Close() error { return b.l.Close() }

// EndpointListener returns a Listener over a registered endpoint. Its
// caller is the principal of the connection's origin: the node for a
// local process, or the remote principal that netd relays for, whose
// writecap chain Accept has verified against the endpoint's address.
//
// A local connection speaks for the node only when its process runs as
// root or as the user of this process. A process of another user is
// rejected with an error wrapping endpoint.ErrHello, because the node
// would otherwise hand it a shell as this process's user.
func EndpointListener(l *endpoint.Listener) Listener {
	return endpointListener{l: l, uid: uint32(os.Getuid())}
}

type endpointListener struct {
	l   *endpoint.Listener
	uid uint32
}

func (e endpointListener) Accept() (*bus.Conn, principal.Principal, error) {
	conn, origin, err := e.l.Accept()
	if err != nil {
		return nil, principal.Principal{}, err
	}
	if peer := conn.Peer(); !origin.Remote && peer.UID != 0 && peer.UID != e.uid {
		conn.Close()
		return nil, principal.Principal{}, fmt.Errorf("endpoint %s: %w: local process pid %d runs as uid %d, and only root or uid %d speaks for the node", e.l.Address(), endpoint.ErrHello, peer.PID, peer.UID, e.uid)
	}
	return conn, origin.Principal, nil
}

func (e endpointListener) Close() error { return e.l.Close() }
