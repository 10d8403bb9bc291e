package hostmode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/proto"
)

// TestOtherClientChangesShowOnMount changes the tree through a second
// client of the node's storage daemon, as another program on the node
// would, and checks that the mount shows each change long before the
// kernel's entry timeout (an hour) or attribute timeout (a minute) would
// expire.
func TestOtherClientChangesShowOnMount(t *testing.T) {
	requireHost(t)
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	defer n.stop()
	// With a one-second fallback every change would show within the
	// polling below anyway, so the mount must use notifications.
	if lines := logLines(n.log(), "file system mounted", "notified=true", "entry_timeout=1h0m0s", "attr_timeout=1m0s"); len(lines) != 1 {
		t.Fatalf("the node's log has no line saying that the mount follows change notifications with long timeouts:\n%s", tail(n.log(), 20))
	}

	socket := filepath.Join(state, "node", "storage.sock")
	client, err := proto.Dial(socket, proto.ClientOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("dial the node's storage daemon: %v", err)
	}
	defer client.Close()
	ctx := context.Background()
	root := &fsapi.Caller{} // root, acting for the node's principal

	// Looking the names up first makes the kernel cache their absence.
	for _, name := range []string{"made", "renamed"} {
		if _, err := os.Stat(n.path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stat %s before it exists: %v", name, err)
		}
	}

	attr, h, err := client.Create(ctx, root, fsapi.RootIno, "made", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("create through the second client: %v", err)
	}
	if _, err := client.Write(ctx, root, attr.Ino, h, 0, []byte("hello")); err != nil {
		t.Fatalf("write through the second client: %v", err)
	}
	showsWithin(t, "the created and written file", func() error { return fileIs(n.path("made"), 0o644, "hello") })

	if _, err := client.SetAttr(ctx, root, attr.Ino, &fsapi.SetAttrIn{Valid: fsapi.SetMode | fsapi.SetSize, Mode: 0o600, Size: 2}); err != nil {
		t.Fatalf("chmod and truncate through the second client: %v", err)
	}
	showsWithin(t, "the chmod and truncate", func() error { return fileIs(n.path("made"), 0o600, "he") })
	if err := client.Release(ctx, attr.Ino, h); err != nil {
		t.Fatal(err)
	}

	if err := client.Rename(ctx, root, fsapi.RootIno, "made", fsapi.RootIno, "renamed", 0); err != nil {
		t.Fatalf("rename through the second client: %v", err)
	}
	showsWithin(t, "the rename", func() error {
		if _, err := os.Stat(n.path("made")); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("old name: %v, want it gone", err)
		}
		return fileIs(n.path("renamed"), 0o600, "he")
	})

	if err := client.Unlink(ctx, root, fsapi.RootIno, "renamed"); err != nil {
		t.Fatalf("unlink through the second client: %v", err)
	}
	showsWithin(t, "the removal", func() error {
		entries, err := os.ReadDir(mount)
		if err != nil {
			return err
		}
		if len(entries) != 0 {
			return fmt.Errorf("readdir lists %d entries, want none", len(entries))
		}
		if _, err := os.Stat(n.path("renamed")); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat: %v, want ENOENT", err)
		}
		return nil
	})
}

// showsWithin polls check until it returns nil, for at most 10 seconds,
// which is well below the mount's one-minute cache timeouts, so a change
// that shows was invalidated, not expired.
func showsWithin(t *testing.T, what string, check func() error) {
	t.Helper()
	testenv.Poll(t, 10*time.Second, "the mount shows "+what, check)
}

// fileIs returns nil when path has the permission bits mode and the
// content want, through stat(2) and a read.
func fileIs(path string, mode os.FileMode, want string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.Mode().Perm() != mode || info.Size() != int64(len(want)) {
		return fmt.Errorf("stat: mode %v and size %d, want %v and %d", info.Mode().Perm(), info.Size(), mode, len(want))
	}
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("content %q, want %q", got, want)
	}
	return nil
}
