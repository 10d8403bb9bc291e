// Package wire is Blocktree's canonical binary encoding for every structure
// that is signed, sealed, stored on disk or sent over the network.
//
// Signatures cover bytes, not Go values, so each structure has exactly one
// encoding: integers are fixed-width big-endian, byte strings carry a 32-bit
// length prefix, and fields appear in a fixed order with no optional tags.
// Every encoding starts with a two-byte kind and a one-byte version, so a
// decoder never mistakes one structure for another and rejects versions it
// does not know.
//
// A Decoder is strict: it rejects truncated input, lengths above the limit the
// caller passes, and trailing bytes after the last field. Errors are sticky:
// after the first failure every read returns a zero value and Finish returns
// that first error, so decoding code reads as a plain list of fields.
package wire
