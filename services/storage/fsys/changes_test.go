package fsys

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// changeRecorder collects what Options.Changed receives.
type changeRecorder struct {
	mu      sync.Mutex
	changes []fsapi.Change
	keys    []any
}

type originKey struct{}

func (r *changeRecorder) changed(ctx context.Context, changes []fsapi.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, changes...)
	r.keys = append(r.keys, ctx.Value(originKey{}))
}

func (r *changeRecorder) take() ([]fsapi.Change, []any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changes, keys := r.changes, r.keys
	r.changes, r.keys = nil, nil
	return changes, keys
}

func TestChangedGetsRequestContext(t *testing.T) {
	rec := &changeRecorder{}
	e, _ := newTestEngineWith(t, func(o *Options) { o.Changed = rec.changed })
	rec.take()

	reqCtx := context.WithValue(ctx, originKey{}, "request 1")
	attr, err := e.Mkdir(reqCtx, rootCaller, fsapi.RootIno, "d", 0o755)
	mustOK(t, err)
	changes, keys := rec.take()
	want := []fsapi.Change{{Kind: fsapi.ChangeEntry, Ino: fsapi.RootIno, Name: "d"}, {Kind: fsapi.ChangeAttr, Ino: fsapi.RootIno}}
	if !slices.Equal(changes, want) {
		t.Errorf("changes of mkdir %v, want %v", changes, want)
	}
	if len(keys) != 1 || keys[0] != "request 1" {
		t.Errorf("Changed got contexts with values %v, want the request's", keys)
	}

	// A failed request changes nothing.
	_, err = e.Mkdir(reqCtx, rootCaller, fsapi.RootIno, "d", 0o755)
	wantErrno(t, err, syscall.EEXIST)
	if changes, _ := rec.take(); changes != nil {
		t.Errorf("failed mkdir reported %v", changes)
	}

	// Opening with O_TRUNC truncates through an entry.
	ino, h := create(t, e, rootCaller, attr.Ino, "f", 0o644)
	mustOK(t, e.Release(ctx, ino, h))
	rec.take()
	h, err = e.Open(ctx, rootCaller, ino, syscall.O_RDWR|syscall.O_TRUNC)
	mustOK(t, err)
	mustOK(t, e.Release(ctx, ino, h))
	if changes, _ := rec.take(); !slices.Equal(changes, []fsapi.Change{{Kind: fsapi.ChangeData, Ino: ino}}) {
		t.Errorf("changes of open with O_TRUNC %v, want data of %d", changes, ino)
	}
}

func TestApplyReportsNoChanges(t *testing.T) {
	source, journal := newTestEngine(t)
	mkdir(t, source, rootCaller, fsapi.RootIno, "d", 0o755)
	createFile(t, source, rootCaller, fsapi.RootIno, "f", 0o644, []byte("data"))

	rec := &changeRecorder{}
	opts := testOptions(t, &memJournal{})
	opts.Changed = rec.changed
	replica := NewEmpty(opts)
	for _, ent := range journal.snapshot() {
		mustOK(t, replica.Apply(ent.seq, ent.payload))
	}
	if changes, _ := rec.take(); changes != nil {
		t.Errorf("Apply reported %v, want nothing: notifications are a side effect of serving", changes)
	}
}

func TestEntryChangesOfRenameExchange(t *testing.T) {
	ent := &Entry{Op: OpRename, Parent: 2, Name: "a", NewParent: 3, NewName: "b", Ino: 4, Target: 5, Flags: 2}
	want := []fsapi.Change{
		{Kind: fsapi.ChangeEntry, Ino: 2, Name: "a"},
		{Kind: fsapi.ChangeEntry, Ino: 3, Name: "b"},
		{Kind: fsapi.ChangeAttr, Ino: 2},
		{Kind: fsapi.ChangeAttr, Ino: 3},
		{Kind: fsapi.ChangeAttr, Ino: 4},
		{Kind: fsapi.ChangeAttr, Ino: 5},
	}
	if got := ent.Changes(); !slices.Equal(got, want) {
		t.Errorf("Changes of a rename exchange = %v, want %v", got, want)
	}
	for _, op := range []Op{OpInitRoot, OpReclaim} {
		if got := (&Entry{Op: op, Ino: 9}).Changes(); got != nil {
			t.Errorf("Changes of %s = %v, want none", op, got)
		}
	}
}
