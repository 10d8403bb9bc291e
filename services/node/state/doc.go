// Package state opens a node's state directory: the TPM, the node's
// credential, its tree and the directory lock.
//
// A node keeps everything it owns under one directory given by the user
// (for example `bt node --state DIR`). The first start creates DIR/node;
// every later start opens it. The layout is:
//
//	DIR/node/lock        flock(2) target: one node process per directory
//	DIR/node/tpm-device  which TPM sealed the keys: "software" or a device path
//	DIR/node/tpm/        swtpm state, when the TPM is the software one
//	DIR/node/keys/       the node credential (see services/crypto/keystore)
//	DIR/node/tree        the tree this node serves, signed by the node
//	DIR/node/journal/    block event log (services/storage/journal)
//	DIR/node/blocks/     block files (services/storage/blockstore)
//	DIR/node/checkpoint  latest checkpoint of the file system
//
// Creation is atomic: it builds the whole layout in a temporary sibling of
// DIR/node and renames it into place, so a failed first start leaves DIR as
// it was. A later Open that fails leaves DIR byte-identical: unsealing and
// decoding happen before any file is changed. The one writer is swtpm, which
// rewrites its state file DIR/node/tpm/tpm2-00.permall when it starts and
// stops. So Open copies the regular files in DIR/node/tpm before it starts
// swtpm. When Open fails, it stops swtpm and puts them back with their modes
// and times. Socket files that a killed swtpm left there are removed by the
// next start and not put back. A successful Open keeps swtpm's writes, and
// Recover never puts the files back.
//
// The TPM is chosen once, at creation: the kernel's resource manager
// (/dev/tpmrm0) when it can be opened, otherwise a software TPM (swtpm) with
// its state under DIR/node/tpm, with a warning that the keys are then
// protected only by the host's file permissions. Later starts use the
// recorded choice and fail, rather than silently switch, when it is not
// usable.
package state
