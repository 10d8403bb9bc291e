package proto

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// TestUnknownVersionGetsVersions checks that the server replies to a request
// and a subscribe of a version it does not implement with its versions,
// and serves the connection on.
func TestUnknownVersionGetsVersions(t *testing.T) {
	getAttr := encodeRequest(t, &Request{Op: OpGetAttr, ID: 1, Caller: sampleCaller, Ino: fsapi.RootIno})
	srv := startServer(t, newMemFS(), ServerOptions{})
	conn := rawConn(t, srv.path)
	ctx := testContext(t)
	for i, tc := range []struct {
		name string
		kind uint32
		msg  []byte
	}{
		{"request", busKindRequest, patch(getAttr, 2, Version+1)},
		{"subscribe", busKindSubscribe, patch(appendSubscribe(nil), 2, NotifyVersion+1)},
	} {
		if err := conn.Send(ctx, tc.kind, tc.msg); err != nil {
			t.Fatalf("send %s: %v", tc.name, err)
		}
		msg, err := conn.Recv(ctx)
		if err != nil {
			t.Fatalf("receive the reply to the %s: %v", tc.name, err)
		}
		kind, data := msg.Kind, bytes.Clone(msg.Data)
		msg.Release()
		if kind != busKindVersions {
			t.Fatalf("reply to a %s of another version has bus kind %#x, expected %#x", tc.name, kind, busKindVersions)
		}
		versions, err := decodeVersions(data)
		if err != nil {
			t.Fatalf("decode the reply to the %s: %v", tc.name, err)
		}
		if !slices.Equal(versions.Requests, []uint8{Version}) {
			t.Errorf("request versions %v, expected [%d]", versions.Requests, Version)
		}
		if !slices.Equal(versions.Notify, []uint8{NotifyVersion}) {
			t.Errorf("notification versions %v, expected [%d]", versions.Notify, NotifyVersion)
		}
		id := uint64(100 + i)
		resp := roundTrip(t, conn, &Request{Op: OpGetAttr, ID: id, Ino: fsapi.RootIno})
		if resp.ID != id {
			t.Errorf("GetAttr after the %s: response id %d, expected %d", tc.name, resp.ID, id)
		}
		if resp.Errno != 0 {
			t.Errorf("GetAttr after the %s: errno %d, expected 0", tc.name, resp.Errno)
		}
	}
	if n := srv.srv.malformed.Load(); n != 0 {
		t.Errorf("server counted %d malformed requests, expected none", n)
	}
}

// TestVersionsFailClient checks that a client whose request gets the
// server's versions in reply fails the call at once with a VersionError.
func TestVersionsFailClient(t *testing.T) {
	client := dial(t, fakeDaemon(t, func(*Request) (uint32, []byte) {
		return busKindVersions, appendVersions(nil, []uint8{Version + 1}, []uint8{NotifyVersion})
	}))
	var err error
	within(t, 5*time.Second, "GetAttr answered with versions", func() {
		_, err = client.GetAttr(context.Background(), &fsapi.Caller{}, fsapi.RootIno)
	})
	var versions *VersionError
	if !errors.As(err, &versions) {
		t.Fatalf("GetAttr = %v, expected a VersionError", err)
	}
	if !slices.Equal(versions.Requests, []uint8{Version + 1}) {
		t.Errorf("server versions %v, expected [%d]", versions.Requests, Version+1)
	}
}

// FuzzDecodeVersions checks that decodeVersions never panics and that every
// message it accepts encodes back to exactly its bytes.
func FuzzDecodeVersions(f *testing.F) {
	good := appendVersions(nil, requestVersions, notifyVersions)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(appendVersions(nil, []uint8{1, 2, 3}, []uint8{1}))
	f.Add(appendVersions(nil, nil, []uint8{1}))
	f.Add(append(bytes.Clone(good), 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		versions, err := decodeVersions(data)
		if err != nil {
			return
		}
		if again := appendVersions(nil, versions.Requests, versions.Notify); !bytes.Equal(again, data) {
			t.Fatalf("accepted versions message of %d bytes encodes to %d different bytes", len(data), len(again))
		}
	})
}
