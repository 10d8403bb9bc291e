// Package shell runs a command for a remote client over one bus
// connection (package bus): the protocol behind bt shell. The client
// sends Open with the command and whether it wants a terminal, and then
// its input, window-size changes and signals. The server starts the
// command, sends Started, streams its output and ends with Exit, or it
// sends Error.
// docs/shell.md describes the messages, the session's lifecycle and the
// authorization.
//
// ServeListener serves the connections of a Listener: a registered bus
// endpoint (EndpointListener), whose origin gives each session's caller,
// or a plain bus socket (BusListener), whose callers are all local.
//
// Every message is one bus message of a kind in the range that this
// package reserves (0x73680000 to 0x7368ffff). Every payload starts with
// the format version in one byte, and the decoders reject a payload that
// is short, long, of another version or out of range.
//
// Output is read in chunks that fit one message. While the connection's
// ring is full, Send waits, so the server stops reading the terminal or
// pipes and the command blocks on its writes: no output is buffered in
// the server beyond one chunk per stream.
//
// The command runs in its own process group, as the leader of a new
// session when it has a terminal. Signals from the client go to that
// group. When the client goes away before the command ends, the group gets
// SIGHUP and, after a grace period, SIGKILL, and the server reaps the
// command.
package shell
