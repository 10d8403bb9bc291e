package hostmode

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStateHidesNamesAndData writes file contents, file and directory
// names, a symlink target and an extended attribute, each a distinctive
// string. It then searches every file of the state directory for them,
// first while they are only in the journal and again after a clean stop
// has written them into blocks.
func TestStateHidesNamesAndData(t *testing.T) {
	requireHost(t)
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)

	marker := func(kind string) string { return "secret-" + kind + "-" + hex.EncodeToString(randomBytes(t, 8)) }
	secrets := map[string]string{
		"directory name":  marker("dir"),
		"file name":       marker("file"),
		"file contents":   marker("data"),
		"symlink name":    marker("link"),
		"symlink target":  marker("target"),
		"xattr name":      marker("xname"),
		"xattr value":     marker("xvalue"),
		"big file chunk":  marker("chunk"),
		"small file data": marker("small"),
	}

	dir := n.path(secrets["directory name"])
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, secrets["file name"])
	writeFileSync(t, file, []byte(strings.Repeat(secrets["file contents"]+"\n", 2000)))
	writeFileSync(t, filepath.Join(dir, "small.txt"), []byte(secrets["small file data"]))
	big := randomBytes(t, 2<<20)
	copy(big[1<<20+100:], secrets["big file chunk"])
	writeFileSync(t, filepath.Join(dir, "big.bin"), big)
	if err := os.Symlink(secrets["symlink target"], filepath.Join(dir, secrets["symlink name"])); err != nil {
		t.Fatal(err)
	}
	setxattr := func() error {
		return unix.Setxattr(file, "user."+secrets["xattr name"], []byte(secrets["xattr value"]), 0)
	}
	if err := ignoringEINTR(setxattr); err != nil {
		t.Fatalf("setxattr on %s: %v", file, err)
	}
	// fsync of a directory makes every earlier entry durable. syncfs(2)
	// would not: services/fuse documents that it never reaches the daemon.
	if err := syncDir(dir); err != nil {
		t.Fatalf("fsync %s: %v", dir, err)
	}
	if lines := logLines(n.log(), "checkpoint written"); len(lines) > 0 {
		t.Fatalf("a checkpoint ran already, so the journal is not the only copy: %s", lines[0])
	}
	requireJournalTags(t, state, filepath.Join(dir, secrets["symlink name"]))

	// The search must be able to find a string that is there in clear: the
	// TPM choice that the node records.
	if found := findBytes(t, state, []byte("software\n")); len(found) == 0 {
		t.Fatalf("the search found no \"software\" in %s/node/tpm-device: the search is broken", state)
	}

	searchSecrets(t, "running node", state, secrets)
	n.stop()
	if len(listBlocks(t, state)) == 0 {
		t.Fatalf("the clean stop wrote no block files")
	}
	searchSecrets(t, "stopped node", state, secrets)
}

func searchSecrets(t *testing.T, phase, state string, secrets map[string]string) {
	t.Helper()
	for kind, secret := range secrets {
		if found := findBytes(t, state, []byte(secret)); len(found) > 0 {
			t.Errorf("%s: the %s %q is in clear in %v", phase, kind, secret, found)
		}
	}
}

// requireJournalTags checks that the journal on disk has a record that
// names the inode of path, which must not be followed if it is a symlink.
func requireJournalTags(t *testing.T, state, path string) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := info.Sys().(*syscall.Stat_t).Ino
	for _, r := range readJournal(t, state) {
		if slices.Contains(r.tags, ino) {
			return
		}
	}
	t.Fatalf("no journal record on disk names inode %d of %s after fsync", ino, path)
}
