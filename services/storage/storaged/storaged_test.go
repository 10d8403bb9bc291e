package storaged

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/block"
	"github.com/blocktree/blocktree/services/crypto/swtpm/swtpmtest"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/storage/blockstore"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// testNode opens (creating on first use) a node state with a software TPM.
func testNode(t *testing.T, dir string) *state.Node {
	t.Helper()
	swtpmtest.Require(t)
	n, err := state.Open(context.Background(), state.Options{Dir: dir, TPM: state.TPMSoftware})
	if err != nil {
		t.Fatalf("open node state: %v", err)
	}
	return n
}

func openDaemon(t *testing.T, n *state.Node) *Daemon {
	t.Helper()
	d, err := Open(Options{Node: n, CheckpointInterval: -1})
	if err != nil {
		t.Fatalf("Open daemon: %v", err)
	}
	return d
}

func withPrincipal(n *state.Node) *fsapi.Caller {
	return &fsapi.Caller{Principal: n.Credential.Principal()}
}

func writeFile(t *testing.T, fs fsapi.FS, c *fsapi.Caller, name string, data []byte) fsapi.Ino {
	t.Helper()
	ctx := context.Background()
	attr, h, err := fs.Create(ctx, c, fsapi.RootIno, name, syscall.S_IFREG|0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create %s: %v", name, err)
	}
	if _, err := fs.Write(ctx, c, attr.Ino, h, 0, data); err != nil {
		t.Fatalf("Write %s: %v", name, err)
	}
	if err := fs.Release(ctx, attr.Ino, h); err != nil {
		t.Fatalf("Release %s: %v", name, err)
	}
	return attr.Ino
}

func readFile(fs fsapi.FS, c *fsapi.Caller, name string) ([]byte, error) {
	ctx := context.Background()
	attr, err := fs.Lookup(ctx, c, fsapi.RootIno, name)
	if err != nil {
		return nil, err
	}
	h, err := fs.Open(ctx, c, attr.Ino, syscall.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer fs.Release(ctx, attr.Ino, h)
	buf := make([]byte, attr.Size)
	// A request reads at most fsapi.MaxWrite bytes.
	for off := 0; off < len(buf); off += fsapi.MaxWrite {
		n, err := fs.Read(ctx, c, attr.Ino, h, int64(off), buf[off:min(off+fsapi.MaxWrite, len(buf))])
		if err != nil {
			return buf[:off+n], err
		}
	}
	return buf, nil
}

func TestDataSurvivesCleanRestart(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	d := openDaemon(t, n)
	c := withPrincipal(n)
	big := bytes.Repeat([]byte("blocktree "), 100_000)
	writeFile(t, d.FS(), c, "small", []byte("hello"))
	writeFile(t, d.FS(), c, "big", big)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	n.Close()

	n = testNode(t, dir)
	defer n.Close()
	d = openDaemon(t, n)
	defer d.Close()
	for name, want := range map[string][]byte{"small": []byte("hello"), "big": big} {
		got, err := readFile(d.FS(), c, name)
		if err != nil {
			t.Fatalf("read %s after restart: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s after restart: %d bytes, expected %d", name, len(got), len(want))
		}
	}
}

func TestJournalReplayWithoutCheckpoint(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	d := openDaemon(t, n)
	c := withPrincipal(n)
	writeFile(t, d.FS(), c, "synced", []byte("made durable by fsync"))
	if err := d.FS().SyncFS(context.Background(), c); err != nil {
		t.Fatalf("SyncFS: %v", err)
	}

	// A crash: no checkpoint, no journal close, the TPM is not shut down.
	d.journal.Close()
	n.Close()

	n = testNode(t, dir)
	defer n.Close()
	d = openDaemon(t, n)
	defer d.Close()
	got, err := readFile(d.FS(), c, "synced")
	if err != nil {
		t.Fatalf("read after replay: %v", err)
	}
	if string(got) != "made durable by fsync" {
		t.Errorf("after replay: %q", got)
	}
}

// TestReplayedEntriesAreCheckpointed crashes a daemon with entries after its
// last checkpoint and checks that the next daemon saves the replayed entries
// in a checkpoint once the interval has passed, although no request
// changes the tree.
func TestReplayedEntriesAreCheckpointed(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	d := openDaemon(t, n)
	c := withPrincipal(n)
	writeFile(t, d.FS(), c, "before", []byte("checkpointed"))
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, d.FS(), c, "after", []byte("only in the journal"))
	if err := d.FS().SyncFS(context.Background(), c); err != nil {
		t.Fatalf("SyncFS: %v", err)
	}
	last := d.journal.NextSeq() - 1
	d.journal.Close() // a crash
	n.Close()

	n = testNode(t, dir)
	defer n.Close()
	d, err := Open(Options{Node: n, CheckpointInterval: time.Second})
	if err != nil {
		t.Fatalf("Open daemon: %v", err)
	}
	defer d.Close()
	// The tree is quiet from the start, so the checkpoint is due after the
	// two quiet seconds; the deadline leaves room for a slow machine.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp, err := d.readCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		if cp != nil && cp.Seq >= last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers entry %d 30 s after the restart (newest: %+v)", last, cp)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCrashRightAfterCheckpoint opens a copy of the state directory taken
// right after a checkpoint, which is what a crash at that moment leaves:
// the journal records that no sync has written are only in the daemon's
// memory. The copy must open, keep what the checkpoint covered, and take
// new changes.
func TestCrashRightAfterCheckpoint(t *testing.T) {
	dir, n, d, c := startDaemon(t)
	defer n.Close()
	defer d.Close()
	writeFile(t, d.FS(), c, "covered", []byte("named by the checkpoint"))
	if err := d.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	crashed := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", crashed).CombinedOutput(); err != nil {
		t.Fatalf("copy the state directory: %v: %s", err, out)
	}

	copied := testNode(t, crashed)
	defer copied.Close()
	after := openDaemon(t, copied)
	got, err := readFile(after.FS(), c, "covered")
	if err != nil {
		t.Fatalf("read the file after the crash: %v", err)
	}
	if string(got) != "named by the checkpoint" {
		t.Errorf("file after the crash: %q, expected %q", got, "named by the checkpoint")
	}
	writeFile(t, after.FS(), c, "after", []byte("written after the crash"))
	if err := after.FS().SyncFS(context.Background(), c); err != nil {
		t.Errorf("sync after the crash: %v", err)
	}
	if err := after.Close(); err != nil {
		t.Errorf("close after the crash: %v", err)
	}
	if problems := fsck(t, copied); len(problems) != 0 {
		t.Errorf("fsck after the crash: %v", problems)
	}
}

func TestTamperedBlockIsEIO(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	d := openDaemon(t, n)
	c := withPrincipal(n)
	ino := writeFile(t, d.FS(), c, "victim", bytes.Repeat([]byte{7}, 10000))
	writeFile(t, d.FS(), c, "bystander", []byte("fine"))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ref := d.versions[ino]
	n.Close()

	path := blockstorePath(t, n, ref)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	n = testNode(t, dir)
	defer n.Close()
	d = openDaemon(t, n)
	defer d.Close()
	if _, err := readFile(d.FS(), c, "victim"); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of the tampered file: %v, expected EIO", err)
	}
	if got, err := readFile(d.FS(), c, "bystander"); err != nil || string(got) != "fine" {
		t.Errorf("read of an intact file: %q, %v", got, err)
	}
	damage := d.Damaged()
	if len(damage) != 1 || damage[0].Ino != ino || damage[0].Path != "/victim" {
		t.Errorf("Damaged() = %+v, expected inode %d at /victim", damage, ino)
	}
}

func TestOlderBlockIsRollback(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	d := openDaemon(t, n)
	c := withPrincipal(n)
	ino := writeFile(t, d.FS(), c, "doc", []byte("version one"))
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	oldRef := d.versions[ino]
	old, err := os.ReadFile(blockstorePath(t, n, oldRef))
	if err != nil {
		t.Fatal(err)
	}
	attr, err := d.FS().Lookup(context.Background(), c, fsapi.RootIno, "doc")
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.FS().Open(context.Background(), c, attr.Ino, syscall.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.FS().Write(context.Background(), c, attr.Ino, h, 0, []byte("version two")); err != nil {
		t.Fatal(err)
	}
	d.FS().Release(context.Background(), attr.Ino, h)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	newRef := d.versions[ino]
	n.Close()

	// Put the old version's bytes where the new version belongs.
	if err := os.WriteFile(blockstorePath(t, n, newRef), old, 0o600); err != nil {
		t.Fatal(err)
	}
	n = testNode(t, dir)
	defer n.Close()
	d = openDaemon(t, n)
	defer d.Close()
	if _, err := readFile(d.FS(), c, "doc"); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of a rolled-back file: %v, expected EIO", err)
	}
	damage := d.Damaged()
	if len(damage) != 1 || !errors.Is(damage[0].Err, block.ErrRollback) {
		t.Errorf("Damaged() = %+v, expected one rollback", damage)
	}
}

func TestNoPlaintextInStateDirectory(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	d := openDaemon(t, n)
	c := withPrincipal(n)
	secretName := "quarterly-results-draft"
	secretData := []byte("the merger closes on friday")
	writeFile(t, d.FS(), c, secretName, secretData)
	if err := d.FS().SyncFS(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	scan := func(when string) {
		filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			if bytes.Contains(data, []byte(secretName)) || bytes.Contains(data, secretData) {
				t.Errorf("%s: %s contains a file name or contents in the clear", when, path)
			}
			return nil
		})
	}
	scan("journal only")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	n.Close()
	scan("after checkpoint")
}

func blockstorePath(t *testing.T, n *state.Node, ref blockstore.Ref) string {
	t.Helper()
	s, err := blockstore.Open(n.BlocksDir())
	if err != nil {
		t.Fatal(err)
	}
	return s.Path(ref)
}

func TestDamageSurvivesCheckpoint(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	d := openDaemon(t, n)
	c := withPrincipal(n)
	old := writeFile(t, d.FS(), c, "checkpointed", []byte("first contents"))
	if err := d.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	fresh := writeFile(t, d.FS(), c, "never-checkpointed", []byte("new"))
	writeFile(t, d.FS(), c, "healthy", []byte("fine"))
	d.Engine().MarkDamaged(old, "test damage")
	d.Engine().MarkDamaged(fresh, "test damage")
	if err := d.Close(); err != nil {
		t.Fatalf("Close with damaged inodes: %v", err)
	}
	n.Close()

	for restart := range 2 {
		n = testNode(t, dir)
		d = openDaemon(t, n)
		for _, name := range []string{"checkpointed", "never-checkpointed"} {
			if got, err := readFile(d.FS(), c, name); !errors.Is(err, syscall.EIO) {
				t.Errorf("restart %d: read of damaged %s = %q, %v; expected EIO, not older contents", restart, name, got, err)
			}
		}
		if got, err := readFile(d.FS(), c, "healthy"); err != nil || string(got) != "fine" {
			t.Errorf("restart %d: read of an intact file: %q, %v", restart, got, err)
		}
		if damage := d.Damaged(); len(damage) != 2 {
			t.Errorf("restart %d: Damaged() = %+v, expected both files", restart, damage)
		}
		writeFile(t, d.FS(), c, fmt.Sprintf("after-%d", restart), []byte("more"))
		if err := d.Close(); err != nil {
			t.Fatalf("restart %d: Close: %v", restart, err)
		}
		n.Close()
	}

	n = testNode(t, dir)
	defer n.Close()
	d = openDaemon(t, n)
	defer d.Close()
	if err := d.FS().Unlink(context.Background(), c, fsapi.RootIno, "checkpointed"); err != nil {
		t.Errorf("unlink of a damaged file: %v", err)
	}
}

func TestCheckpointPolicy(t *testing.T) {
	p := defaultCheckpointPolicy(30*time.Second, 24<<30)
	cases := []struct {
		name                         string
		sinceCheckpoint, sinceChange time.Duration
		grown                        int64
		want                         bool
	}{
		{"young changes wait", 10 * time.Second, 5 * time.Second, 1 << 20, false},
		{"old changes on a quiet tree", 31 * time.Second, 3 * time.Second, 1 << 20, true},
		{"old changes on a busy tree wait", 31 * time.Second, time.Second, 1 << 20, false},
		{"very old changes on a busy tree", 301 * time.Second, 0, 1 << 20, true},
		{"large journal on a busy tree waits", time.Second, 0, 1 << 30, false},
		{"large journal on a quiet tree", time.Second, 3 * time.Second, 1 << 30, true},
		{"very large journal on a busy tree", time.Second, 0, 2 << 30, true},
	}
	for _, c := range cases {
		if got := p.due(c.sinceCheckpoint, c.sinceChange, c.grown); got != c.want {
			t.Errorf("%s: due = %v, expected %v", c.name, got, c.want)
		}
	}

	small := defaultCheckpointPolicy(30*time.Second, 1<<30)
	if small.hardBytes != 256<<20 || small.softBytes != 128<<20 {
		t.Errorf("bounds with 1 GiB of memory = %d and %d bytes, expected 256 MiB and 128 MiB", small.softBytes, small.hardBytes)
	}
}

func TestActivityCountsManyRequests(t *testing.T) {
	start := time.Now()
	a := activity{last: start, seq: 10, requests: 100}
	second := func(n int) time.Time { return start.Add(time.Duration(n) * time.Second) }
	if got := a.tick(second(1), 10, 100+busyRequests); !got.Equal(start) {
		t.Errorf("a few requests made the tree busy at %v", got.Sub(start))
	}
	if got := a.tick(second(2), 10, 100+3*busyRequests); !got.Equal(second(2)) {
		t.Errorf("many requests in a tick: last busy %v, expected 2s", got.Sub(start))
	}
	if got := a.tick(second(3), 11, 100+3*busyRequests); !got.Equal(second(3)) {
		t.Errorf("a journal entry: last busy %v, expected 3s", got.Sub(start))
	}
	if got := a.tick(second(4), 11, 100+3*busyRequests+1); !got.Equal(second(3)) {
		t.Errorf("a quiet tick: last busy %v, expected 3s", got.Sub(start))
	}
}
