package proto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/fsys"
)

func sampleChanges() []fsapi.Change {
	return []fsapi.Change{
		{Kind: fsapi.ChangeEntry, Ino: fsapi.RootIno, Name: "a"},
		{Kind: fsapi.ChangeEntry, Ino: 7, Name: strings.Repeat("n", fsapi.MaxNameLen)},
		{Kind: fsapi.ChangeAttr, Ino: 8},
		{Kind: fsapi.ChangeData, Ino: 1 << 40},
		{Kind: fsapi.ChangeAll},
	}
}

func TestNotificationRoundTrip(t *testing.T) {
	for _, changes := range [][]fsapi.Change{nil, sampleChanges()} {
		msg, err := AppendNotification(nil, changes)
		if err != nil {
			t.Fatalf("AppendNotification(%d changes): %v", len(changes), err)
		}
		got, err := DecodeNotification(msg)
		if err != nil {
			t.Fatalf("DecodeNotification of %d changes: %v", len(changes), err)
		}
		if !slices.Equal(got, changes) {
			t.Errorf("decoded %v, want %v", got, changes)
		}
	}
}

func TestNotificationRejectsInvalidChanges(t *testing.T) {
	for _, c := range []fsapi.Change{
		{Kind: 0, Ino: 1},
		{Kind: 5, Ino: 1},
		{Kind: fsapi.ChangeEntry, Ino: 1},
		{Kind: fsapi.ChangeEntry, Ino: 0, Name: "a"},
		{Kind: fsapi.ChangeEntry, Ino: 1, Name: strings.Repeat("n", fsapi.MaxNameLen+1)},
		{Kind: fsapi.ChangeAttr, Ino: 0},
		{Kind: fsapi.ChangeData, Ino: 1, Name: "a"},
		{Kind: fsapi.ChangeAll, Ino: 1},
		{Kind: fsapi.ChangeAll, Name: "a"},
	} {
		if _, err := AppendNotification(nil, []fsapi.Change{c}); err == nil {
			t.Errorf("AppendNotification accepted %+v", c)
		}
		// The same change, encoded by hand, must not decode either.
		b := appendHeader(nil, KindNotification, NotifyVersion)
		b = append(b, 0, 0, 0, 1, byte(c.Kind))
		b = append(b, 0, 0, 0, 0, 0, 0, 0, byte(c.Ino))
		b = appendString(b, c.Name)
		if _, err := DecodeNotification(b); err == nil {
			t.Errorf("DecodeNotification accepted %+v", c)
		}
	}

	if _, err := AppendNotification(nil, make([]fsapi.Change, MaxChanges+1)); !errors.Is(err, wire.ErrTooLong) {
		t.Errorf("AppendNotification of %d changes: %v, want ErrTooLong", MaxChanges+1, err)
	}
	msg, err := AppendNotification(nil, sampleChanges())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeNotification(append(msg, 0)); !errors.Is(err, wire.ErrTrailing) {
		t.Errorf("DecodeNotification with a trailing byte: %v, want ErrTrailing", err)
	}
	if _, err := DecodeNotification(msg[:len(msg)-1]); !errors.Is(err, wire.ErrTruncated) {
		t.Errorf("DecodeNotification of a truncated message: %v, want ErrTruncated", err)
	}
	other := bytes.Clone(msg)
	other[2] = NotifyVersion + 1
	if _, err := DecodeNotification(other); !errors.Is(err, wire.ErrUnknownVersion) {
		t.Errorf("DecodeNotification of version %d: %v, want ErrUnknownVersion", other[2], err)
	}
	huge := appendHeader(nil, KindNotification, NotifyVersion)
	huge = append(huge, 0xff, 0xff, 0xff, 0xff)
	if _, err := DecodeNotification(huge); !errors.Is(err, wire.ErrTooLong) {
		t.Errorf("DecodeNotification with count 2^32-1: %v, want ErrTooLong", err)
	}
}

func TestSubscribeMessages(t *testing.T) {
	if err := decodeSubscribe(appendSubscribe(nil)); err != nil {
		t.Errorf("decodeSubscribe: %v", err)
	}
	if err := decodeSubscribe(append(appendSubscribe(nil), 0)); !errors.Is(err, wire.ErrTrailing) {
		t.Errorf("decodeSubscribe with a trailing byte: %v, want ErrTrailing", err)
	}
	errno, err := decodeSubscribed(appendSubscribed(nil, syscall.EOPNOTSUPP))
	if err != nil || errno != syscall.EOPNOTSUPP {
		t.Errorf("decodeSubscribed = %v, %v, want EOPNOTSUPP", errno, err)
	}
	if _, err := decodeSubscribed(appendSubscribe(nil)); !errors.Is(err, wire.ErrWrongKind) {
		t.Errorf("decodeSubscribed of a subscribe: %v, want ErrWrongKind", err)
	}
}

// FuzzDecodeNotification checks that DecodeNotification never panics and
// that every notification it accepts encodes back to the same bytes.
func FuzzDecodeNotification(f *testing.F) {
	for _, changes := range [][]fsapi.Change{nil, sampleChanges(), sampleChanges()[:1]} {
		msg, err := AppendNotification(nil, changes)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
		f.Add(msg[:len(msg)/2])
	}
	f.Add([]byte{})
	f.Add(appendSubscribe(nil))
	f.Add(appendSubscribed(nil, 0))

	f.Fuzz(func(t *testing.T, data []byte) {
		changes, err := DecodeNotification(data)
		if err != nil {
			return
		}
		again, err := AppendNotification(nil, changes)
		if err != nil {
			t.Fatalf("AppendNotification of accepted changes %v: %v", changes, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted notification of %d bytes encodes to %d different bytes", len(data), len(again))
		}
	})
}

func TestChangeQueueMergesRepeats(t *testing.T) {
	q := newChangeQueue(10)
	a := fsapi.Change{Kind: fsapi.ChangeData, Ino: 5}
	b := fsapi.Change{Kind: fsapi.ChangeEntry, Ino: 1, Name: "x"}
	q.add([]fsapi.Change{a, b, a})
	q.add([]fsapi.Change{b})
	if got := q.take(0); !slices.Equal(got, []fsapi.Change{a, b}) {
		t.Errorf("take = %v, want %v", got, []fsapi.Change{a, b})
	}
	if got := q.take(0); got != nil {
		t.Errorf("take of an empty queue = %v, want nil", got)
	}
	q.add([]fsapi.Change{a})
	if got := q.take(0); !slices.Equal(got, []fsapi.Change{a}) {
		t.Errorf("take after the first delivery = %v, want %v", got, []fsapi.Change{a})
	}
}

func TestChangeQueueOverflowReportsAll(t *testing.T) {
	q := newChangeQueue(3)
	for ino := range fsapi.Ino(5) {
		q.add([]fsapi.Change{{Kind: fsapi.ChangeAttr, Ino: ino + 1}})
	}
	want := []fsapi.Change{{Kind: fsapi.ChangeAll}, {Kind: fsapi.ChangeAttr, Ino: 4}, {Kind: fsapi.ChangeAttr, Ino: 5}}
	if got := q.take(0); !slices.Equal(got, want) {
		t.Errorf("take after an overflow = %v, want %v", got, want)
	}
	if got := q.overflows(); got != 1 {
		t.Errorf("overflows = %d, want 1", got)
	}
}

func TestChangeQueueTakeLimit(t *testing.T) {
	q := newChangeQueue(10)
	for ino := range fsapi.Ino(5) {
		q.add([]fsapi.Change{{Kind: fsapi.ChangeAttr, Ino: ino + 1}})
	}
	if got := q.take(2); len(got) != 2 || got[0].Ino != 1 || got[1].Ino != 2 {
		t.Errorf("take(2) = %v, want inodes 1 and 2", got)
	}
	select {
	case <-q.ready:
	default:
		t.Errorf("queue with 3 changes left is not ready")
	}
	if got := q.take(0); len(got) != 3 {
		t.Errorf("take(0) = %v, want the 3 changes left", got)
	}
}

// engineServer is an fsys engine served with a Notifier.
type engineServer struct {
	path     string
	engine   *fsys.Engine
	notifier *Notifier
	logs     *logBuffer
}

// startEngineServer serves a fresh engine whose changes go to a Notifier
// that queues up to maxQueued changes per subscriber.
func startEngineServer(t *testing.T, maxQueued int) *engineServer {
	t.Helper()
	notifier := NewNotifier(maxQueued)
	engine, err := fsys.New(fsys.Options{Changed: notifier.Publish, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("fsys.New: %v", err)
	}
	path := filepath.Join(t.TempDir(), "fs.sock")
	l, err := bus.Listen(path)
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, engine, ServerOptions{
			TrustCallers: trustAll,
			Notifier:     notifier,
			Logger:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &engineServer{path: path, engine: engine, notifier: notifier, logs: logs}
}

func subscribeClient(t *testing.T, c *Client) fsapi.Subscription {
	t.Helper()
	sub, err := c.Subscribe(testContext(t))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return sub
}

// nextChanges returns the changes that sub reports until it has want of
// them, and fails the test when more or others arrive.
func nextChanges(t *testing.T, sub fsapi.Subscription, want []fsapi.Change) {
	t.Helper()
	var got []fsapi.Change
	for len(got) < len(want) {
		batch, err := sub.Next(testContext(t))
		if err != nil {
			t.Fatalf("Next after %v: %v; want %v", got, err, want)
		}
		got = append(got, batch...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
}

// watchedServer starts an engine server with two clients: watcher, which
// subscribed with sub, and other.
func watchedServer(t *testing.T) (watcher *Client, sub fsapi.Subscription, other *Client) {
	t.Helper()
	srv := startEngineServer(t, 0)
	watcher = dial(t, srv.path)
	sub = subscribeClient(t, watcher)
	other = dial(t, srv.path)
	return watcher, sub, other
}

func TestSubscriberSeesOtherClientsChanges(t *testing.T) {
	_, sub, other := watchedServer(t)
	ctx := testContext(t)
	root := &fsapi.Caller{}

	entry := func(dir fsapi.Ino, name string) fsapi.Change {
		return fsapi.Change{Kind: fsapi.ChangeEntry, Ino: dir, Name: name}
	}
	attr := func(ino fsapi.Ino) fsapi.Change { return fsapi.Change{Kind: fsapi.ChangeAttr, Ino: ino} }
	data := func(ino fsapi.Ino) fsapi.Change { return fsapi.Change{Kind: fsapi.ChangeData, Ino: ino} }

	dir, err := other.Mkdir(ctx, root, fsapi.RootIno, "dir", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{entry(1, "dir"), attr(1)})

	file, h, err := other.Create(ctx, root, dir.Ino, "f", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{entry(dir.Ino, "f"), attr(dir.Ino)})

	if _, err := other.Write(ctx, root, file.Ino, h, 0, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{data(file.Ino)})

	if _, err := other.SetAttr(ctx, root, file.Ino, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{attr(file.Ino)})

	if _, err := other.SetAttr(ctx, root, file.Ino, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 2}); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{data(file.Ino)})

	if err := other.SetXattr(ctx, root, file.Ino, "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{attr(file.Ino)})

	if _, err := other.Link(ctx, root, file.Ino, fsapi.RootIno, "link"); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{entry(1, "link"), attr(1), attr(file.Ino)})

	if err := other.Rename(ctx, root, dir.Ino, "f", fsapi.RootIno, "g", 0); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{entry(dir.Ino, "f"), entry(1, "g"), attr(dir.Ino), attr(1), attr(file.Ino)})

	if err := other.Unlink(ctx, root, fsapi.RootIno, "link"); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{entry(1, "link"), attr(1), attr(file.Ino)})

	if err := other.Rmdir(ctx, root, fsapi.RootIno, "dir"); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, sub, []fsapi.Change{entry(1, "dir"), attr(1), attr(dir.Ino)})
}

func TestSubscriberMissesOwnChanges(t *testing.T) {
	watcher, sub, other := watchedServer(t)
	ctx := testContext(t)
	root := &fsapi.Caller{}

	if _, err := watcher.Mkdir(ctx, root, fsapi.RootIno, "own", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Mkdir(ctx, root, fsapi.RootIno, "theirs", 0o755); err != nil {
		t.Fatal(err)
	}
	// Changes are queued in the order they take effect, so a report of
	// the watcher's own mkdir would come first.
	nextChanges(t, sub, []fsapi.Change{{Kind: fsapi.ChangeEntry, Ino: 1, Name: "theirs"}, {Kind: fsapi.ChangeAttr, Ino: 1}})
}

func TestSubscribeWithoutNotifierIsEOPNOTSUPP(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{TrustCallers: trustAll})
	c := dial(t, srv.path)
	if _, err := c.Subscribe(testContext(t)); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Fatalf("Subscribe: %v, want EOPNOTSUPP", err)
	}
	// The connection still serves requests.
	if _, err := c.GetAttr(testContext(t), &fsapi.Caller{}, fsapi.RootIno); err != nil {
		t.Errorf("GetAttr after the failed Subscribe: %v", err)
	}
}

func TestSubscribeTwiceReturnsSameStream(t *testing.T) {
	srv := startEngineServer(t, 0)
	watcher := dial(t, srv.path)
	first := subscribeClient(t, watcher)
	second := subscribeClient(t, watcher)
	other := dial(t, srv.path)
	if _, err := other.Mkdir(testContext(t), &fsapi.Caller{}, fsapi.RootIno, "d", 0o755); err != nil {
		t.Fatal(err)
	}
	nextChanges(t, second, []fsapi.Change{{Kind: fsapi.ChangeEntry, Ino: 1, Name: "d"}, {Kind: fsapi.ChangeAttr, Ino: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := first.Next(ctx); err == nil {
		t.Errorf("first subscription still had %v, want its changes taken through the second", got)
	}
}

// createFiles creates n files with distinct names in the root through c.
func createFiles(t *testing.T, c *Client, prefix string, n int) {
	t.Helper()
	ctx := testContext(t)
	for i := range n {
		name := prefix + strings.Repeat("x", 40) + strconv.Itoa(i)
		attr, h, err := c.Create(ctx, &fsapi.Caller{}, fsapi.RootIno, name, 0o644, syscall.O_RDWR)
		if err != nil {
			t.Fatalf("create file %d: %v", i, err)
		}
		if err := c.Release(ctx, attr.Ino, h); err != nil {
			t.Fatalf("release file %d: %v", i, err)
		}
	}
}

func TestStuckSubscriberDoesNotBlockRequests(t *testing.T) {
	srv := startEngineServer(t, 16)

	// A subscriber with small rings that reads nothing after subscribing:
	// its rings fill after a few messages, and then its queue overflows.
	d := bus.Dialer{RingSize: 4096}
	stuck, err := d.Dial(srv.path)
	if err != nil {
		t.Fatalf("bus dial: %v", err)
	}
	t.Cleanup(func() { stuck.Close() })
	if err := stuck.Send(testContext(t), busKindSubscribe, appendSubscribe(nil)); err != nil {
		t.Fatalf("send subscribe: %v", err)
	}

	writer := dial(t, srv.path)
	const files = 2000
	within(t, 60*time.Second, "creating files while a subscriber reads nothing", func() {
		createFiles(t, writer, "f", files)
	})

	// Now the stuck subscriber reads: the reply, the notifications that
	// fit in its ring, and then a ChangeAll for what was dropped.
	ctx := testContext(t)
	msg, err := stuck.Recv(ctx)
	if err != nil {
		t.Fatalf("receive the reply to the subscribe: %v", err)
	}
	if msg.Kind != busKindSubscribed {
		t.Fatalf("first message of kind %#x, want subscribed", msg.Kind)
	}
	msg.Release()

	var received int
	sawAll := false
	for !sawAll {
		msg, err := stuck.Recv(ctx)
		if err != nil {
			t.Fatalf("receive after %d changes: %v", received, err)
		}
		changes, err := DecodeNotification(msg.Data)
		msg.Release()
		if err != nil {
			t.Fatalf("decode notification: %v", err)
		}
		for _, c := range changes {
			if c.Kind == fsapi.ChangeAll {
				sawAll = true
			}
		}
		received += len(changes)
	}
	if received >= files {
		t.Errorf("the stuck subscriber received %d changes for %d files; want fewer, because its queue holds 16", received, files)
	}
	if !strings.Contains(srv.logs.String(), "dropped the change notifications of a subscriber") {
		t.Errorf("the overflow was not logged; log:\n%s", srv.logs.String())
	}
}

func TestSlowSubscriptionReportsAll(t *testing.T) {
	srv := startEngineServer(t, 0)
	watcher := dial(t, srv.path)
	sub := subscribeClient(t, watcher)
	writer := dial(t, srv.path)

	// The client's own queue takes DefaultMaxQueuedChanges distinct
	// changes, and the test does not call Next meanwhile.
	createFiles(t, writer, "g", DefaultMaxQueuedChanges+10)
	// The notifications reach the client's queue asynchronously.
	eventually(t, "the client's queue overflows", func() bool { return watcher.changes.overflows() > 0 })
	// A last change that the watcher must still see after the loss.
	if _, err := writer.Mkdir(testContext(t), &fsapi.Caller{}, fsapi.RootIno, "last", 0o755); err != nil {
		t.Fatal(err)
	}

	var got []fsapi.Change
	last := fsapi.Change{Kind: fsapi.ChangeEntry, Ino: 1, Name: "last"}
	for !slices.Contains(got, last) {
		batch, err := sub.Next(testContext(t))
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, batch...)
	}
	if len(got) == 0 || got[0].Kind != fsapi.ChangeAll {
		t.Fatalf("first change %v, want ChangeAll after the client's queue overflowed", got[:min(len(got), 1)])
	}
	if len(got) > DefaultMaxQueuedChanges+1 {
		t.Errorf("got %d changes, want at most %d after the overflow", len(got), DefaultMaxQueuedChanges+1)
	}
}

func TestSubscriptionEndsWithConnection(t *testing.T) {
	srv := startEngineServer(t, 0)
	c, err := Dial(srv.path, ClientOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sub := subscribeClient(t, c)
	c.Close()
	if _, err := sub.Next(testContext(t)); !errors.Is(err, ErrConnDown) {
		t.Errorf("Next after Close: %v, want ErrConnDown", err)
	}
}
