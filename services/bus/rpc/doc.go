// Package rpc matches requests to replies over one bus connection
// (package bus), with the at-most-once delivery and deadlines that
// docs/msg.md sets for the message bus.
//
// Every rpc frame is one bus message of kind Kind. Its payload starts with
// a versioned header of HeaderSize bytes, described at Frame. The header
// contains the frame type (request, reply or error reply), a request id
// that the calling side chooses, the request's absolute deadline in Unix
// nanoseconds (0 for none) and the method. The body follows it. A reply repeats the id and
// the method of its request. An error reply carries the text of the
// handler's error as its body.
//
// A Client sends requests and runs one goroutine that receives every
// reply and hands it to the Call that waits for its id. Call fails with an
// error wrapping ErrTimedOut when its context's deadline passes, and a
// reply that arrives later is dropped and counted (Client.LateReplies).
// When the connection ends, every outstanding Call fails at once with an
// error wrapping ErrPeerGone. In both cases the caller cannot know whether
// the server ran the request, so it may retry only requests that are safe
// to repeat. This package never retries.
//
// Serve, or Server.Serve, runs a handler for each request, at most
// Server.MaxConcurrent at once, with a context that carries the request's
// deadline. A request whose deadline has passed when it arrives is
// dropped without running the handler. A message that is not a valid
// request frame is dropped, counted and logged once per connection, and
// the server goes on serving. Neither gets a reply.
//
// A connection carries requests in one direction: one end runs a Client
// and the other end serves, because each needs to be the connection's only
// receiver.
package rpc
