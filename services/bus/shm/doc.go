// Package shm shares memory between two processes through a sealed memfd.
//
// One side creates the memory with Create: an anonymous memfd
// (memfd_create(2) with MFD_CLOEXEC and MFD_ALLOW_SEALING) of a fixed size,
// sealed with F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL, and mapped
// MAP_SHARED for reading and writing. It then passes the descriptor to the
// other side, typically with SCM_RIGHTS over a Unix socket.
//
// The receiving side calls Open with the descriptor and the size it
// expects. Open checks the seals with F_GET_SEALS and the size with
// fstat(2) before it maps anything, and rejects the descriptor when a seal
// is missing or the size differs. The seals make a shared mapping safe
// against the peer. Without F_SEAL_SHRINK the peer could truncate the file,
// and every access to the lost pages would kill the receiver with SIGBUS.
// Without F_SEAL_GROW the file could grow past the size that was checked. F_SEAL_SEAL forbids adding seals later, so the set of seals
// that Open checked stays the same for the life of the file.
//
// A Region owns its mapping and its descriptor. Close unmaps the memory
// and closes the descriptor. Every slice obtained from Bytes is invalid
// after Close, and touching it then faults.
package shm
