package storaged

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/block"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/tpm"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/storage/blockstore"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/fsys"
	"github.com/blocktree/blocktree/services/storage/journal"
	"github.com/blocktree/blocktree/services/storage/proto"
)

// ErrRollback is returned by Open when the checkpoint is older than the
// TPM's counter allows: the state directory was restored from an old copy.
var ErrRollback = errors.New("the checkpoint is older than the TPM counter allows: the disk was rolled back to an earlier copy")

// DefaultCheckpointInterval is the checkpoint interval of a daemon whose
// Options leave it zero.
const DefaultCheckpointInterval = 30 * time.Second

// Options configures a Daemon.
type Options struct {
	Node   *state.Node
	Logger *slog.Logger

	// CheckpointInterval is the time after the last checkpoint (or the
	// start) from which changes are checkpointed once the tree has been
	// quiet for two seconds. Ten intervals after the last checkpoint, or
	// when the journal has grown by a quarter of the machine's memory (at
	// most 2 GiB), changes are checkpointed even while requests go on.
	// Half of that growth is checkpointed once the tree is quiet. Zero
	// means DefaultCheckpointInterval. A negative interval disables the
	// background checkpoints (Close still writes one).
	CheckpointInterval time.Duration

	// Capacity is the number of bytes the tree may hold. Zero means the
	// free space of the file system under the state directory at start.
	Capacity uint64

	// Check opens the tree for fsck: no background checkpoints, no
	// checkpoint on Close, no removal of unused block versions and no
	// reclaim entries for orphaned inodes. Cutting a torn journal tail is
	// still done, since that is how a crash is recovered.
	Check bool

	// RootOwner and RootGroup own the root directory of a tree that Open
	// creates. An existing tree keeps its owner.
	RootOwner, RootGroup uint32
}

// Damage is an inode that failed its checks when the daemon loaded it.
type Damage struct {
	Ino     fsapi.Ino
	BlockID [32]byte
	Path    string // empty when no path is known
	Err     error
}

// Daemon is a running storage daemon.
type Daemon struct {
	node    *state.Node
	log     *slog.Logger
	engine  *fsys.Engine
	journal *journal.Log
	store   *blockstore.Store
	counter *tpm.Counter
	root    string // tree path of the root directory: "/" + root principal

	rootOwner, rootGroup uint32 // of a tree that Open creates

	// notifier sends the engine's changes to the clients that subscribed.
	notifier *proto.Notifier

	// checkpointMu serializes checkpoints; versions is the block version of
	// every inode in the checkpoint in force, and kept the last good version
	// of each damaged inode, which is kept as evidence and never served.
	// chunks holds the chunk tables of the regular files of both.
	checkpointMu sync.Mutex
	versions     map[fsapi.Ino]blockstore.Ref
	kept         map[fsapi.Ino]blockstore.Ref
	chunks       map[fsapi.Ino]chunkTable

	// refsMu guards replacing versions against the Loader's reads. The
	// Loader runs under the engine's lock and a checkpoint takes that lock
	// while it holds checkpointMu, so the Loader must not wait for
	// checkpointMu.
	refsMu sync.Mutex

	damaged []Damage
	check   bool

	// loadedNext is the seq after the last journal entry that the
	// checkpoint found at Open covers, so that the checkpoint loop saves
	// the entries that Open replayed even if no request follows.
	loadedNext uint64

	// recordedDamage is the number of damaged inodes the checkpoint in
	// force records.
	recordedDamage int
	garbage        []blockstore.Ref // unused block versions found in check mode

	// requests counts the requests that Serve received, so that the
	// checkpoint loop can decide whether the tree is quiet.
	requests atomic.Uint64

	stop chan struct{}
	done chan struct{}
}

// Open starts the storage daemon on an open node state.
func Open(opts Options) (*Daemon, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	n := opts.Node
	d := &Daemon{
		node:      n,
		log:       logger.With("node", n.Credential.Principal()),
		root:      capability.RootPath(n.Tree.Root),
		versions:  map[fsapi.Ino]blockstore.Ref{},
		kept:      map[fsapi.Ino]blockstore.Ref{},
		chunks:    map[fsapi.Ino]chunkTable{},
		check:     opts.Check,
		rootOwner: opts.RootOwner,
		rootGroup: opts.RootGroup,
		notifier:  proto.NewNotifier(0),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	var err error
	if d.store, err = blockstore.Open(n.BlocksDir()); err != nil {
		return nil, err
	}
	if d.counter, err = n.TPM.OpenCounter(tpm.DefaultCounterIndex); err != nil {
		return nil, fmt.Errorf("open rollback counter: %w", err)
	}

	cp, err := d.readCheckpoint()
	if err != nil {
		return nil, err
	}
	d.journal, err = journal.Open(journal.Options{
		Dir:    n.JournalDir(),
		Key:    n.Tree.JournalKey,
		Signer: n.Credential,
		Logger: logger, // the journal adds the node itself
	})
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := d.load(cp, opts.Capacity); err != nil {
		d.journal.Close()
		return nil, err
	}

	interval := opts.CheckpointInterval
	if interval == 0 {
		interval = DefaultCheckpointInterval
	}
	go d.checkpointLoop(interval)
	d.log.Info("storage daemon started", "inodes", len(d.versions), "damaged", len(d.damaged))
	return d, nil
}

// FS returns the file system the daemon serves.
func (d *Daemon) FS() fsapi.FS { return d.engine }

// Engine returns the engine, for tools such as fsck.
func (d *Daemon) Engine() *fsys.Engine { return d.engine }

// Damaged returns the inodes that failed their checks at load.
func (d *Daemon) Damaged() []Damage { return slices.Clone(d.damaged) }

// Serve serves the file-system protocol on the bus endpoint l until ctx
// ends. Peers running
// as root or as the daemon's own user may relay other callers' credentials
// (the FUSE server does); every other peer acts as itself. Every peer may
// subscribe to change notifications, and then learns of the changes that
// the other connections, of all of Serve's endpoints, make.
func (d *Daemon) Serve(ctx context.Context, l *bus.Listener) error {
	self := uint32(os.Getuid())
	node := d.node.Credential.Principal()
	return proto.Serve(ctx, l, d.engine, proto.ServerOptions{
		TrustCallers: func(cred *unix.Ucred) bool { return cred.Uid == 0 || cred.Uid == self },
		Principal:    func(*unix.Ucred) principal.Principal { return node },
		Notifier:     d.notifier,
		Activity:     func() { d.requests.Add(1) },
		Logger:       d.log,
	})
}

// readCheckpoint reads and checks the checkpoint file, or returns nil when
// there is none yet.
func (d *Daemon) readCheckpoint() (*Checkpoint, error) {
	data, err := os.ReadFile(d.node.CheckpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	cp, err := openCheckpoint(data, d.node.Tree.JournalKey, d.node.Tree.Root, d.node.Credential.Signing.Public())
	if errors.Is(err, ErrOldFormat) {
		return nil, fmt.Errorf("checkpoint %s: %w", d.node.CheckpointPath(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w (bt fsck --state shows the damage)", d.node.CheckpointPath(), err)
	}
	current, err := d.counterValue()
	if err != nil {
		return nil, err
	}
	if cp.Counter+1 < current {
		return nil, fmt.Errorf("checkpoint counter %d, TPM counter %d: %w", cp.Counter, current, ErrRollback)
	}
	if cp.Counter > current {
		return nil, fmt.Errorf("checkpoint counter %d is ahead of the TPM counter %d: this state directory was written with another TPM", cp.Counter, current)
	}
	return cp, nil
}

// counterValue returns the rollback counter as checkpoints record it: the
// TPM's value plus the node's offset (non-zero after moving to a new TPM).
func (d *Daemon) counterValue() (uint64, error) {
	value, err := d.counter.Read()
	if err != nil {
		return 0, fmt.Errorf("read rollback counter: %w", err)
	}
	return value + d.node.CounterOffset(), nil
}

// Rebind makes a recovered node accept its newest checkpoint under a new
// TPM, whose rollback counter starts behind the value the checkpoint
// recorded. The owner decided to trust this state directory by using the
// recovery key, so the counter offset is raised to match the checkpoint.
func Rebind(n *state.Node) error {
	data, err := os.ReadFile(n.CheckpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	cp, err := openCheckpoint(data, n.Tree.JournalKey, n.Tree.Root, n.Credential.Signing.Public())
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", n.CheckpointPath(), err)
	}
	counter, err := n.TPM.OpenCounter(tpm.DefaultCounterIndex)
	if err != nil {
		return fmt.Errorf("open rollback counter: %w", err)
	}
	current, err := counter.Read()
	if err != nil {
		return fmt.Errorf("read rollback counter: %w", err)
	}
	if cp.Counter <= current+n.CounterOffset() {
		return nil
	}
	return n.SetCounterOffset(cp.Counter - current)
}

// load builds the engine from the checkpoint and the journal.
func (d *Daemon) load(cp *Checkpoint, capacity uint64) error {
	if capacity == 0 {
		capacity = freeBytes(d.node.Dir)
	}
	opts := fsys.Options{
		Journal:   d.journal,
		Authorize: d.authorize,
		Loader:    loader{d},
		Logger:    d.log,
		Capacity:  capacity,
		Changed:   d.notifier.Publish,
		RootOwner: d.rootOwner,
		RootGroup: d.rootGroup,
	}

	d.loadedNext = 1
	if cp == nil && d.journal.NextSeq() == 1 {
		engine, err := fsys.New(opts)
		if err != nil {
			return fmt.Errorf("create tree: %w", err)
		}
		d.engine = engine
		return nil
	}

	d.engine = fsys.NewEmpty(opts)
	from := uint64(1)
	if cp != nil {
		if err := d.loadCheckpoint(cp); err != nil {
			return err
		}
		from = cp.Seq + 1
	}
	d.loadedNext = from
	if err := d.replay(from); err != nil {
		return err
	}
	if err := d.removeGarbage(); err != nil {
		return err
	}
	if d.check {
		return nil
	}
	return d.engine.ReclaimOrphans()
}

// loadCheckpoint opens every block the checkpoint names and installs the
// inodes.
func (d *Daemon) loadCheckpoint(cp *Checkpoint) error {
	header, err := fsys.DecodeHeader(cp.Engine)
	if err != nil {
		return fmt.Errorf("checkpoint engine header: %w", err)
	}
	states := make([]*fsys.InodeState, 0, len(cp.Inodes))
	var damaged []fsys.DamagedInode
	for _, dmg := range cp.Damaged {
		if dmg.Version > 0 {
			d.kept[dmg.Ino] = blockstore.Ref{ID: dmg.BlockID, Version: dmg.Version}
		}
		err := fmt.Errorf("damaged before the checkpoint at entry %d: %s", cp.Seq, dmg.Reason)
		damaged = append(damaged, fsys.DamagedInode{Ino: dmg.Ino, BlockID: dmg.BlockID, Reason: err.Error()})
		d.damaged = append(d.damaged, Damage{Ino: dmg.Ino, BlockID: dmg.BlockID, Err: err})
	}
	for _, in := range cp.Inodes {
		ref := blockstore.Ref{ID: in.BlockID, Version: in.Version}
		d.versions[in.Ino] = ref
		st, chunks, err := d.openInode(ref)
		if err == nil && len(chunks) > 0 {
			d.chunks[in.Ino] = chunks
		}
		if err != nil {
			damaged = append(damaged, fsys.DamagedInode{Ino: in.Ino, BlockID: in.BlockID, Reason: err.Error()})
			d.damaged = append(d.damaged, Damage{Ino: in.Ino, BlockID: in.BlockID, Err: err})
			continue
		}
		if st.Ino != in.Ino || st.BlockID != in.BlockID {
			err := fmt.Errorf("block contains inode %d, expected inode %d from the checkpoint", st.Ino, in.Ino)
			damaged = append(damaged, fsys.DamagedInode{Ino: in.Ino, BlockID: in.BlockID, Reason: err.Error()})
			d.damaged = append(d.damaged, Damage{Ino: in.Ino, BlockID: in.BlockID, Err: err})
			continue
		}
		states = append(states, st)
	}
	d.recordedDamage = len(cp.Damaged)
	if err := d.engine.LoadFrom(header, states, damaged...); err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	for i := range d.damaged {
		if path, err := d.engine.PathOf(d.damaged[i].Ino); err == nil {
			d.damaged[i].Path = path
		}
		d.log.Error("damaged block", "block", fmt.Sprintf("%x", d.damaged[i].BlockID), "path", d.damaged[i].Path, "error", d.damaged[i].Err)
	}
	return nil
}

// openBlock reads one block version and checks it: signature, chain,
// Merkle tree, and that it is exactly the version the checkpoint names.
func (d *Daemon) openBlock(ref blockstore.Ref) (*block.Reader, error) {
	data, err := d.store.Get(ref)
	if err != nil {
		return nil, err
	}
	return d.openData(ref, data)
}

// openData checks data, the contents of block version ref, as openBlock
// does.
func (d *Daemon) openData(ref blockstore.Ref, data []byte) (*block.Reader, error) {
	// data is a buffer of the daemon's own, which nothing else changes.
	r, err := block.Open(data, d.node.Credential, block.Expect{Root: d.node.Tree.Root, ID: ref.ID, MinVersion: ref.Version, Private: true})
	if errors.Is(err, block.ErrRollback) {
		return nil, fmt.Errorf("rollback: an older version of the block was put back: %w", err)
	}
	if err != nil {
		return nil, err
	}
	if r.Version() != ref.Version {
		return nil, fmt.Errorf("block %s contains version %d", ref, r.Version())
	}
	return r, nil
}

// openInode reads and checks one inode block and decodes the inode in it
// and its chunk table. The chunk blocks are loaded when first used, and
// inline data comes with the state.
func (d *Daemon) openInode(ref blockstore.Ref) (*fsys.InodeState, chunkTable, error) {
	r, err := d.openBlock(ref)
	if err != nil {
		return nil, nil, err
	}
	body, err := r.Bytes()
	if err != nil {
		return nil, nil, err
	}
	b, err := decodeInodeBlock(body)
	if err != nil {
		return nil, nil, fmt.Errorf("block %s: %w", ref, err)
	}
	st, err := fsys.DecodeInode(r.Metadata(), b.inode)
	if err != nil {
		return nil, nil, fmt.Errorf("block %s: %w", ref, err)
	}
	if err := checkChunkTable(st, b); err != nil {
		return nil, nil, fmt.Errorf("block %s: %w", ref, err)
	}
	if len(b.inline) > 0 {
		st.Chunks = []fsys.Chunk{{Index: 0, Data: b.inline}}
		if err := fsys.ValidateState(st); err != nil {
			return nil, nil, fmt.Errorf("block %s: inline data: %w", ref, err)
		}
	}
	return st, b.chunks, nil
}

// replay applies the journal from seq on. Damaged records mark their
// inodes damaged.
func (d *Daemon) replay(from uint64) error {
	count := 0
	err := d.journal.Replay(from, func(r journal.Record) error {
		if r.Damaged {
			for _, tag := range r.Tags {
				ino := fsapi.Ino(tag)
				d.engine.MarkDamaged(ino, fmt.Sprintf("journal record %d: %v", r.Seq, r.Err))
				blockID, _ := d.engine.BlockID(ino)
				path, _ := d.engine.PathOf(ino)
				d.damaged = append(d.damaged, Damage{Ino: ino, BlockID: blockID, Path: path, Err: r.Err})
				d.log.Error("damaged journal record", "seq", r.Seq, "block", fmt.Sprintf("%x", blockID), "path", path, "error", r.Err)
			}
			return d.engine.SkipDamaged(r.Seq, r.Tags)
		}
		count++
		return d.engine.Apply(r.Seq, r.Payload)
	})
	if err != nil {
		return fmt.Errorf("replay journal from entry %d: %w", from, err)
	}
	d.log.Info("journal replayed", "from", from, "entries", count)
	return nil
}

// removeGarbage deletes block versions that no checkpoint names: the new
// versions of a checkpoint that a crash interrupted, and old versions that a
// crash kept from being deleted.
func (d *Daemon) removeGarbage() error {
	refs, err := d.store.List()
	if err != nil {
		return err
	}
	live := d.liveRefs()
	// Every block of a damaged file is evidence, also the chunk blocks that
	// a damaged inode block no longer lists.
	evidence := make(map[[16]byte]bool, len(d.damaged))
	for _, dmg := range d.damaged {
		evidence[fileOf(dmg.BlockID)] = true
	}
	removed := 0
	for _, ref := range refs {
		if _, ok := live[ref]; ok || evidence[fileOf(ref.ID)] {
			continue
		}
		if d.check {
			d.garbage = append(d.garbage, ref)
			continue
		}
		if err := d.store.Delete(ref); err != nil {
			return err
		}
		removed++
	}
	if removed > 0 {
		d.log.Info("removed unused block versions", "count", removed)
	}
	return d.store.Sync()
}

// authorize checks that the caller's principal may write path. In host mode
// the only principal is the node, which is the tree's root.
func (d *Daemon) authorize(c *fsapi.Caller, path string) error {
	if c.Principal == d.node.Tree.Root {
		return nil
	}
	// TODO: look up the writecap chains that principals present over the
	// message bus; until then only the root principal writes.
	return fmt.Errorf("principal %s has no writecap for %s", c.Principal, path)
}

// loader brings evicted chunks back from the block store.
type loader struct{ d *Daemon }

func (l loader) LoadChunk(ino fsapi.Ino, blockID [32]byte, chunk uint64) ([]byte, error) {
	l.d.refsMu.Lock()
	inodeRef, ok := l.d.versions[ino]
	version := l.d.chunks[ino][chunk]
	l.d.refsMu.Unlock()
	if !ok || inodeRef.ID != blockID || version == 0 {
		return nil, fmt.Errorf("inode %d has no stored block for chunk %d", ino, chunk)
	}
	// The chunk's plaintext is copied out of the Reader, so the encoded
	// block's buffer is free again once Bytes returns.
	buf := chunkBuffers.Get()
	defer chunkBuffers.Put(buf)
	ref := chunkRef(blockID, chunk, version)
	data, err := l.d.store.GetDirect(ref, buf)
	if err != nil {
		return nil, err
	}
	r, err := l.d.openData(ref, data)
	if err != nil {
		return nil, err
	}
	return r.Bytes()
}

// chunkBuffers holds the buffers that chunk blocks are read into. A chunk
// block is a little larger than its 1 MiB of data, and a buffer grows when
// a block needs more.
var chunkBuffers = blockstore.NewBufferPool(fsys.ChunkSize + 64<<10)

func freeBytes(dir string) uint64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}
