// Package route is netd's forwarding core: a Router relays bus
// connections between nodes. A local process that wants a service of
// another node connects to the local netd endpoint (endpoint.NetdName)
// and sends an open request naming the destination address. After
// netd's KindOpened reply, it uses the connection as if it led to the
// service itself. docs/msg.md describes the model; this comment
// describes the implementation.
//
// # Circuits and links
//
// Each such connection becomes a circuit on a link (package peer) to the
// destination node. A Router keeps one link per peer node that it dialed,
// dials on demand and dials again after a loss. It finds the node's
// HOST:PORT in the peers file (ParsePeers) and the chain to present in
// the chains directory (LoadChains), by the root of the destination's
// tree. Both are read at each dial, so edits apply to the next link.
// Links are directional: circuits opened by this node go on links it
// dialed, and links that other nodes dialed carry their circuits to this
// node's services.
//
// The receiving router checks every open: the destination must be on
// this node in this node's tree (else Unreachable), and the dialer's chain
// must cover it (peer.Link.Covers, else Unauthorized, counted and
// logged). It then dials the local endpoint with endpoint.DialOrigin,
// whose hello claims the dialer's principal and chain, so the service
// sees who is speaking (endpoint.Origin).
//
// # Link protocol
//
// Inside the TLS connection of a link, each side writes frames (Frame):
// a 12-byte header with the version, the type, the circuit and the body
// length, then the body. OPEN (dialer to listener) carries the deadline
// and the destination address. OPENED or ERROR (with an endpoint.Code)
// answers it. MSG carries one bus message, its kind and payload, relayed
// verbatim. CREDIT returns credit, CLOSE ends a circuit, and PING, on
// circuit 0, keeps an idle link alive. Frames go into the buffer of
// peer.Link, and the last of the writers queued for the link flushes it,
// so frames that are ready together share one write system call.
//
// Each circuit has a credit window per direction (Options.Window): a
// sender may have at most that many bytes of messages, each counted as its
// payload plus 16, that the receiver has not yet handed to its local
// connection. The receiver returns credit as it delivers. So a slow local
// process fills only its own circuit's window, and the other circuits
// of the link go on.
//
// # Failures
//
// A frame that breaks the format or the protocol (a bad header, an OPEN
// on a dialed link, a message beyond the window, credit beyond it) is
// counted and logged, rate-limited, and closes its link. Goroutines that
// handle peer input recover from panics, log and count them, and close
// their link or circuit. When a link fails, or nothing arrives on it for
// three keepalive intervals, every circuit on it ends: each local
// connection is closed, so the process on it gets bus.ErrPeerGone, on
// both nodes. The next open dials a new link. Nothing is retried or
// replayed, so a message is delivered at most once.
package route
