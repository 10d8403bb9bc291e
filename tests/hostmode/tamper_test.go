package hostmode

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// blockFile is one file of DIR/node/blocks: version Version of block ID.
type blockFile struct {
	path    string
	id      string // hex
	version uint64
	size    int64
}

// listBlocks returns every block file of a node's state directory.
func listBlocks(t *testing.T, state string) []blockFile {
	t.Helper()
	var blocks []blockFile
	err := filepath.WalkDir(filepath.Join(state, "node", "blocks"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		id, versionText, ok := strings.Cut(d.Name(), "-")
		version, parseErr := strconv.ParseUint(versionText, 16, 64)
		if !ok || parseErr != nil {
			t.Fatalf("block file %s is not named ID-VERSION", path)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		blocks = append(blocks, blockFile{path: path, id: id, version: version, size: info.Size()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blocks
}

// largestBlock returns the largest block file, which must be at least min
// bytes. Every block file that large must belong to one file: the one big
// file, whose data is in chunk blocks of up to 1 MiB. The blocks of one
// file share the first half of their ids (see services/storage/storaged).
func largestBlock(t *testing.T, state string, min int64) blockFile {
	t.Helper()
	blocks := listBlocks(t, state)
	slices.SortFunc(blocks, func(a, b blockFile) int { return int(b.size - a.size) })
	if len(blocks) == 0 || blocks[0].size < min {
		t.Fatalf("no block file of at least %d bytes under %s/node/blocks: the big file was not checkpointed", min, state)
	}
	for _, b := range blocks[1:] {
		if b.size >= min && b.id[:32] != blocks[0].id[:32] {
			t.Fatalf("block files of two files are at least %d bytes: cannot tell which holds the big file", min)
		}
	}
	return blocks[0]
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFileSync(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
}

// flipByte inverts the byte at offset of a file, in place.
func flipByte(t *testing.T, path string, offset int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatalf("read byte %d of %s: %v", offset, path, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, offset); err != nil {
		t.Fatalf("write byte %d of %s: %v", offset, path, err)
	}
}

// requireEIO checks that reading path fails with EIO.
func requireEIO(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("read %s: got %d bytes (sha256 %s) and error %v, expected EIO", path, len(data), hashHex(data), err)
	}
}

// requireContents checks that path reads back as want.
func requireContents(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
	} else if !bytes.Equal(got, want) {
		t.Errorf("%s reads %d bytes that differ from the %d written", path, len(got), len(want))
	}
}

// requireFsckNames runs bt fsck and checks that it exits 1 and prints a
// line that contains every one of words.
func requireFsckNames(t *testing.T, state string, words ...string) {
	t.Helper()
	res := runBT(t, "fsck", "--state", state)
	if res.code != 1 {
		t.Errorf("bt fsck exited with %d, expected 1 for damage\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, tail(res.stderr, 10))
	}
	if len(logLines(res.stdout, words...)) == 0 {
		t.Errorf("bt fsck printed no line with %q\nstdout:\n%s\nstderr:\n%s", words, res.stdout, tail(res.stderr, 10))
	}
	if strings.Contains(res.stdout, "clean:") {
		t.Errorf("bt fsck printed a clean: line for a damaged node\nstdout:\n%s", res.stdout)
	}
}

// TestFlippedBlockByteGivesEIO damages one byte in the middle of the block
// of a checkpointed file. Only that file must fail, with EIO, and the log
// and bt fsck must name it.
func TestFlippedBlockByteGivesEIO(t *testing.T) {
	requireHost(t)
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	big := randomBytes(t, 3<<20+123)
	small := map[string][]byte{
		"tamper/a.txt":     []byte("first small file\n"),
		"tamper/b.txt":     randomBytes(t, 5000),
		"tamper/sub/c.txt": []byte("third small file\n"),
	}
	writeFileSync(t, n.path("tamper/big.bin"), big)
	for rel, data := range small {
		writeFileSync(t, n.path(rel), data)
	}
	n.stop()

	block := largestBlock(t, state, 1<<20)
	flipByte(t, block.path, block.size/2)
	t.Logf("flipped byte %d of %s", block.size/2, block.path)

	n = startNode(t, state, mount)
	requireEIO(t, n.path("tamper/big.bin"))
	for rel, data := range small {
		requireContents(t, n.path(rel), data)
	}
	if len(n.waitLogLines(block.id, "/tamper/big.bin")) == 0 {
		t.Errorf("the node's log has no line naming block %s and path /tamper/big.bin", block.id)
	}
	n.stop()

	requireFsckNames(t, state, "/tamper/big.bin", block.id)
	n = startNode(t, state, mount)
	requireEIO(t, n.path("tamper/big.bin"))
	requireContents(t, n.path("tamper/a.txt"), small["tamper/a.txt"])
	n.stop()
}

// journalRecord is one record of a journal segment, in the format that
// services/storage/journal/doc.go describes.
type journalRecord struct {
	segment    string
	offset     int64 // of the record in the segment
	seq        uint64
	tags       []uint64
	payloadLen int
	bodyOffset int64 // of the body (cipher byte, nonce, then ciphertext) in the segment
}

// Sizes of the journal's on-disk format.
const (
	segmentHeaderSize = 47     // kind, version, journal id, first seq, CRC
	recordPrefixSize  = 8      // length and header CRC
	headerFixedSize   = 19     // kind, version, seq, tag count, payload length
	bodyCRCSize       = 4      // CRC32C of the body, between header and body
	journalBodyPrefix = 1 + 24 // cipher byte and nonce field, before the ciphertext
	recordKind        = 0x0101 // KindJournalRecord
	sealKind          = 0x0102 // KindJournalSeal, which ends each group of records
)

// readJournal parses every record of every segment of a node's journal, in
// order, and skips the seals between them. An incomplete record or seal at
// the end of a segment (a torn write) ends that segment.
func readJournal(t *testing.T, state string) []journalRecord {
	t.Helper()
	dir := filepath.Join(state, "node", "journal")
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	var records []journalRecord
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(segmentHeaderSize)
		for off+recordPrefixSize+headerFixedSize <= int64(len(data)) {
			length := int64(binary.BigEndian.Uint32(data[off:]))
			if off+length > int64(len(data)) {
				break
			}
			h := data[off+recordPrefixSize : off+length]
			if binary.BigEndian.Uint16(h) == sealKind {
				off += length
				continue
			}
			count := int64(binary.BigEndian.Uint32(h[11:]))
			headerSize := headerFixedSize + 8*count
			if binary.BigEndian.Uint16(h) != recordKind || int64(len(h)) < headerSize+bodyCRCSize {
				t.Fatalf("segment %s: no journal record at offset %d", name, off)
			}
			r := journalRecord{segment: name, offset: off, seq: binary.BigEndian.Uint64(h[3:])}
			for i := range count {
				r.tags = append(r.tags, binary.BigEndian.Uint64(h[15+8*i:]))
			}
			r.payloadLen = int(binary.BigEndian.Uint32(h[headerSize-4:]))
			r.bodyOffset = off + recordPrefixSize + headerSize + bodyCRCSize
			records = append(records, r)
			off += length
		}
	}
	return records
}

// TestFlippedJournalByteGivesEIO damages the payload of a journal record
// that holds a write to one file and is followed by other records. That
// file must fail with EIO, also after a clean stop has written a
// checkpoint, and the log and bt fsck must name it. The file is either new
// since the last checkpoint or an older, checkpointed file rewritten since.
func TestFlippedJournalByteGivesEIO(t *testing.T) {
	requireHost(t)
	for _, checkpointed := range []bool{false, true} {
		name := "new file"
		if checkpointed {
			name = "checkpointed file"
		}
		t.Run(name, func(t *testing.T) {
			testFlippedJournalByte(t, checkpointed)
		})
	}
}

func testFlippedJournalByte(t *testing.T, checkpointed bool) {
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	before := []byte("written before the damaged record\n")
	victim := randomBytes(t, 200<<10)
	after := []byte("written after the damaged record\n")
	writeFileSync(t, n.path("j/before.txt"), before)
	// Records up to checkpointSeq are in blocks too, and replay skips them.
	checkpointSeq := uint64(0)
	if checkpointed {
		older := randomBytes(t, len(victim))
		t.Logf("j/victim.bin before the checkpoint: sha256 %s", hashHex(older))
		writeFileSync(t, n.path("j/victim.bin"), older)
		n.stop()
		checkpointSeq = lastCheckpointSeq(t, n.log())
		n = startNode(t, state, mount)
	}
	writeFileSync(t, n.path("j/victim.bin"), victim)
	writeFileSync(t, n.path("j/after.txt"), after)
	info, err := os.Stat(n.path("j/victim.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ino := info.Sys().(*syscall.Stat_t).Ino
	if lines := logLines(n.log(), "checkpoint written"); len(lines) > 0 {
		t.Fatalf("a checkpoint ran before the kill, so the writes are not only in the journal: %s", lines[0])
	}
	n.kill()

	records := readJournal(t, state)
	target := -1
	for i, r := range records {
		if r.seq > checkpointSeq && slices.Contains(r.tags, ino) && (target < 0 || r.payloadLen > records[target].payloadLen) {
			target = i
		}
	}
	if target < 0 {
		t.Fatalf("no journal record after seq %d is tagged with inode %d of j/victim.bin (%d records)", checkpointSeq, ino, len(records))
	}
	if target == len(records)-1 {
		t.Fatalf("the write record of j/victim.bin is the last record, but j/after.txt was written after it")
	}
	r := records[target]
	flipByte(t, r.segment, r.bodyOffset+journalBodyPrefix+int64(r.payloadLen)/2)
	t.Logf("flipped a payload byte of record seq %d (tags %v, %d payload bytes, offset %d of %s), one of %d records", r.seq, r.tags, r.payloadLen, r.offset, filepath.Base(r.segment), len(records))

	t.Run("restart", func(t *testing.T) {
		requireFsckNames(t, state, "/j/victim.bin")
		n := startNode(t, state, mount)
		requireEIO(t, n.path("j/victim.bin"))
		requireContents(t, n.path("j/before.txt"), before)
		requireContents(t, n.path("j/after.txt"), after)
		if len(n.waitLogLines("/j/victim.bin", "journal")) == 0 {
			t.Errorf("the node's log has no line naming the damaged journal record and path /j/victim.bin")
		}
		n.stop()
	})

	// The clean stop above wrote a checkpoint, which cannot hold the
	// damaged file's state, and the journal before it may be gone. The
	// damage must still be reported, not forgotten or fatal to the tree.
	t.Run("after checkpoint", func(t *testing.T) {
		requireFsckNames(t, state, "/j/victim.bin")
		n := startNode(t, state, mount)
		requireEIO(t, n.path("j/victim.bin"))
		requireContents(t, n.path("j/after.txt"), after)
		n.stop()
	})
}

// lastCheckpointSeq returns the journal seq of the last "checkpoint
// written" line of a node's log.
func lastCheckpointSeq(t *testing.T, log string) uint64 {
	t.Helper()
	lines := logLines(log, "checkpoint written")
	if len(lines) == 0 {
		t.Fatalf("the node's log has no checkpoint written line after a clean stop")
	}
	match := regexp.MustCompile(` seq=(\d+)`).FindStringSubmatch(lines[len(lines)-1])
	if match == nil {
		t.Fatalf("no seq= in the checkpoint line %q", lines[len(lines)-1])
	}
	seq, err := strconv.ParseUint(match[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// rollbackPattern matches how the log and bt fsck call a block older than
// the checkpoint expects.
var rollbackPattern = regexp.MustCompile(`(?i)rollback|rolled back|older than`)

// TestOldBlockVersionGivesEIO puts the bytes of an older, validly signed
// version of a file's block in place of the newest one. Reading the file
// must fail with EIO, and the log and bt fsck must report a rollback.
func TestOldBlockVersionGivesEIO(t *testing.T) {
	requireHost(t)
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	first := randomBytes(t, 300<<10+7)
	other := []byte("a file that is not rolled back\n")
	writeFileSync(t, n.path("r/roll.bin"), first)
	writeFileSync(t, n.path("r/other.txt"), other)
	n.stop()

	old := largestBlock(t, state, int64(len(first)))
	oldBytes, err := os.ReadFile(old.path)
	if err != nil {
		t.Fatal(err)
	}

	n = startNode(t, state, mount)
	writeFileSync(t, n.path("r/roll.bin"), randomBytes(t, len(first)))
	n.stop()

	var newest *blockFile
	for _, b := range listBlocks(t, state) {
		if b.id == old.id && (newest == nil || b.version > newest.version) {
			newest = &b
		}
	}
	if newest == nil {
		t.Fatalf("block %s of r/roll.bin is gone after the file changed", old.id)
	}
	if newest.version <= old.version {
		t.Fatalf("block %s has version %d after the file changed, expected one newer than %d", old.id, newest.version, old.version)
	}
	if _, err := os.Stat(old.path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old version %s is still there after the checkpoint (stat: %v)", old.path, err)
	}
	if err := os.WriteFile(newest.path, oldBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("put version %d of block %s in place of version %d", old.version, old.id, newest.version)

	n = startNode(t, state, mount)
	requireEIO(t, n.path("r/roll.bin"))
	requireContents(t, n.path("r/other.txt"), other)
	lines := n.waitLogLines(old.id, "/r/roll.bin")
	if len(lines) == 0 {
		t.Errorf("the node's log has no line naming block %s and path /r/roll.bin", old.id)
	} else if !rollbackPattern.MatchString(strings.Join(lines, "\n")) {
		t.Errorf("the node's log names the block but not a rollback:\n%s", strings.Join(lines, "\n"))
	}
	n.stop()

	res := runBT(t, "fsck", "--state", state)
	if res.code != 1 {
		t.Errorf("bt fsck exited with %d, expected 1 for a rolled-back block\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, tail(res.stderr, 10))
	}
	lines = logLines(res.stdout, "/r/roll.bin")
	if len(lines) == 0 {
		t.Errorf("bt fsck printed no line naming /r/roll.bin\nstdout:\n%s", res.stdout)
	} else if !rollbackPattern.MatchString(strings.Join(lines, "\n")) {
		t.Errorf("bt fsck names /r/roll.bin but not a rollback:\n%s", strings.Join(lines, "\n"))
	}
	t.Logf("bt fsck: %s", strings.Join(lines, "\n"))

	n = startNode(t, state, mount)
	requireEIO(t, n.path("r/roll.bin"))
	requireContents(t, n.path("r/other.txt"), other)
	n.stop()
}
