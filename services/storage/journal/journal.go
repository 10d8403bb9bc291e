package journal

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// DefaultSegmentSize is the segment size when Options.SegmentSize is 0.
const DefaultSegmentSize = 64 << 20

// Options configures Open and Check.
type Options struct {
	// Dir is the journal directory. Open creates it with mode 0700.
	Dir string

	// Key is the 32-byte journal key. Payloads are encrypted under a key
	// derived from it, because names and file data are inside them.
	Key []byte

	// Signer is the node, which signs the seal that ends every group of
	// records. Open requires it and Check ignores it.
	Signer *principal.Credential

	// Verifier is the key whose seals Replay and Check accept. The zero
	// value means the public key of Signer.
	Verifier principal.PublicKey

	// SegmentSize is the size in bytes after which the next record starts a
	// new segment file. Zero means DefaultSegmentSize.
	SegmentSize int64

	// Logger receives warnings about torn tails and damage. Nil means
	// slog.Default().
	Logger *slog.Logger

	// hooks replaces fdatasync and the directory fsync in tests. Nil means
	// the real system calls.
	hooks *syncHooks

	// cipher is the payload cipher of appended records in tests. Zero means
	// the CPU's choice (newCodec).
	cipher byte
}

// Record is one journal record as Replay returns it.
type Record struct {
	Seq     uint64
	Tags    []uint64
	Payload []byte // nil when Damaged

	// Damaged means the record failed a check: its body checksum, its seal
	// (missing, damaged or invalid, or listing another hash for it), the
	// AEAD, or its seq is not the one its position calls for. Tags and Seq
	// come from the header, whose checksum passed. Err gives the reason.
	Damaged bool
	Err     error
}

// encodedRecord is a record as Append encodes it, with the hash that the
// seal of its group lists once it is computed.
type encodedRecord struct {
	data   []byte
	hash   [hashSize]byte
	hashed bool
}

// deferHashSize is the size from which a record's hash is computed by the
// leader of the Sync that writes it instead of by its Append. SHA-256 of a
// 1 MiB record takes about as long as its encryption. For a stream of
// large writes, the leader is the Sync that Append starts in the
// background (earlySyncBytes), so the writer's requests no longer wait
// for the hash. In a profile of a 1 GiB write through a host-mode mount,
// hashing was 18% of the node's CPU time, all of it on the requests' path.
// With the hash deferred, the median of six such writes on a node whose
// state was in tmpfs rose from 374–412 MB/s to 424–495 MB/s.
const deferHashSize = 64 << 10

// sum returns the record's hash, computing it if Append left it.
func (r *encodedRecord) sum() [hashSize]byte {
	if !r.hashed {
		r.hash, r.hashed = sha256.Sum256(r.data), true
	}
	return r.hash
}

// Log is an open journal. Its methods are safe for concurrent use.
type Log struct {
	dir         *os.File // holds the flock
	codec       *codec
	logger      *slog.Logger
	hooks       syncHooks
	segmentSize int64

	// The last segment, written only by the goroutine that holds syncing
	// (the leader of a group commit) or by Open and Close.
	active     *os.File
	activeName string
	activeSize int64

	truncateMu sync.Mutex // serializes TruncateBefore

	appended atomic.Int64 // bytes of the records that Append encoded

	mu       sync.Mutex
	slotCond sync.Cond // signaled when an Append fills its slot in pending
	doneCond sync.Cond // signaled when a leader finishes or the Log fails

	nextSeq uint64
	// pending holds the encoded records that are not written yet:
	// pending[i] has seq pendingBase+i, and its data is nil while its
	// Append is still encrypting. The first filled entries are complete.
	pending      []encodedRecord
	pendingBase  uint64
	filled       int
	pendingBytes int64 // bytes of the records in pending
	earlySync    bool  // a Sync that Append started for pendingBytes is running
	durableSeq   uint64
	syncing      bool
	syncWaiters  int // Sync calls waiting for a leader, read by tests
	closing      bool
	closed       bool
	failed       error

	segments    []segmentInfo
	durableSize int64 // durable bytes of the last segment
}

func (o *Options) verifier() (principal.PublicKey, error) {
	if !o.Verifier.IsZero() {
		return o.Verifier, nil
	}
	if o.Signer == nil {
		return principal.PublicKey{}, errors.New("journal options: Verifier and Signer are both missing")
	}
	return o.Signer.Signing.Public(), nil
}

func (o *Options) syncHooks() syncHooks {
	if o.hooks != nil {
		return *o.hooks
	}
	return defaultSyncHooks()
}

func (o *Options) check() error {
	if o.Dir == "" {
		return errors.New("journal options: Dir is missing")
	}
	if len(o.Key) != KeySize {
		return fmt.Errorf("journal options: Key of %d bytes, expected %d", len(o.Key), KeySize)
	}
	if o.SegmentSize < 0 {
		return fmt.Errorf("journal options: SegmentSize %d is negative", o.SegmentSize)
	}
	return nil
}

// Open opens the journal in opts.Dir, or creates it with a new journal id if
// the directory holds no segment. It cuts a torn tail off the last segment
// (see the package documentation), makes the rest durable, and positions the
// Log to append at NextSeq. Only one Log at a time can have a directory open.
func Open(opts Options) (*Log, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.Signer == nil {
		return nil, errors.New("journal options: Signer is missing")
	}
	verifier, err := opts.verifier()
	if err != nil {
		return nil, err
	}
	// NOTE: Open accepts only its own seals, so that every record it
	// appends stays readable. Storing records sealed by a Raft leader will
	// need a separate append path.
	if !verifier.Equal(opts.Signer.Signing.Public()) {
		return nil, errors.New("journal options: Verifier is not the public key of Signer, so appended seals would fail verification")
	}

	segmentSize := opts.SegmentSize
	if segmentSize == 0 {
		segmentSize = DefaultSegmentSize
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("node", opts.Signer.Principal().String(), "path", opts.Dir)

	hooks := opts.syncHooks()
	if err := makeDir(opts.Dir, hooks); err != nil {
		return nil, err
	}
	dir, err := os.Open(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := lockDir(dir); err != nil {
		dir.Close()
		return nil, err
	}
	// Payloads are encrypted, but tags, sizes and timing are not, so other
	// users should not read the directory. Open leaves an existing
	// directory's mode to its owner.
	if info, err := dir.Stat(); err == nil && info.Mode().Perm()&0o077 != 0 {
		logger.Warn("journal: directory is accessible to other users", "mode", info.Mode().Perm().String())
	}

	l := &Log{dir: dir, logger: logger, hooks: hooks, segmentSize: segmentSize}
	l.slotCond.L = &l.mu
	l.doneCond.L = &l.mu
	if err := l.load(opts, verifier); err != nil {
		if l.active != nil {
			l.active.Close()
		}
		dir.Close()
		return nil, err
	}
	l.durableSeq = l.nextSeq - 1
	l.pendingBase = l.nextSeq
	logger.Info("journal: opened", "journal", l.codec.id, "segments", len(l.segments), "seq", l.nextSeq)
	return l, nil
}

// load removes leftover temporary files and either creates the first
// segment or recovers the last one.
func (l *Log) load(opts Options, verifier principal.PublicKey) error {
	segments, temps, err := listSegments(opts.Dir)
	if err != nil {
		return err
	}
	// A journal of another format version is rejected before anything in
	// the directory changes.
	if err := checkFormatVersion(opts.Dir, segments); err != nil {
		return fmt.Errorf("open journal %s: %w", opts.Dir, err)
	}
	for _, name := range temps {
		// A temporary file is a segment whose creation a crash interrupted
		// before the rename, so no record was ever written to it.
		if err := os.Remove(filepath.Join(opts.Dir, name)); err != nil {
			return fmt.Errorf("open journal: remove %s: %w", name, err)
		}
		l.logger.Warn("journal: removed unfinished segment", "segment", name)
	}

	if len(segments) == 0 {
		var id journalID
		if _, err := rand.Read(id[:]); err != nil {
			return fmt.Errorf("create journal id: %w", err)
		}
		if l.codec, err = opts.codec(id, verifier); err != nil {
			return err
		}
		l.active, l.activeName, err = createSegment(l.dir, l.hooks, segmentHeader{id: id, firstSeq: 1})
		if err != nil {
			return fmt.Errorf("create journal: %w", err)
		}
		l.activeSize = segmentHeaderSize
		l.durableSize = segmentHeaderSize
		l.segments = []segmentInfo{{name: l.activeName, firstSeq: 1}}
		l.nextSeq = 1
		l.logger.Info("journal: created", "journal", id, "segment", l.activeName)
		return nil
	}
	return l.recover(opts, verifier, segments)
}

// codec returns the codec of journal id for these options.
func (opts Options) codec(id journalID, verifier principal.PublicKey) (*codec, error) {
	if opts.cipher != 0 {
		return newCodecWith(opts.Key, id, opts.Signer, verifier, opts.cipher)
	}
	return newCodec(opts.Key, id, opts.Signer, verifier)
}

// checkFormatVersion returns an error that names both versions if a segment
// header has a good checksum but another format version. Other damage is
// left to recover, Replay and Check.
func checkFormatVersion(dir string, segments []segmentInfo) error {
	for _, seg := range segments {
		_, _, err := readHeaderOf(dir, seg)
		if errors.Is(err, ErrFormatVersion) {
			return fmt.Errorf("segment %s: %w (no migration exists: move the directory aside to start an empty journal; nothing was changed)", seg.name, err)
		}
	}
	return nil
}

// recover opens the last segment for appending: it checks every segment
// header, finds the last seal with good checksums, verifies that seal and
// its group, cuts whatever follows it and fdatasyncs the segment.
func (l *Log) recover(opts Options, verifier principal.PublicKey, segments []segmentInfo) error {
	last := segments[len(segments)-1]
	f, err := os.OpenFile(filepath.Join(opts.Dir, last.name), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	l.active = f
	l.activeName = last.name
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	reader := newSegmentReader(f, info.Size())
	header, err := readSegmentHeader(reader)
	if isReadError(err) {
		return fmt.Errorf("open journal: segment %s: %w", last.name, err)
	}
	if err != nil {
		// Segments get their final name only with a complete header, so
		// this is damage, not a crash, and there is no safe place to append.
		return &CorruptError{Segment: last.name, Seq: last.firstSeq, Err: err}
	}
	if header.firstSeq != last.firstSeq {
		return &CorruptError{Segment: last.name, Seq: last.firstSeq,
			Err: fmt.Errorf("header first seq %d does not match seq %d in the file name: %w", header.firstSeq, last.firstSeq, ErrInvalidHeader)}
	}
	if err := l.checkOlderHeaders(opts.Dir, header.id, segments[:len(segments)-1]); err != nil {
		return err
	}
	if l.codec, err = opts.codec(header.id, verifier); err != nil {
		return err
	}

	tail, err := findTail(reader, l.codec, header.firstSeq)
	if err != nil {
		return fmt.Errorf("open journal: segment %s: %w", last.name, err)
	}
	if tail.newest != nil {
		err = authenticateNewest(reader, l.codec, tail.newest, last.name)
	} else if len(segments) > 1 {
		err = authenticateLastIn(opts.Dir, segments[len(segments)-2], l.codec)
	}
	if err != nil {
		return err
	}

	l.logKeptDamage(last.name, tail.damaged)
	if tail.cut < info.Size() {
		if err := f.Truncate(tail.cut); err != nil {
			return fmt.Errorf("open journal: cut torn tail of segment %s at offset %d: %w", last.name, tail.cut, err)
		}
		l.logger.Warn("journal: cut torn tail", "segment", last.name, "offset", tail.cut, "seq", tail.nextSeq,
			"bytes", info.Size()-tail.cut, "err", tail.tailErr)
	}
	// A crashed process may have left records in the page cache that never
	// reached the disk. They are replayed as durable from now on, so they
	// must be on the disk first.
	if err := l.hooks.fdatasync(f); err != nil {
		return fmt.Errorf("open journal: fdatasync segment %s: %w", last.name, err)
	}

	l.activeSize = tail.cut
	l.durableSize = tail.cut
	l.nextSeq = tail.nextSeq
	l.segments = segments
	return nil
}

// checkOlderHeaders checks the headers of the segments before the last one.
// A damaged header is logged and left for Replay and Check to report. A
// header of another journal fails Open, because it means files of two
// journals were mixed and appending would make that worse.
func (l *Log) checkOlderHeaders(dir string, id journalID, segments []segmentInfo) error {
	for _, seg := range segments {
		header, _, err := readHeaderOf(dir, seg)
		if isReadError(err) {
			return fmt.Errorf("open journal: segment %s: %w", seg.name, err)
		}
		if err != nil {
			l.logger.Error("journal: damaged segment header", "segment", seg.name, "seq", seg.firstSeq, "err", err)
			continue
		}
		if header.id != id {
			return &CorruptError{Segment: seg.name, Seq: seg.firstSeq,
				Err: fmt.Errorf("journal id %s, newest segment has %s: %w", header.id, id, ErrWrongJournal)}
		}
		if header.firstSeq != seg.firstSeq {
			l.logger.Error("journal: segment header does not match its file name", "segment", seg.name, "seq", header.firstSeq)
		}
	}
	return nil
}

// tail is the result of Open's scan of the last segment.
type tail struct {
	newest  *group // group of the last seal with good checksums, nil if none
	damaged []step // damage before that seal, which Open keeps
	cut     int64  // offset after that seal: the new end of the segment
	nextSeq uint64
	tailErr error // the reason for the cut, nil if the segment ends at cut
}

// findTail scans a segment at checksum level and returns where its torn
// tail starts: right after the last seal with good checksums. Sync reports
// only sealed groups as durable, so records after that seal, even with good
// checksums, belong to a write that no Sync acknowledged.
func findTail(r *segmentReader, c *codec, firstSeq uint64) (tail, error) {
	gs := newGroupScanner(newScanner(r, c, firstSeq, true), false)
	t := tail{cut: segmentHeaderSize, nextSeq: firstSeq}
	var pending []step // damage after the last good seal so far
	for {
		g, ok, err := gs.next(0, checkCRC)
		if err != nil {
			return tail{}, err
		}
		if !ok {
			break
		}
		pending = append(pending, keptDamage(g)...)
		if g.seal == nil || g.seal.err != nil {
			continue
		}
		newest := g
		t.newest = &newest
		t.cut = g.seal.end
		// The next seq follows from the positions of the records, not
		// from the seqs they or the seal carry: a record copied here from
		// elsewhere must not shift the seqs of every record appended after
		// it.
		t.nextSeq = g.end
		t.damaged = append(t.damaged, pending...)
		pending = pending[:0]
	}
	if len(pending) > 0 {
		t.tailErr = pending[0].recordErr()
	}
	return t, nil
}

// keptDamage returns the steps of a group found at checksum level that Open
// logs if it keeps the group: damaged records and stretches, records out of
// sequence, and the group's damaged or missing seal, named by its first
// record.
func keptDamage(g group) []step {
	var damaged []step
	for _, st := range g.steps {
		if st.damaged() {
			damaged = append(damaged, st)
		}
	}
	switch {
	case g.seal != nil && g.seal.err != nil:
		damaged = append(damaged, *g.seal)
	case g.seal == nil || g.overflow:
		for _, st := range g.steps {
			if st.header != nil && !st.damaged() {
				st.err = fmt.Errorf("%w: %w", ErrUnsealed, g.checkSeal(nil, false))
				damaged = append(damaged, st)
				break
			}
		}
	}
	return damaged
}

// authenticateNewest verifies the newest sealed group of the last segment.
// A crash leaves bad checksums, never a seal or record whose checksums pass
// but whose signature, hash or AEAD fails. Such a group is therefore no torn
// tail: the Key or the Verifier is wrong, or the journal was tampered with.
func authenticateNewest(r *segmentReader, c *codec, newest *group, segment string) error {
	err := authenticateGroup(r, c, *newest)
	if err == nil {
		return nil
	}
	if isReadError(err) {
		return fmt.Errorf("open journal: segment %s: %w", segment, err)
	}
	return fmt.Errorf("open journal: newest seal in segment %s at offset %d: %w (wrong Key or Verifier, or tampering; nothing was changed)",
		segment, newest.seal.offset, err)
}

// authenticateLastIn verifies the newest sealed group in seg. Open calls it
// when the last segment has no seal yet, so that a wrong Key or Verifier
// still fails Open.
func authenticateLastIn(dir string, seg segmentInfo, c *codec) error {
	f, err := os.Open(filepath.Join(dir, seg.name))
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	reader := newSegmentReader(f, info.Size())
	t, err := findTail(reader, c, seg.firstSeq)
	if err != nil {
		return fmt.Errorf("open journal: segment %s: %w", seg.name, err)
	}
	if t.newest == nil {
		return nil
	}
	return authenticateNewest(reader, c, t.newest, seg.name)
}

// maxDamageLogs limits the log lines about damage found by Open, since a
// badly damaged segment could otherwise flood the log.
const maxDamageLogs = 10

func (l *Log) logKeptDamage(segment string, damaged []step) {
	for i, st := range damaged {
		if i == maxDamageLogs {
			l.logger.Error("journal: more damaged records in the last segment", "segment", segment, "count", len(damaged)-i)
			return
		}
		seq := st.expected
		if st.header != nil {
			seq = st.header.seq
		}
		l.logger.Error("journal: damaged record kept, Replay reports it", "segment", segment, "offset", st.offset,
			"seq", seq, "err", st.recordErr())
	}
}

// ID returns the journal id, which is the same in every segment.
func (l *Log) ID() [IDSize]byte { return l.codec.id }

// AppendedBytes returns the size of all records appended since Open.
// A caller compares two values to learn how much the journal grew.
func (l *Log) AppendedBytes() int64 { return l.appended.Load() }

// NextSeq returns the seq that the next Append assigns.
func (l *Log) NextSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextSeq
}

// usableLocked returns why the Log accepts no new records, or nil.
func (l *Log) usableLocked() error {
	if l.closing || l.closed {
		return ErrClosed
	}
	return l.failed
}

// failLocked makes the Log refuse all further work. After a failed write or
// fdatasync the kernel may have dropped the dirty pages and cleared the
// error, so a retry could report success for records that are not on disk.
func (l *Log) failLocked(err error) {
	if l.failed == nil {
		l.failed = fmt.Errorf("journal failed, reopen it to recover: %w", err)
		l.logger.Error("journal: failed", "err", err)
	}
	l.slotCond.Broadcast()
	l.doneCond.Broadcast()
}
