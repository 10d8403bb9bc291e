package storaged

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/storage/blockstore"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/fsys"
)

// writeAt writes data at off of the file name, which it creates if needed,
// in requests of at most fsapi.MaxWrite bytes.
func writeAt(t *testing.T, fs fsapi.FS, c *fsapi.Caller, name string, off int, data []byte) fsapi.Ino {
	t.Helper()
	ctx := context.Background()
	attr, err := fs.Lookup(ctx, c, fsapi.RootIno, name)
	var h fsapi.HandleID
	switch {
	case errors.Is(err, syscall.ENOENT):
		attr, h, err = fs.Create(ctx, c, fsapi.RootIno, name, syscall.S_IFREG|0o644, syscall.O_RDWR)
	case err == nil:
		h, err = fs.Open(ctx, c, attr.Ino, syscall.O_RDWR)
	}
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer fs.Release(ctx, attr.Ino, h)
	for done := 0; done < len(data); done += fsapi.MaxWrite {
		piece := data[done:min(done+fsapi.MaxWrite, len(data))]
		if _, err := fs.Write(ctx, c, attr.Ino, h, int64(off+done), piece); err != nil {
			t.Fatalf("write %s at %d: %v", name, off+done, err)
		}
	}
	return attr.Ino
}

// startDaemon creates a node in a new directory and opens its daemon, for a
// caller acting as the node's principal.
func startDaemon(t *testing.T) (string, *state.Node, *Daemon, *fsapi.Caller) {
	t.Helper()
	dir := t.TempDir()
	n := testNode(t, dir)
	return dir, n, openDaemon(t, n), withPrincipal(n)
}

// fsck opens the node's tree for checking and returns what Fsck finds.
func fsck(t *testing.T, n *state.Node) []Problem {
	t.Helper()
	check, err := Open(Options{Node: n, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	problems, _, err := check.Fsck()
	if err != nil {
		t.Fatal(err)
	}
	return problems
}

// reopen opens the node in dir and its daemon again, until the test ends.
func reopen(t *testing.T, dir string) *Daemon {
	t.Helper()
	n := testNode(t, dir)
	t.Cleanup(func() { n.Close() })
	d := openDaemon(t, n)
	t.Cleanup(func() { d.Close() })
	return d
}

func storedRefs(t *testing.T, d *Daemon) []blockstore.Ref {
	t.Helper()
	refs, err := d.store.List()
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

func TestCheckpointWritesOnlyChangedChunks(t *testing.T) {
	dir, n, d, c := startDaemon(t)
	content := make([]byte, 3*fsys.ChunkSize+fsys.ChunkSize/2)
	rand.Read(content)
	ino := writeAt(t, d.FS(), c, "big", 0, content)
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	first := maps.Clone(d.chunks[ino])
	if len(first) != 4 || len(storedRefs(t, d)) != 6 {
		t.Fatalf("after the first checkpoint: chunk table %v and %d block versions, expected 4 chunks and 6 blocks (root, file, chunks)", first, len(storedRefs(t, d)))
	}

	// Change chunk 1 only.
	patch := []byte("changed in chunk one")
	writeAt(t, d.FS(), c, "big", fsys.ChunkSize+100, patch)
	copy(content[fsys.ChunkSize+100:], patch)
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	second := d.chunks[ino]
	fileVersion := d.versions[ino].Version
	for index, version := range second {
		want := first[index]
		if index == 1 {
			want = fileVersion
		}
		if version != want {
			t.Errorf("chunk %d has version %d after changing chunk 1, expected %d", index, version, want)
		}
	}
	if got := len(storedRefs(t, d)); got != 6 {
		t.Errorf("%d block versions after the second checkpoint, expected 6: the replaced ones must be deleted", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	n.Close()

	d = reopen(t, dir)
	got, err := readFile(d.FS(), c, "big")
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("content after restart: %d bytes, error %v; expected the written %d bytes", len(got), err, len(content))
	}
}

func TestFsckFindsMissingChunk(t *testing.T) {
	dir, n, d, c := startDaemon(t)
	content := bytes.Repeat([]byte("chunk "), fsys.ChunkSize/3)
	ino := writeAt(t, d.FS(), c, "two-chunks", 0, content)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	removed := chunkRef(d.versions[ino].ID, 1, d.chunks[ino][1])
	n.Close()

	n = testNode(t, dir)
	defer n.Close()
	if problems := fsck(t, n); len(problems) != 0 {
		t.Fatalf("fsck of an intact tree: %v", problems)
	}
	if err := os.Remove(blockstorePath(t, n, removed)); err != nil {
		t.Fatal(err)
	}
	problems := fsck(t, n)
	if len(problems) != 1 || problems[0].Path != "/two-chunks" || !strings.Contains(problems[0].String(), "missing") {
		t.Errorf("fsck found %v, expected the missing chunk of /two-chunks", problems)
	}
}

func TestOldCheckpointFormatIsNamed(t *testing.T) {
	e := wire.NewEncoder(kindCheckpointBody, 1)
	e.Uint64(1)
	_, err := parseCheckpointBody(e.Data())
	if !errors.Is(err, ErrOldFormat) || !strings.Contains(err.Error(), "format 1") {
		t.Errorf("parse of a format 1 body: %v, expected ErrOldFormat naming format 1", err)
	}
}

func TestInodeBlockRejects(t *testing.T) {
	good := encodeInodeBlock(inodeBlock{inode: []byte("inode"), chunks: chunkTable{0: 3, 7: 1}})
	b, err := decodeInodeBlock(good)
	if err != nil || string(b.inode) != "inode" || !maps.Equal(b.chunks, chunkTable{0: 3, 7: 1}) || len(b.inline) != 0 {
		t.Fatalf("decode = %+v, %v", b, err)
	}
	b, err = decodeInodeBlock(encodeInodeBlock(inodeBlock{inode: []byte("small"), inline: []byte("data")}))
	if err != nil || string(b.inode) != "small" || len(b.chunks) != 0 || string(b.inline) != "data" {
		t.Fatalf("decode of inline data = %+v, %v", b, err)
	}
	bad := func(rows ...uint64) []byte {
		e := wire.NewEncoder(kindInodeBlock, inodeBlockVersion)
		e.Bytes([]byte("inode"))
		e.Uint32(uint32(len(rows) / 2))
		for _, v := range rows {
			e.Uint64(v)
		}
		e.Bytes(nil)
		return e.Data()
	}
	for name, input := range map[string][]byte{
		"unordered":      bad(7, 1, 0, 3),
		"repeated":       bad(2, 1, 2, 1),
		"version zero":   bad(2, 0),
		"trailing":       append(slices.Clone(good), 0),
		"truncated":      good[:len(good)-1],
		"wrong kind":     wire.NewEncoder(kindCheckpointBody, inodeBlockVersion).Data(),
		"unknown format": wire.NewEncoder(kindInodeBlock, 9).Data(),
	} {
		if _, err := decodeInodeBlock(input); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeInodeBlock(f *testing.F) {
	f.Add(encodeInodeBlock(inodeBlock{inode: []byte("inode"), chunks: chunkTable{0: 3, 7: 1}}))
	f.Add(encodeInodeBlock(inodeBlock{inode: []byte("inode"), inline: []byte("data")}))
	f.Add(encodeInodeBlock(inodeBlock{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeInodeBlock(data)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeInodeBlock(b), data) {
			t.Fatal("accepted inode block does not re-encode to the same bytes")
		}
	})
}

func TestSmallFileDataIsInline(t *testing.T) {
	dir, n, d, c := startDaemon(t)
	ctx := context.Background()
	blocksOf := func(ino fsapi.Ino) int {
		count := 0
		for _, ref := range storedRefs(t, d) {
			if fileOf(ref.ID) == fileOf(d.versions[ino].ID) {
				count++
			}
		}
		return count
	}

	small := []byte("a small file\n")
	ino := writeAt(t, d.FS(), c, "f", 0, small)
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := blocksOf(ino); got != 1 || len(d.chunks[ino]) != 0 {
		t.Errorf("a small file has %d blocks and chunk table %v, expected its inode block only", got, d.chunks[ino])
	}

	// Growing past fsys.InlineSize moves the data to chunk blocks.
	big := bytes.Repeat([]byte("grown "), 2*fsys.ChunkSize/6)
	writeAt(t, d.FS(), c, "f", 0, big)
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := blocksOf(ino); got != 3 || len(d.chunks[ino]) != 2 {
		t.Errorf("a 2 MiB file has %d blocks and chunk table %v, expected the inode block and 2 chunks", got, d.chunks[ino])
	}

	// Truncating it small again moves the data back inline.
	if _, err := d.FS().SetAttr(ctx, c, ino, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 100}); err != nil {
		t.Fatal(err)
	}
	// A change of attributes alone rewrites the inline data too.
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.FS().SetAttr(ctx, c, ino, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := blocksOf(ino); got != 1 || len(d.chunks[ino]) != 0 {
		t.Errorf("the file truncated to 100 bytes has %d blocks and chunk table %v, expected its inode block only", got, d.chunks[ino])
	}
	n.Close()

	d = reopen(t, dir)
	got, err := readFile(d.FS(), c, "f")
	if err != nil || !bytes.Equal(got, big[:100]) {
		t.Errorf("content after restart = %q, %v; expected %q", got, err, big[:100])
	}
}

func TestFileLeavesInlineWithoutWritingItsData(t *testing.T) {
	ctx := context.Background()
	grow := map[string]func(fs fsapi.FS, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID) error{
		"truncate": func(fs fsapi.FS, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID) error {
			_, err := fs.SetAttr(ctx, c, ino, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 10 << 20})
			return err
		},
		"write past chunk 0": func(fs fsapi.FS, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID) error {
			_, err := fs.Write(ctx, c, ino, h, 5<<20, []byte("far"))
			return err
		},
		"fallocate": func(fs fsapi.FS, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID) error {
			return fs.Fallocate(ctx, c, ino, h, 0, 2<<20, 4096)
		},
	}
	for name, change := range grow {
		t.Run(name, func(t *testing.T) {
			dir, n, d, c := startDaemon(t)
			small := []byte("the start of the file")
			ino := writeAt(t, d.FS(), c, "f", 0, small)
			if err := d.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			h, err := d.FS().Open(ctx, c, ino, syscall.O_RDWR)
			if err != nil {
				t.Fatal(err)
			}
			if err := change(d.FS(), c, ino, h); err != nil {
				t.Fatal(err)
			}
			d.FS().Release(ctx, ino, h)
			if err := d.Checkpoint(); err != nil {
				t.Fatalf("checkpoint after the file left its inode block: %v", err)
			}
			if len(d.chunks[ino]) == 0 {
				t.Errorf("chunk table %v, expected chunk 0 in a block of its own", d.chunks[ino])
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			n.Close()

			d = reopen(t, dir)
			got, err := readFile(d.FS(), c, "f")
			if err != nil || !bytes.Equal(got[:len(small)], small) {
				t.Errorf("file starts %q after restart (%v), expected %q", got[:min(len(got), len(small))], err, small)
			}
		})
	}
}

func TestPunchAcrossEvictedChunksSurvivesReplay(t *testing.T) {
	dir, n, d, c := startDaemon(t)
	ctx := context.Background()
	content := bytes.Repeat([]byte("punch me "), 12*fsys.ChunkSize/9)
	ino := writeAt(t, d.FS(), c, "f", 0, content)
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}

	// Evicted after the checkpoint: the punch loads only its two edges.
	off, length := 100, 10*fsys.ChunkSize+7
	h, err := d.FS().Open(ctx, c, ino, syscall.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.FS().Fallocate(ctx, c, ino, h, fsys.FallocKeepSize|fsys.FallocPunchHole, int64(off), int64(length)); err != nil {
		t.Fatal(err)
	}
	d.FS().Release(ctx, ino, h)
	clear(content[off : off+length])
	if got, err := readFile(d.FS(), c, "f"); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content after the punch differs (%v)", err)
	}
	if err := d.FS().SyncFS(ctx, c); err != nil {
		t.Fatal(err)
	}

	// A crash: the punch is replayed over evicted chunks.
	d.journal.Close()
	n.Close()
	d = reopen(t, dir)
	if got, err := readFile(d.FS(), c, "f"); err != nil || !bytes.Equal(got, content) {
		t.Errorf("content after replaying the punch differs (%v)", err)
	}
}

func TestFsckGroupsGarbageByFile(t *testing.T) {
	dir, n, d, c := startDaemon(t)
	ino := writeAt(t, d.FS(), c, "big", 0, bytes.Repeat([]byte("left over "), fsys.ChunkSize/5))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Two versions that no table names, as a crash while a checkpoint
	// removed the versions it replaced leaves them. The second has only
	// half its bytes, as a crash before the store's Sync can leave a new
	// version: it is garbage too, not damage.
	for index := range uint64(2) {
		ref := chunkRef(d.versions[ino].ID, index, d.chunks[ino][index])
		data, err := os.ReadFile(blockstorePath(t, n, ref))
		if err != nil {
			t.Fatal(err)
		}
		if index == 1 {
			data = data[:len(data)/2]
		}
		ref.Version += 100
		if err := os.WriteFile(blockstorePath(t, n, ref), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Versions of two files that the checkpoint does not name, as a crash
	// during the first checkpoint of new files leaves them, share a line.
	for _, first := range []byte{0xf0, 0xf1} {
		ref := chunkRef(d.versions[ino].ID, 0, 1)
		ref.ID[0] = first
		if err := os.MkdirAll(filepath.Dir(blockstorePath(t, n, ref)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(blockstorePath(t, n, ref), []byte("torn"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n.Close()

	n = testNode(t, dir)
	defer n.Close()
	problems := fsck(t, n)
	if len(problems) != 2 {
		t.Fatalf("fsck found %v, expected a garbage line for /big and one for the other files", problems)
	}
	if p := problems[0]; p.Kind != "garbage" || p.Path != "/big" || !strings.Contains(p.String(), "2 block versions are") {
		t.Errorf("fsck found %v first, expected a garbage line for /big with 2 block versions", p)
	}
	if p := problems[1]; p.Kind != "garbage" || !strings.Contains(p.String(), "2 files that the checkpoint does not name") || !strings.Contains(p.String(), "2 block versions are") {
		t.Errorf("fsck found %v second, expected one garbage line for 2 other files with 2 block versions", p)
	}
}
