package fsys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/crypto/block"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// MaxFileSize is the largest file size, the largest plaintext of a block.
const MaxFileSize = block.MaxSize

// maxLinks bounds the link count of an inode so that it never wraps. It is
// ext4's limit (EXT4_LINK_MAX in Linux's fs/ext4/ext4.h).
const maxLinks = 65000

// Journal is the log that every entry is appended to before it is applied.
type Journal interface {
	// Append stores payload after every earlier entry and returns its
	// sequence number, which must be larger than every earlier one. Tags
	// are the inode numbers the entry touches. The entry need not be durable
	// before Sync. Append must not keep tags or payload, which the engine
	// reuses.
	Append(tags []uint64, payload []byte) (seq uint64, err error)
	// Sync makes every appended entry durable.
	Sync() error
}

// Loader fetches a chunk of file data that the engine evicted (see
// Engine.Evict): the bytes that Chunk.Bytes returned when the chunk was
// stored. Reads call it without the engine's lock, from several goroutines
// at once. The engine keeps the returned slice as the chunk's memory.
type Loader interface {
	LoadChunk(ino fsapi.Ino, blockID [32]byte, chunk uint64) ([]byte, error)
}

// Options configure an Engine.
type Options struct {
	// Journal receives every entry. Nil keeps entries in memory only, with
	// sequence numbers counted by the engine, for tests and tools.
	Journal Journal

	// Authorize checks the writecap of the caller's principal over the tree
	// path (relative to the tree root, "/a/b") of an inode that a mutation
	// changes or creates. A non-nil result rejects the request with EACCES.
	// Nil allows everything.
	Authorize func(c *fsapi.Caller, path string) error

	// Loader loads evicted chunks. Nil means file data stays in memory.
	Loader Loader

	// CachedChunks bounds the loaded chunks that stay in memory. When a read
	// loads one more, the oldest loaded chunk that is still clean is
	// evicted. Zero means DefaultCachedChunks.
	CachedChunks int

	// Now returns the time recorded in new entries; nil means time.Now.
	// Apply never calls it.
	Now func() time.Time

	// Rand supplies new block ids; nil means crypto/rand.
	Rand io.Reader

	// Logger receives the engine's logs; nil means slog.Default.
	Logger *slog.Logger

	// Capacity is the number of bytes StatFS reports and that writes may
	// fill. Zero means no limit (see StatFS).
	Capacity uint64

	// Changed receives the changes of every entry that an FS method
	// commits, with the context of that method's request (see
	// Entry.Changes). The engine calls it under its lock, right after the
	// entry is applied, so it must return quickly and must not call back
	// into the engine. Apply does not call it, because notifications are
	// a side effect of serving requests, not part of the state. Nil
	// reports nothing.
	//
	// TODO: a Raft follower applies the leader's entries with Apply, so
	// it must report their changes (Entry.Changes) to its own clients
	// once replication exists.
	Changed func(ctx context.Context, changes []fsapi.Change)

	// RootOwner and RootGroup own the root directory that New creates.
	// The owner of a host-mode node's tree is the user who runs the node.
	RootOwner, RootGroup uint32
}

// Engine is the in-memory tree of one storage daemon. It implements
// fsapi.FS. See the package documentation for its model and invariants.
type Engine struct {
	log       *slog.Logger
	journal   Journal
	authorize func(c *fsapi.Caller, path string) error
	loader    Loader
	now       func() time.Time
	rand      io.Reader
	capacity  uint64
	changed   func(ctx context.Context, changes []fsapi.Change)

	// mu guards everything below and the inodes. See "Locking" in doc.go.
	mu         sync.Mutex
	inodes     map[fsapi.Ino]*inode
	nextIno    fsapi.Ino
	appliedSeq uint64
	usedBytes  uint64 // stored sectors × SectorSize, over all inodes
	freed      map[fsapi.Ino]freedInode
	failed     error // set when an appended entry could not be applied

	// changedInodes holds every live inode that an entry changed after
	// MarkClean last covered it (dirtySeq > cleanSeq), so that a checkpoint
	// and DirtyBytes visit those instead of the whole tree. touch adds to
	// it, and MarkClean and free remove from it. A damaged inode stays
	// until it is freed, and dirtyInodes leaves it out.
	changedInodes map[fsapi.Ino]*inode

	// lost holds the inode numbers that damaged journal records or skipped
	// entries touched but that do not exist here, with the reason. See
	// damage.go.
	lost map[fsapi.Ino]string

	// entryBuf is the buffer that commit encodes entries into.
	entryBuf []byte
	// frozen are the files whose chunks the last Checkpoint handed out.
	frozen []*inode
	// cache remembers the chunks the Loader brought back, oldest first.
	cache chunkCache
	// loading holds the chunks that reads are loading with mu released;
	// the channel is closed when the load ends.
	loading map[chunkKey]chan struct{}
	// failedChunks are the chunks whose load failed and was logged.
	failedChunks map[chunkKey]struct{}

	// Runtime state of this daemon, never journaled.
	handles    map[fsapi.HandleID]*handle
	nextHandle fsapi.HandleID
	locks      lockTable
}

// freedInode is an inode that an entry freed and whose block the persistence
// layer has not deleted yet.
type freedInode struct {
	blockID [32]byte
	seq     uint64
}

var (
	_ fsapi.FS          = (*Engine)(nil)
	_ fsapi.AttrOpener  = (*Engine)(nil)
	_ fsapi.DirReporter = (*Engine)(nil)
)

// NewEmpty returns an engine with no inodes, not even the root. It serves
// requests only after Apply replays the journal from its first entry or
// LoadFrom installs a checkpoint.
func NewEmpty(opts Options) *Engine {
	e := &Engine{
		log:           opts.Logger,
		journal:       opts.Journal,
		authorize:     opts.Authorize,
		loader:        opts.Loader,
		now:           opts.Now,
		rand:          opts.Rand,
		capacity:      opts.Capacity,
		changed:       opts.Changed,
		cache:         newChunkCache(opts.CachedChunks),
		loading:       make(map[chunkKey]chan struct{}),
		failedChunks:  make(map[chunkKey]struct{}),
		inodes:        make(map[fsapi.Ino]*inode),
		nextIno:       fsapi.RootIno + 1,
		freed:         make(map[fsapi.Ino]freedInode),
		changedInodes: make(map[fsapi.Ino]*inode),
		lost:          make(map[fsapi.Ino]string),
		handles:       make(map[fsapi.HandleID]*handle),
		nextHandle:    1,
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	e.locks.init()
	return e
}

// New returns an engine with a fresh tree: an empty root directory with mode
// 0755, owned by opts.RootOwner and opts.RootGroup. Creating the root is itself the first journal
// entry, so replaying the journal into NewEmpty reproduces the tree.
func New(opts Options) (*Engine, error) {
	e := NewEmpty(opts)
	e.mu.Lock()
	defer e.mu.Unlock()

	blockID, err := e.newBlockID()
	if err != nil {
		return nil, err
	}
	ent := &Entry{
		Op:      OpInitRoot,
		Time:    e.timestamp(),
		Ino:     fsapi.RootIno,
		BlockID: blockID,
		Mode:    syscall.S_IFDIR | 0o755,
		Owner:   opts.RootOwner,
		Group:   opts.RootGroup,
	}
	if err := e.commit(context.Background(), ent); err != nil {
		return nil, fmt.Errorf("create the root directory: %w", err)
	}
	return e, nil
}

// Apply replays one journal entry, at startup or on a Raft follower. The
// result depends only on the prior state and the payload. An entry with a
// seq at or below the last applied one is already part of the state (for
// example through the checkpoint that LoadFrom installed) and is skipped.
// An entry that does not fit the state returns an error and changes nothing,
// unless it touches a damaged inode: then it is skipped as damage.go
// describes.
func (e *Engine) Apply(seq uint64, payload []byte) error {
	ent, err := DecodeEntry(payload)
	if err != nil {
		return fmt.Errorf("entry %d: %w", seq, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq <= e.appliedSeq {
		e.log.Debug("skipping an entry that the state already contains", "seq", seq, "applied_seq", e.appliedSeq)
		return nil
	}
	if err := e.applyEntry(seq, ent); err != nil {
		if e.touchesDamage(ent) {
			e.skipEntry(seq, ent.tags(), fmt.Sprintf("entry %d (%s) failed on damaged state: %v", seq, ent.Op, err))
			return nil
		}
		return fmt.Errorf("apply entry %d (%s, node %d): %w", seq, ent.Op, ent.Ino, err)
	}
	return nil
}

// commit appends ent to the journal and applies it, under e.mu, so that the
// journal order is the apply order, and then reports its changes with ctx,
// the context of the request that made it. The caller has checked every
// precondition, so an apply failure means a bug: the engine then stops
// serving, because its state no longer matches what a replay would build.
func (e *Engine) commit(ctx context.Context, ent *Entry) error {
	if e.failed != nil {
		return syscall.EIO
	}
	// The journal keeps no reference to the payload, so its buffer is
	// reused: a fresh megabyte per write is memory that the kernel must
	// fault in and zero.
	payload := AppendEntry(e.entryBuf[:0], ent)
	e.entryBuf = payload
	if starter, ok := e.journal.(StartAppender); ok && len(payload) >= parallelEntrySize {
		return e.commitParallel(ctx, ent, starter, payload)
	}
	seq := e.appliedSeq + 1
	if e.journal != nil {
		var err error
		seq, err = e.journal.Append(ent.tags(), payload)
		if err != nil {
			e.log.Error("journal append failed", "op", ent.Op.String(), "ino", ent.Ino, "principal", ent.Principal.String(), "error", err)
			return syscall.EIO
		}
	}
	if !e.checkSeq(seq) {
		return syscall.EIO
	}
	if err := e.applyCommitted(seq, ent); err != nil {
		return err
	}
	e.reportChanges(ctx, ent)
	return nil
}

// parallelEntrySize is the size of an encoded entry from which commit
// applies it while the journal encrypts and hashes it. On the machine of
// docs/benchmarks.md, encrypting and hashing 1 MiB takes about a
// millisecond, and copying it into memory that is new to the process takes
// as long or longer.
const parallelEntrySize = 64 << 10

// StartAppender is a Journal that assigns an entry's seq before it encodes
// the entry, as journal.Log.StartAppend does. finish encodes it; the
// caller calls finish once and changes neither tags nor payload before it
// returns.
type StartAppender interface {
	StartAppend(tags []uint64, payload []byte) (seq uint64, finish func() error, err error)
}

// commitParallel is commit for a large entry: it applies the entry while
// another goroutine lets the journal encrypt and hash it, and returns once
// both are done. It holds e.mu throughout, so no other request reads the
// change before the journal has the entry. If the journal fails after the entry was applied, the engine
// holds a change that the journal lacks, so it stops.
func (e *Engine) commitParallel(ctx context.Context, ent *Entry, starter StartAppender, payload []byte) error {
	seq, finish, err := starter.StartAppend(ent.tags(), payload)
	if err != nil {
		e.log.Error("journal append failed", "op", ent.Op.String(), "ino", ent.Ino, "principal", ent.Principal.String(), "error", err)
		return syscall.EIO
	}
	encoded := make(chan error, 1)
	go func() { encoded <- finish() }()
	if !e.checkSeq(seq) {
		<-encoded
		return syscall.EIO
	}
	applyErr := e.applyCommitted(seq, ent)
	if err := <-encoded; err != nil {
		e.failed = errors.Join(e.failed, fmt.Errorf("journal append of seq %d failed after the entry was applied: %w", seq, err))
		e.log.Error("journal append failed after the entry was applied; engine stopped", "seq", seq, "op", ent.Op.String(), "ino", ent.Ino, "error", err)
		return syscall.EIO
	}
	if applyErr != nil {
		return applyErr
	}
	e.reportChanges(ctx, ent)
	return nil
}

// checkSeq reports whether seq follows every applied entry, and stops the
// engine when it does not.
func (e *Engine) checkSeq(seq uint64) bool {
	if seq > e.appliedSeq {
		return true
	}
	e.failed = fmt.Errorf("journal returned seq %d after %d", seq, e.appliedSeq)
	e.log.Error("journal sequence numbers went backwards; engine stopped", "seq", seq, "applied_seq", e.appliedSeq)
	return false
}

// applyCommitted applies the entry of seq, which the journal has, and stops
// the engine when that fails.
func (e *Engine) applyCommitted(seq uint64, ent *Entry) error {
	if err := e.applyEntry(seq, ent); err != nil {
		e.failed = err
		e.log.Error("journaled entry failed to apply; engine stopped", "seq", seq, "op", ent.Op.String(), "ino", ent.Ino, "error", err)
		return syscall.EIO
	}
	e.log.Debug("entry committed", "seq", seq, "op", ent.Op.String(), "ino", ent.Ino, "principal", ent.Principal.String())
	return nil
}

// reportChanges passes the changes of a committed entry to Options.Changed.
func (e *Engine) reportChanges(ctx context.Context, ent *Entry) {
	if e.changed != nil {
		if changes := ent.Changes(); len(changes) > 0 {
			e.changed(ctx, changes)
		}
	}
}

// newEntry returns an entry of op made now by c.
func (e *Engine) newEntry(c *fsapi.Caller, op Op) *Entry {
	ent := &Entry{Op: op, Time: e.timestamp()}
	if c != nil {
		ent.Principal = c.Principal
		ent.UID = c.UID
		ent.GID = c.GID
	}
	return ent
}

func (e *Engine) timestamp() int64 { return e.now().UnixNano() }

func (e *Engine) newBlockID() ([32]byte, error) {
	var id [32]byte
	if _, err := io.ReadFull(e.rand, id[:]); err != nil {
		e.log.Error("reading random bytes for a block id failed", "error", err)
		return id, syscall.EIO
	}
	return id, nil
}

// sync makes the journal durable. The caller must not hold e.mu, so that
// other requests go on while the disk flushes.
func (e *Engine) sync() error {
	if e.journal == nil {
		return nil
	}
	if err := e.journal.Sync(); err != nil {
		e.log.Error("journal sync failed", "error", err)
		return syscall.EIO
	}
	return nil
}

// checkAuthorized calls Options.Authorize for each path. e.mu is held.
func (e *Engine) checkAuthorized(c *fsapi.Caller, paths ...string) error {
	if e.authorize == nil {
		return nil
	}
	for _, path := range paths {
		if err := e.authorize(c, path); err != nil {
			e.log.Info("writecap check rejected a request", "principal", c.Principal.String(), "path", path, "error", err)
			return syscall.EACCES
		}
	}
	return nil
}

// authorizeInode checks the caller's writecap over the path of n.
func (e *Engine) authorizeInode(c *fsapi.Caller, n *inode) error {
	if e.authorize == nil {
		return nil
	}
	path, err := e.pathOf(n)
	if err != nil {
		// An unlinked but open file has no path; its last path was checked
		// when it was opened, and nothing else can reach it.
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return err
	}
	return e.checkAuthorized(c, path)
}

// authorizeChild checks the caller's writecap over the path dir/name.
func (e *Engine) authorizeChild(c *fsapi.Caller, dir *inode, name string) error {
	if e.authorize == nil {
		return nil
	}
	path, err := e.pathOf(dir)
	if err != nil {
		return err
	}
	return e.checkAuthorized(c, joinPath(path, name))
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// node returns the live inode ino, or ENOENT, or EIO when it is damaged.
// e.mu is held.
func (e *Engine) node(ino fsapi.Ino) (*inode, error) {
	if e.failed != nil {
		return nil, syscall.EIO
	}
	n := e.inodes[ino]
	if n == nil {
		return nil, syscall.ENOENT
	}
	if n.damaged != "" {
		return nil, syscall.EIO
	}
	return n, nil
}

// dirNode returns the directory ino, or ENOTDIR when ino is something else.
func (e *Engine) dirNode(ino fsapi.Ino) (*inode, error) {
	n, err := e.node(ino)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, syscall.ENOTDIR
	}
	return n, nil
}

// loadRange brings every evicted chunk of the regular file n that
// [off, off+length) touches back into memory, under e.mu. It evicts no
// other chunk, so everything in the range stays loaded for the operation
// that needs it. The next read evicts what the cache holds too many of. A
// load that fails leaves n as it was and returns EIO.
func (e *Engine) loadRange(n *inode, off, length uint64) error {
	if n.data == nil {
		return nil
	}
	for _, c := range n.data.evictedIn(off, length) {
		var data []byte
		err := errors.New("no loader is configured")
		if e.loader != nil {
			data, err = e.loader.LoadChunk(n.attr.Ino, n.blockID, c)
		}
		if err := e.installChunk(n, c, data, err, false); err != nil {
			return err
		}
	}
	return nil
}

// installChunk puts the result of loading chunk c of n into memory and
// records it in the cache, evicting the oldest chunks beyond the cache's
// bound when evict is set. A failed load returns EIO and is logged once
// per chunk: the chunk stays evicted, and the rest of the file is served.
// e.mu is held.
func (e *Engine) installChunk(n *inode, c uint64, data []byte, loadErr error, evict bool) error {
	if loadErr == nil {
		loadErr = n.data.install(c, data)
	}
	if loadErr != nil {
		e.chunkFailed(n, c, loadErr)
		return syscall.EIO
	}
	// A chunk that loads again after a failure (a passing I/O error) has its
	// next failure logged too.
	delete(e.failedChunks, chunkKey{n.attr.Ino, c})
	e.cache.add(n.attr.Ino, c)
	if !evict {
		return nil
	}
	for _, old := range e.cache.victims() {
		if m := e.inodes[old.ino]; m != nil && m.data != nil && !m.small() {
			m.data.evictChunk(old.chunk)
		}
	}
	e.log.Debug("loaded evicted chunk", "ino", n.attr.Ino, "block", blockHex(n.blockID), "chunk", c)
	return nil
}

// chunkFailed logs the first failure to load chunk c of n. The error names
// the chunk's block.
func (e *Engine) chunkFailed(n *inode, c uint64, err error) {
	key := chunkKey{n.attr.Ino, c}
	if _, logged := e.failedChunks[key]; logged {
		return
	}
	e.failedChunks[key] = struct{}{}
	path, perr := e.pathOf(n)
	if perr != nil {
		path = "(unlinked)"
	}
	e.log.Error("file data damaged; reads of it return EIO", "ino", n.attr.Ino, "block", blockHex(n.blockID), "path", path, "chunk", c, "error", err)
}

func blockHex(id [32]byte) string { return fmt.Sprintf("%x", id[:]) }

// principalOf returns the principal of c for logs, or the zero principal.
func principalOf(c *fsapi.Caller) principal.Principal {
	if c == nil {
		return principal.Principal{}
	}
	return c.Principal
}
