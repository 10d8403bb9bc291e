package storaged

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/crypto/block"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/storage/blockstore"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/fsys"
)

// evictSize is the file size above which a checkpoint drops a clean file's
// data from memory. The Loader reads it back from its block when needed.
const evictSize = 64 << 10

// Checkpoint writes every inode changed since the last checkpoint as a new
// block version, and every changed chunk of a regular file too, and records
// them in a new checkpoint file. The package documentation explains the
// order of the steps and why it is crash-safe.
func (d *Daemon) Checkpoint() error {
	d.checkpointMu.Lock()
	defer d.checkpointMu.Unlock()

	start := time.Now()
	snapshot := d.engine.Checkpoint()
	defer d.engine.EndCheckpoint()
	// Checked after the snapshot: an engine that stopped before it may
	// hold an entry that the journal lacks.
	if err := d.engine.Stopped(); err != nil {
		return fmt.Errorf("checkpoint not written because the storage engine stopped; restart the node to replay the journal: %w", err)
	}
	// The checkpoint names the snapshot's entries as applied, so they must
	// be durable in the journal first. Otherwise a crash right after it
	// would leave a journal that ends before the checkpoint, whose next seq
	// the engine then rejects as going backwards. The snapshot was taken
	// with every entry up to its seq appended.
	if err := d.journal.Sync(); err != nil {
		return fmt.Errorf("checkpoint at entry %d: sync the journal: %w", snapshot.Header.AppliedSeq, err)
	}
	// The engine's lock is held while it collects the changed inodes, so
	// every request waits that long.
	snapshotTook := time.Since(start)
	damaged := d.engine.Damaged()
	if len(snapshot.Inodes) == 0 && len(snapshot.Freed) == 0 && !d.damageChanged(damaged) {
		return nil
	}
	seq := snapshot.Header.AppliedSeq

	plan, err := d.planInodes(snapshot.Inodes)
	if err != nil {
		return fmt.Errorf("checkpoint at entry %d: %w", seq, err)
	}
	written, err := d.writeBlocks(plan)
	if err == nil {
		err = d.store.Sync()
	}
	if err != nil {
		d.discard(written)
		return fmt.Errorf("checkpoint at entry %d: %w", seq, err)
	}

	versions := maps.Clone(d.versions)
	kept := maps.Clone(d.kept)
	var obsolete []blockstore.Ref
	for _, f := range snapshot.Freed {
		for _, table := range []map[fsapi.Ino]blockstore.Ref{versions, kept} {
			if ref, ok := table[f.Ino]; ok {
				obsolete = append(obsolete, fileRefs(ref, d.chunks[f.Ino])...)
				delete(table, f.Ino)
			}
		}
	}
	for _, p := range plan {
		if old, ok := versions[p.st.Ino]; ok {
			obsolete = append(obsolete, old)
		}
		for index, version := range d.chunks[p.st.Ino] {
			if p.chunks[index] != version {
				obsolete = append(obsolete, chunkRef(p.ref.ID, index, version))
			}
		}
		versions[p.st.Ino] = p.ref
	}

	// A damaged inode leaves the table of served blocks, so that its last
	// good version is never mistaken for its current contents.
	var damagedVersions []DamagedVersion
	for _, dmg := range damaged {
		if ref, ok := versions[dmg.Ino]; ok {
			kept[dmg.Ino] = ref
			delete(versions, dmg.Ino)
		}
		reason := dmg.Reason
		if len(reason) > maxReasonLen {
			reason = reason[:maxReasonLen]
		}
		damagedVersions = append(damagedVersions, DamagedVersion{Ino: dmg.Ino, BlockID: dmg.BlockID, Version: kept[dmg.Ino].Version, Reason: reason})
	}
	counter, err := d.counter.Increment()
	counter += d.node.CounterOffset()
	if err != nil {
		d.discard(written)
		return fmt.Errorf("checkpoint at entry %d: increment rollback counter: %w", seq, err)
	}
	cp := &Checkpoint{Seq: seq, Counter: counter, Engine: fsys.EncodeHeader(snapshot.Header), Damaged: damagedVersions}
	for _, ino := range slices.Sorted(maps.Keys(versions)) {
		ref := versions[ino]
		cp.Inodes = append(cp.Inodes, InodeVersion{Ino: ino, BlockID: ref.ID, Version: ref.Version})
	}
	sealed, err := sealCheckpoint(cp, d.node.Tree.JournalKey, d.node.Tree.Root, d.node.Credential)
	if err != nil {
		d.discard(written)
		return err
	}
	renamed, err := writeCheckpoint(d.node.CheckpointPath(), sealed)
	if err != nil && !renamed {
		d.discard(written)
		return err
	}
	// Once renamed, the new checkpoint may be the one that the next start
	// loads, so the versions it names stay and are never written again.
	// If the directory sync after the rename failed, the old checkpoint may
	// come back instead: what it names and the journal after it stay too.
	inForceErr := err

	// The new checkpoint is in force: what it replaced may go.
	d.refsMu.Lock()
	d.versions = versions
	d.kept = kept
	for _, f := range snapshot.Freed {
		delete(d.chunks, f.Ino)
	}
	for _, p := range plan {
		if len(p.chunks) > 0 {
			d.chunks[p.st.Ino] = p.chunks
		} else {
			delete(d.chunks, p.st.Ino)
		}
	}
	d.refsMu.Unlock()
	d.recordedDamage = len(damaged)
	for _, st := range snapshot.Inodes {
		d.engine.MarkClean(st.Ino, seq)
	}
	for _, f := range snapshot.Freed {
		d.engine.MarkClean(f.Ino, seq)
	}
	if inForceErr != nil {
		return fmt.Errorf("checkpoint at entry %d: %w: the block versions it replaced and the journal stay until a later checkpoint", seq, inForceErr)
	}
	var errs []error
	for _, ref := range obsolete {
		errs = append(errs, d.store.Delete(ref))
	}
	errs = append(errs, d.store.Sync(), d.journal.TruncateBefore(seq+1))
	for _, st := range snapshot.Inodes {
		if st.Attr.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Attr.Size > evictSize {
			d.engine.Evict(st.Ino)
		}
	}
	d.log.Info("checkpoint written", "seq", seq, "inodes", len(plan), "blocks", len(written), "removed", len(obsolete), "freed", len(snapshot.Freed), "counter", counter, "duration", time.Since(start).Round(time.Millisecond), "snapshot", snapshotTook.Round(time.Millisecond))
	if err := errors.Join(errs...); err != nil {
		d.log.Warn("checkpoint cleanup failed; the next start removes what is left", "seq", seq, "error", err)
	}
	return nil
}

// damageChanged reports whether the damaged inodes differ from those the
// checkpoint in force records, which alone is reason for a new checkpoint.
func (d *Daemon) damageChanged(damaged []fsys.DamagedInode) bool {
	return len(damaged) != d.recordedDamage
}

// checkpointWriters is the number of block versions that a checkpoint
// writes at once. One Sync of the store makes them durable before the
// checkpoint names them. When each was fsynced on its own, a checkpoint of
// 3,000 new files on an ext4 virtio disk took 4.2 s one block at a time
// and 2.0 s with 16 at a time. ext4 lets concurrent fsyncs share a journal
// commit. NOTE: 16 was not measured again without those fsyncs.
//
// Sealing, the CPU part, runs in one goroutine only, so that a checkpoint
// leaves a core to the requests that run beside it. With a sealing
// goroutine per writer, checkpoints of 12,800 new files took 8.5 to 15 s
// on two busy cores, and with one 4.8 to 6.1 s (12.7 s once, at a load
// average of 10).
const checkpointWriters = 16

// inodePlan is the new version of one inode that a checkpoint writes.
type inodePlan struct {
	st     *fsys.InodeState
	ref    blockstore.Ref // the new version of the inode block
	chunks chunkTable     // its chunk table
	path   string         // the tree path the blocks are sealed under
}

// planInodes assigns the new block versions of a checkpoint's inodes.
func (d *Daemon) planInodes(inodes []*fsys.InodeState) ([]inodePlan, error) {
	plan := make([]inodePlan, 0, len(inodes))
	for _, st := range inodes {
		ref := blockstore.Ref{ID: st.BlockID, Version: d.versions[st.Ino].Version + 1}
		chunks, err := nextChunkTable(st, d.chunks[st.Ino], ref.Version)
		if err != nil {
			return nil, err
		}
		plan = append(plan, inodePlan{st: st, ref: ref, chunks: chunks, path: d.sealPath(st.Ino)})
	}
	return plan, nil
}

// sealPath returns the tree path that the blocks of ino are sealed under.
func (d *Daemon) sealPath(ino fsapi.Ino) string {
	path := d.root
	if p, err := d.engine.PathOf(ino); err == nil && p != "/" {
		path = d.root + p
	}
	if capability.ValidatePath(path) != nil {
		// Paths longer than a writecap prefix can name are sealed under
		// the root path; the node is the root, so its chain covers both.
		path = d.root
	}
	return path
}

// sealedBlock is a block version that writeBlocks sealed and a writer
// stores.
type sealedBlock struct {
	ref    blockstore.Ref
	sealed []byte
	buf    *[]byte // from checkpointBuffers, returned once sealed is written
}

// checkpointBuffers holds buffers of a chunk's size for the plaintext and
// the sealed versions of the chunks that a checkpoint writes. Fresh memory
// for each chunk made the kernel zero every page in a page fault: 38% of
// the CPU time of a checkpoint of a 1 GiB file.
var checkpointBuffers = sync.Pool{New: func() any {
	buf := make([]byte, 0, fsys.ChunkSize+64<<10)
	return &buf
}}

// writeBlocks writes the blocks of a checkpoint's plan: the changed chunks
// of each inode, then its inode block. It seals them one after the other
// and stores up to checkpointWriters at once. It returns the versions it
// stored, also on error, so that the caller can discard them.
func (d *Daemon) writeBlocks(plan []inodePlan) ([]blockstore.Ref, error) {
	var (
		mu      sync.Mutex
		written []blockstore.Ref
		errs    []error
		wg      sync.WaitGroup
		next    = make(chan sealedBlock)
	)
	failed := func(err error) bool {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
		return len(errs) > 0
	}
	for range checkpointWriters {
		wg.Go(func() {
			for b := range next {
				err := d.store.Put(b.ref, b.sealed)
				if b.buf != nil {
					checkpointBuffers.Put(b.buf)
				}
				if err != nil {
					failed(err)
					continue
				}
				mu.Lock()
				written = append(written, b.ref)
				mu.Unlock()
			}
		})
	}
	// send seals a block into buf, when it is not nil, and queues it.
	send := func(ref blockstore.Ref, path string, meta, data []byte, buf *[]byte, what string) bool {
		var into []byte
		if buf != nil {
			into = *buf
		}
		sealed, err := d.sealBlock(into, ref, path, meta, data, what)
		if failed(err) {
			if buf != nil {
				checkpointBuffers.Put(buf)
			}
			return false
		}
		next <- sealedBlock{ref: ref, sealed: sealed, buf: buf}
		return true
	}
outer:
	for _, p := range plan {
		meta, data := fsys.EncodeInode(p.st)
		b := inodeBlock{inode: data, chunks: p.chunks}
		for _, ch := range p.st.Chunks {
			if fsys.Inline(p.st) {
				b.inline = ch.Bytes() // chunk 0, the only one with data
				continue
			}
			ref := chunkRef(p.ref.ID, ch.Index, p.ref.Version)
			plain := checkpointBuffers.Get().(*[]byte)
			ok := send(ref, p.path, nil, ch.BytesInto(*plain), checkpointBuffers.Get().(*[]byte), fmt.Sprintf("chunk %d of inode %d", ch.Index, p.st.Ino))
			checkpointBuffers.Put(plain)
			if !ok {
				break outer
			}
		}
		if !send(p.ref, p.path, meta, encodeInodeBlock(b), nil, fmt.Sprintf("inode %d", p.st.Ino)) {
			break
		}
	}
	close(next)
	wg.Wait()
	return written, errors.Join(errs...)
}

// sealBlock seals one block version of the tree for the node itself.
func (d *Daemon) sealBlock(buf []byte, ref blockstore.Ref, path string, meta, data []byte, what string) ([]byte, error) {
	writer := block.Writer{Credential: d.node.Credential}
	sealed, err := block.SealInto(buf, writer, block.Params{
		ID:       ref.ID,
		Version:  ref.Version,
		Path:     path,
		Metadata: meta,
		Readers:  []principal.Identity{d.node.Credential.Identity()},
	}, data)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", what, err)
	}
	return sealed, nil
}

// discard removes block versions that a failed checkpoint wrote. The
// store's Sync then ends their batch, so the next checkpoint's Sync does
// not report their write-back errors.
func (d *Daemon) discard(written []blockstore.Ref) {
	for _, ref := range written {
		d.store.Delete(ref)
	}
	if err := d.store.Sync(); err != nil {
		d.log.Warn("syncing the block store after a failed checkpoint failed; the next start removes its blocks", "blocks", len(written), "error", err)
	}
}

// journalSyncInterval bounds how long an entry stays only in memory when no
// client asks for durability. Linux does not pass syncfs(2) or sync(1) on
// to FUSE file systems (only to virtiofs), so this is what makes `sync` on
// the mount take effect, one interval late.
const journalSyncInterval = time.Second

// checkpointPolicy decides when a background checkpoint runs. A checkpoint
// seals and writes every chunk and inode changed since the last one, which
// takes both CPU and disk from the requests beside it. So it waits until
// the tree has been quiet for a while (see activity), within bounds on the age of the
// oldest unsaved change and on the journal's growth. The journal's growth
// also bounds the file data that the daemon holds in memory until a
// checkpoint.
type checkpointPolicy struct {
	interval  time.Duration // age after which changes are saved once the tree is quiet
	quiet     time.Duration // time without changes that counts as quiet
	maxAge    time.Duration // age after which changes are saved anyway
	softBytes int64         // journal growth after which changes are saved once the tree is quiet
	hardBytes int64         // journal growth after which changes are saved anyway
}

// defaultCheckpointPolicy returns the policy for a checkpoint interval on
// a machine with memory bytes of RAM. Written data waits in memory for a
// checkpoint, so the growth bounds are a quarter and an eighth of the
// memory, and at most 2 GiB and 1 GiB. A large copy then runs without a
// checkpoint beside it until 1 GiB, and the checkpoint after it waits
// until the copy ends, unless the copy reaches 2 GiB.
func defaultCheckpointPolicy(interval time.Duration, memory uint64) checkpointPolicy {
	hard := min(int64(memory/4), 2<<30)
	if hard <= 0 {
		hard = 2 << 30 // memory unknown
	}
	return checkpointPolicy{
		interval:  interval,
		quiet:     2 * time.Second,
		maxAge:    10 * interval,
		softBytes: hard / 2,
		hardBytes: hard,
	}
}

// due reports whether a checkpoint should run now, given how long ago the
// last checkpoint was and the tree was last busy (a change, or many
// requests), and how many bytes the journal grew since the last
// checkpoint. The caller asks only when something changed since the last
// checkpoint.
func (p checkpointPolicy) due(sinceCheckpoint, sinceActive time.Duration, grown int64) bool {
	quiet := sinceActive >= p.quiet
	switch {
	case grown >= p.hardBytes:
		return true
	case grown >= p.softBytes && quiet:
		return true
	case sinceCheckpoint < p.interval:
		return false
	default:
		return quiet || sinceCheckpoint >= p.maxAge
	}
}

// totalMemory returns the machine's RAM in bytes, or 0 when unknown.
func totalMemory() uint64 {
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		return 0
	}
	return uint64(info.Totalram) * uint64(info.Unit)
}

// busyRequests is the number of requests between two ticks of the
// checkpoint loop (a second) above which the tree does not count as quiet.
const busyRequests = 50

// activity records when the tree was last busy: when the journal last
// grew, or when many requests came in one tick, reads included, because a
// checkpoint takes the CPU and disk that they need. A few requests, such
// as netd reading its configuration every two seconds, do not count.
type activity struct {
	last     time.Time
	seq      uint64 // the journal's next seq at the last tick
	requests uint64 // the request count at the last tick
}

// tick records the journal's next seq and the request count at now, and
// returns when the tree was last busy.
func (a *activity) tick(now time.Time, seq, requests uint64) time.Time {
	if seq != a.seq || requests-a.requests > busyRequests {
		a.last = now
	}
	a.seq, a.requests = seq, requests
	return a.last
}

func (d *Daemon) checkpointLoop(interval time.Duration) {
	defer close(d.done)
	ticker := time.NewTicker(journalSyncInterval)
	defer ticker.Stop()
	policy := defaultCheckpointPolicy(interval, totalMemory())
	automatic := interval > 0 && !d.check

	// What the journal looked like at the last checkpoint and at the last
	// tick, to tell whether anything changed and when.
	lastCheckpoint := time.Now()
	busy := activity{last: lastCheckpoint, seq: d.journal.NextSeq(), requests: d.requests.Load()}
	// Entries that Open replayed count as changes since the last
	// checkpoint: after a crash they are saved once the tree has been quiet
	// for the interval, like changes made by requests.
	checkpointSeq := d.loadedNext
	checkpointBytes := d.journal.AppendedBytes()
	for {
		select {
		case <-d.stop:
			return
		case now := <-ticker.C:
			if err := d.journal.Sync(); err != nil {
				d.log.Error("background journal sync failed", "error", err)
			}
			seq := d.journal.NextSeq()
			lastActive := busy.tick(now, seq, d.requests.Load())
			if !automatic || seq == checkpointSeq {
				continue
			}
			// Both the journal and the changed data in memory grow.
			grown := max(d.journal.AppendedBytes()-checkpointBytes, int64(d.engine.DirtyBytes()))
			if !policy.due(now.Sub(lastCheckpoint), now.Sub(lastActive), grown) {
				continue
			}
			// Entries appended while the checkpoint runs count toward the
			// next one, so take the marks first.
			seq, appended := d.journal.NextSeq(), d.journal.AppendedBytes()
			if err := d.Checkpoint(); err != nil {
				d.log.Error("background checkpoint failed", "error", err)
				continue
			}
			lastCheckpoint, checkpointSeq, checkpointBytes = time.Now(), seq, appended
		}
	}
}

// Close syncs the journal, writes a final checkpoint and closes the journal.
// The caller stops serving requests first.
func (d *Daemon) Close() error {
	close(d.stop)
	<-d.done
	var errs []error
	if err := d.journal.Sync(); err != nil {
		errs = append(errs, err)
	}
	if !d.check {
		if err := d.Checkpoint(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.journal.Close())
	d.log.Info("storage daemon stopped")
	return errors.Join(errs...)
}
