// Package ifconfig configures a device's network interfaces from a file in
// the user's block tree, /bt/dev/NODE/net/interfaces on the device. The
// network daemon (netd) runs a Manager that watches the file and applies
// it through netlink.
//
// # The file
//
// Parse reads the file: one stanza per interface, started by
// "interface NAME" and followed by the keywords dhcp, address, gateway,
// mtu and down. docs/netd.md describes the format for the user. Parse
// rejects the whole file on the first problem, with a one-line
// *ParseError that names the file, the line, the value and the fix.
//
// # Applying a configuration
//
// Manager.Apply makes each named interface match its stanza: link up or
// down, MTU, static addresses, default routes through the gateways, and a
// DHCPv4 client (nclient4 from github.com/insomniacslk/dhcp) for dhcp.
// Interfaces the file does not name keep their settings, and lo is never
// named. Apply is idempotent: it compares with what the kernel has and
// changes only the difference.
//
// # Which addresses are the Manager's own
//
// A Manager removes only addresses and default routes that it added
// itself. An address someone else added stays even when the file no
// longer lists it, and an address the file lists that was already there
// is not taken over. The Manager records each address and route before it
// adds it, and forgets it once removed. The record lives in memory and in
// Options.StateFile, a small JSON file that a restarted netd reads. netd
// keeps it on /run, a tmpfs, because the kernel's addresses do not outlive
// a reboot either; a record that outlived them could claim an address
// someone else added later.
//
// # DHCP
//
// A DHCP client gets a lease (DISCOVER, OFFER, REQUEST, ACK), renews it at
// T1 with the server that granted it, rebinds at T2 with any server, and
// removes the address at expiry, then starts over. When no server answers
// it retries with exponential backoff. The lease's address is added with
// the kernel's valid lifetime set to the lease's end, so the kernel drops
// it at expiry even when netd is not running. The router becomes a
// default route (metric 100, protocol dhcp) and the interface MTU option
// sets the MTU unless the file sets one. Name servers are recorded in
// Status only: this package does not write /etc/resolv.conf. Close and a
// configuration without dhcp release the lease and remove its address.
//
// # Namespaces
//
// The Manager works through the netlink handle in Options.Handle, so it
// can configure another network namespace without moving its own
// threads. The DHCP client needs a packet socket in that namespace;
// Options.Namespace names it, and the socket is created on a thread that
// enters the namespace only for that call.
package ifconfig
