// Package endpoint names the places that bus messages go to and makes the
// first exchange on every connection to them. It sits between package bus,
// which connects two processes, and netd, which relays connections
// between nodes.
//
// # Addresses
//
// An address is a tree path of exactly five components:
//
//	/btROOT/dev/btNODE/svc/NAME    a service of node btNODE
//	/btROOT/dev/btNODE/proc/NAME   a program that node runs
//
// btROOT is the tree's root principal and btNODE the node's principal.
// NAME is 1 to 64 bytes of lower-case letters, digits, '.', '_' and '-',
// and starts with a letter or digit. Parse rejects every other form.
//
// # Local endpoints
//
// A service on this node listens on a Unix socket under the node's run
// directory (DefaultRunDir on the appliance): RUN/svc/NAME or
// RUN/proc/NAME. Register creates the socket and Listener.Accept returns
// each connection with its Origin. The network daemon itself is the
// service NetdName, so a connection to another node's service is a
// connection to the local netd followed by an open request (see Dial).
//
// # Hello
//
// Every connection made by Dial or DialOrigin starts with one hello
// message from the dialer (bus kind KindHello), in big-endian order:
//
//	version  u8   1
//	claim    u8   0: the dialer speaks for this node; 1: a remote principal follows
//	origin   32   the remote principal (claim 1 only)
//	chain         canonical encoding of its capability.Chain (claim 1 only)
//
// A claim 0 hello gives the origin of the node principal with an empty
// chain. A claim 1 hello is believed only from a peer process whose
// SO_PEERCRED uid is 0 or the service's own uid, because only netd, which
// runs as the node, relays for remote principals. The listener also checks
// that the chain lets the claimed principal write the service's address.
// A rejected hello closes that connection, is counted (Listener.Rejected)
// and is returned by Accept as an error wrapping ErrHello.
//
// # Opening a circuit through netd
//
// Dial of an address on another node connects to the local netd, sends the
// hello and then one open request (KindOpen):
//
//	version   u8   1
//	deadline  i64  absolute deadline in Unix nanoseconds, 0 for none
//	address        the destination address, as text
//
// netd replies with one message: KindOpened (empty payload) when the
// destination accepted the connection, or KindOpenFailed with a Code byte
// and an explanation as text. After KindOpened every message on the
// connection, of any kind, is relayed to and from the destination
// unchanged, so the caller uses it as if it were a direct connection.
package endpoint
