// Package swtpm starts and controls a software TPM 2.0 (the swtpm program)
// for tests and for host mode, where a node has no usable hardware TPM.
//
// A Process is one running `swtpm socket --tpm2` child. It serves TPM
// commands on a Unix socket (SocketPath) and control commands on a second
// Unix socket next to it. The process is started with the flags
// not-need-init and startup-clear, so swtpm powers the TPM on and sends
// TPM2_Startup(CLEAR) itself: a client can send commands as soon as Start
// returns and must not send TPM2_Startup.
//
// The state directory is the TPM's non-volatile memory. It outlives the
// process, so Start on the same directory after Stop or Kill boots the same
// TPM again with its seeds, persistent objects and counters, and with fresh
// PCRs. The two ways to end a process model the two ways a machine loses
// power:
//
//   - Stop is a clean power-off. It sends CMD_SHUTDOWN on the control socket
//     and falls back to SIGTERM. swtpm does not send TPM2_Shutdown itself, so
//     the shutdown is orderly for the TPM only if the client sent
//     TPM2_Shutdown before Stop.
//   - Kill is a power cut. SIGKILL ends swtpm without saving volatile state,
//     and the next Start counts it as an unorderly shutdown.
//
// swtpm writes the state directory as soon as it powers the TPM on.
// SnapshotState and Restore copy the directory's regular files and put them
// back, for a caller that must undo a run whose results it discards. Both
// fail while a swtpm holds the directory's lock file.
//
// Invariants:
//   - Socket paths are at most 107 bytes, the limit of sun_path on Linux
//     without its terminating NUL. When the requested socket directory would
//     exceed it, the sockets go to a short private temporary directory that
//     is removed when the process ends.
//   - Start never takes over a socket that another live process serves: a
//     socket file that accepts a connection is an error, and only a socket
//     file that refuses connections (left by a killed swtpm) is removed.
//   - After Stop or Kill returns, the process has exited and its socket files
//     are gone. The state directory is never removed by this package.
//   - The child gets SIGKILL when the thread that started it exits
//     (Pdeathsig). Every swtpm is started from one thread that lives as
//     long as the process, so swtpm dies with the process and not before:
//     a crashed test binary leaves no swtpm behind.
package swtpm
