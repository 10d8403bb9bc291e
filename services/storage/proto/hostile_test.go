package proto

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// rawConn dials the server as a bare bus peer that sends whatever the test
// gives it.
func rawConn(t *testing.T, path string) *bus.Conn {
	t.Helper()
	d := bus.Dialer{RingSize: RingSize}
	conn, err := d.Dial(path)
	if err != nil {
		t.Fatalf("bus dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// roundTrip sends a request on conn and returns the next response.
func roundTrip(t *testing.T, conn *bus.Conn, req *Request) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Send(ctx, busKindRequest, encodeRequest(t, req)); err != nil {
		t.Fatalf("send %s request: %v", req.Op, err)
	}
	return receiveResponse(t, conn)
}

// receiveResponse returns the next response on conn.
func receiveResponse(t *testing.T, conn *bus.Conn) Response {
	t.Helper()
	resp, ok := receiveResponseOrVersions(t, conn)
	if !ok {
		t.Fatal("received the server's versions, expected a response")
	}
	return resp
}

// receiveResponseOrVersions returns the next response on conn, or false
// when the next message is the server's versions instead.
func receiveResponseOrVersions(t *testing.T, conn *bus.Conn) (Response, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := conn.Recv(ctx)
	if err != nil {
		t.Fatalf("receive response: %v", err)
	}
	defer msg.Release()
	if msg.Kind == busKindVersions {
		if _, err := decodeVersions(msg.Data); err != nil {
			t.Fatalf("decode versions: %v", err)
		}
		return Response{}, false
	}
	var resp Response
	if err := DecodeResponse(msg.Data, &resp); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	resp.Data = bytes.Clone(resp.Data)
	return resp, true
}

func TestMalformedRequestsAreDropped(t *testing.T) {
	getAttr := encodeRequest(t, &Request{Op: OpGetAttr, ID: 1, Caller: sampleCaller, Ino: fsapi.RootIno})
	write := encodeRequest(t, &Request{Op: OpWrite, ID: 1, Caller: sampleCaller, Ino: 2, Handle: 3, Data: []byte("data")})
	cases := []struct {
		name string
		kind uint32
		msg  []byte
	}{
		{"garbage", busKindRequest, []byte("this is not a request at all")},
		{"empty", busKindRequest, nil},
		{"other bus kind", busKindResponse, getAttr},
		{"unknown op", busKindRequest, patch(getAttr, 3, 0x7f, 0)},
		{"response sent as a request", busKindRequest, encodeResponse(t, &Response{Op: OpGetAttr, ID: 1})},
		{"trailing byte", busKindRequest, append(bytes.Clone(getAttr), 0)},
		{"huge data length", busKindRequest, patch(write, len(write)-8, 0xff, 0xff, 0xff, 0xff)},
		{"data length past the end", busKindRequest, patch(write, len(write)-8, 0, 0, 0, 5)},
		{"large garbage", busKindRequest, bytes.Repeat([]byte{0xff}, 64<<10)},
	}

	srv := startServer(t, newMemFS(), ServerOptions{})
	conn := rawConn(t, srv.path)
	ctx := testContext(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.srv.malformed.Load()
			if err := conn.Send(ctx, tc.kind, tc.msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			// The connection stays up: the next request on it is served.
			id := uint64(100 + i)
			resp := roundTrip(t, conn, &Request{Op: OpGetAttr, ID: id, Ino: fsapi.RootIno})
			if resp.ID != id || resp.Errno != 0 {
				t.Errorf("GetAttr after the malformed request = id %d errno %d, expected id %d errno 0", resp.ID, resp.Errno, id)
			}
			if n := srv.srv.malformed.Load() - before; n != 1 {
				t.Errorf("server counted %d malformed requests, expected 1", n)
			}
		})
	}
	if len(srv.logs.Lines("dropped a malformed request")) == 0 {
		t.Errorf("server did not log the malformed requests; logs:\n%s", srv.logs)
	}
}

func TestDuplicateRequestIDIsDropped(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	letGo := srv.fs.hold(OpSyncFS)
	defer letGo()
	conn := rawConn(t, srv.path)
	ctx := testContext(t)

	syncFS := encodeRequest(t, &Request{Op: OpSyncFS, ID: 5})
	if err := conn.Send(ctx, busKindRequest, syncFS); err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, "the file system has the SyncFS", func() bool { return len(srv.fs.callsOf(OpSyncFS)) == 1 })
	if err := conn.Send(ctx, busKindRequest, syncFS); err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, "the server counts the duplicate", func() bool { return srv.srv.malformed.Load() == 1 })

	letGo()
	msg, err := conn.Recv(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	var resp Response
	if err := DecodeResponse(msg.Data, &resp); err != nil || resp.ID != 5 || resp.Errno != 0 {
		t.Errorf("response = %+v, %v; expected a successful response to request 5", resp, err)
	}
	msg.Release()
	if n := len(srv.fs.callsOf(OpSyncFS)); n != 1 {
		t.Errorf("file system saw %d SyncFS calls, expected 1", n)
	}
}

// TestHostileWriteMemory writes the shared memory of Write requests while
// the server reads them. In even rounds the peer changes only the data,
// so the request still decodes and the server writes whatever data it
// copies. In odd rounds it also changes the header and the data length.
// The peer may garble its own writes, but the server must keep running
// and serving.
func TestHostileWriteMemory(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	conn := rawConn(t, srv.path)
	ctx := testContext(t)

	created := roundTrip(t, conn, &Request{Op: OpCreate, ID: 1, Caller: sampleCaller, Ino: fsapi.RootIno, Name: "f", Mode: 0o644, Flags: syscall.O_RDWR})
	if created.Errno != 0 {
		t.Fatalf("create: errno %d", created.Errno)
	}
	write := encodeRequest(t, &Request{Op: OpWrite, ID: 2, Caller: sampleCaller, Ino: created.Attr.Ino, Handle: created.Handle, Data: make([]byte, fsapi.MaxWrite)})
	dataStart := len(write) - fsapi.MaxWrite

	rng := rand.New(rand.NewPCG(1, 2))
	const rounds = 20
	for round := range rounds {
		dataOnly := round%2 == 0
		writeID := uint64(1000 + round)
		r, err := conn.Reserve(ctx, busKindRequest, len(write))
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		mem := r.Bytes()
		copy(mem, write)
		binary.BigEndian.PutUint64(mem[5:], writeID)
		if err := r.Commit(); err != nil {
			t.Fatalf("commit: %v", err)
		}
		// Keep writing the committed payload while the server decodes and
		// writes it.
		stop := make(chan struct{})
		var scribbling sync.WaitGroup
		scribbling.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if dataOnly {
					mem[dataStart+rng.IntN(fsapi.MaxWrite)] = byte(rng.Uint32())
					continue
				}
				mem[rng.IntN(len(mem))] = byte(rng.Uint32())
				binary.BigEndian.PutUint32(mem[dataStart-4:], rng.Uint32())
			}
		})
		time.Sleep(2 * time.Millisecond)
		close(stop)
		scribbling.Wait()

		// Whatever became of the write, the connection still serves.
		id := uint64(5000 + round)
		if err := conn.Send(ctx, busKindRequest, encodeRequest(t, &Request{Op: OpGetAttr, ID: id, Ino: fsapi.RootIno})); err != nil {
			t.Fatalf("send GetAttr: %v", err)
		}
		var served, written *Response
		for served == nil || (dataOnly && written == nil) {
			resp, ok := receiveResponseOrVersions(t, conn)
			if !ok {
				// The scribbling hit the version byte, and the server
				// replied with its versions.
				continue
			}
			switch resp.ID {
			case id:
				served = &resp
			case writeID:
				written = &resp
			}
			// Other responses are to garbled writes of earlier rounds.
		}
		if served.Errno != 0 {
			t.Fatalf("GetAttr after hostile write %d: errno %d", round, served.Errno)
		}
		if dataOnly && (written.Errno != 0 || written.Count != fsapi.MaxWrite) {
			t.Errorf("write %d with only its data changed: errno %d, %d bytes written, expected %d bytes", round, written.Errno, written.Count, fsapi.MaxWrite)
		}
	}
	if n := srv.srv.inPlaceWrites.Load(); n < rounds/2 {
		t.Errorf("server counted %d in-place writes, expected at least the %d whose header was left alone", n, rounds/2)
	}

	client := dial(t, srv.path)
	if _, err := client.GetAttr(ctx, &fsapi.Caller{}, fsapi.RootIno); err != nil {
		t.Errorf("GetAttr on a new connection: %v", err)
	}
}

func TestLargeWriteAndReadInPlace(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := testContext(t)
	c := &fsapi.Caller{}
	attr, h, err := client.Create(ctx, c, fsapi.RootIno, "f", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	small := []byte("below the copy threshold")
	if _, err := client.Write(ctx, c, attr.Ino, h, 0, small); err != nil {
		t.Fatalf("small Write: %v", err)
	}
	if n := srv.srv.inPlaceWrites.Load(); n != 0 {
		t.Errorf("a %d-byte Write counted as in place (%d), expected a copy", len(small), n)
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if n, err := client.Write(ctx, c, attr.Ino, h, 0, data); err != nil || n != len(data) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n := srv.srv.inPlaceWrites.Load(); n != 1 {
		t.Errorf("server counted %d in-place Writes after a 1 MiB Write, expected 1", n)
	}

	view, err := client.ReadView(ctx, c, attr.Ino, h, 0, len(data))
	if err != nil {
		t.Fatalf("ReadView: %v", err)
	}
	rv := view.(*readView)
	if !rv.msg.msg.InPlace() {
		t.Error("1 MiB ReadView returned a copy, expected a view into shared memory")
	}
	if !bytes.Equal(view.Bytes(), data) {
		t.Error("ReadView returned other bytes than were written")
	}
	view.Release()
	view.Release()

	view, err = client.ReadView(ctx, c, attr.Ino, h, 0, 100)
	if err != nil {
		t.Fatalf("small ReadView: %v", err)
	}
	if view.(*readView).msg.msg.InPlace() {
		t.Error("100-byte ReadView returned a view, expected a copy below the copy threshold")
	}
	if !bytes.Equal(view.Bytes(), data[:100]) {
		t.Error("small ReadView returned other bytes than were written")
	}
	view.Release()
}

// TestConcurrentViewsDoNotDeadlock runs many 1 MiB writes and reads at
// once, with the read views held for a while, so that the rings fill and
// senders wait for space that held views free only later.
func TestConcurrentViewsDoNotDeadlock(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := testContext(t)
	c := &fsapi.Caller{}

	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			attr, h, err := client.Create(ctx, c, fsapi.RootIno, "f"+string(rune('a'+w)), 0o644, syscall.O_RDWR)
			if err != nil {
				errs <- err
				return
			}
			data := bytes.Repeat([]byte{byte(w)}, fsapi.MaxWrite)
			for range 8 {
				if _, err := client.Write(ctx, c, attr.Ino, h, 0, data); err != nil {
					errs <- err
					return
				}
				view, err := client.ReadView(ctx, c, attr.Ino, h, 0, fsapi.MaxWrite)
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Millisecond) // hold the view, as go-fuse does while it writes to /dev/fuse
				ok := bytes.Equal(view.Bytes(), data)
				view.Release()
				if !ok {
					errs <- errors.New("read returned other bytes than were written")
					return
				}
			}
		})
	}
	within(t, 60*time.Second, "concurrent 1 MiB writes and reads", wg.Wait)
	close(errs)
	for err := range errs {
		t.Errorf("worker: %v", err)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeDaemon accepts one bus connection, receives one request and sends
// back the message that reply returns, which may be anything.
func fakeDaemon(t *testing.T, reply func(req *Request) (uint32, []byte)) string {
	t.Helper()
	path := t.TempDir() + "/fake.sock"
	l, err := bus.Listen(path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		ctx := context.Background()
		msg, err := conn.Recv(ctx)
		if err != nil {
			return
		}
		var req Request
		err = DecodeRequest(msg.Data, &req)
		msg.Release()
		if err != nil {
			return
		}
		kind, data := reply(&req)
		conn.Send(ctx, kind, data)
		conn.Recv(ctx) // until the client goes
	}()
	return path
}

func TestInvalidResponseFailsConnection(t *testing.T) {
	cases := []struct {
		name  string
		reply func(req *Request) (uint32, []byte)
	}{
		{"garbage", func(*Request) (uint32, []byte) { return busKindResponse, []byte("garbage") }},
		{"other bus kind", func(req *Request) (uint32, []byte) {
			return busKindRequest, encodeResponse(t, &Response{Op: OpRead, ID: req.ID})
		}},
		{"response of another op", func(req *Request) (uint32, []byte) {
			return busKindResponse, encodeResponse(t, &Response{Op: OpLookup, ID: req.ID})
		}},
		{"read longer than requested", func(req *Request) (uint32, []byte) {
			return busKindResponse, encodeResponse(t, &Response{Op: OpRead, ID: req.ID, Data: make([]byte, req.Size+1)})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := dial(t, fakeDaemon(t, tc.reply))
			var err error
			within(t, 5*time.Second, "Read with an invalid response", func() {
				_, err = client.Read(context.Background(), &fsapi.Caller{}, 2, 1, 0, make([]byte, 4))
			})
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("Read = %v, expected EIO", err)
			}
		})
	}
}

// TestPutWriteRequestMatchesEncoder checks that a Write request written in
// place, from its encoding with empty data and the data, is the encoding
// that AppendRequest makes, and so decodes.
func TestPutWriteRequestMatchesEncoder(t *testing.T) {
	if layout := requestLayout[OpWrite]; layout[len(layout)-1] != argData {
		t.Fatalf("the Write layout ends with %s, but putWriteRequest needs the data last", layout[len(layout)-1])
	}
	for _, size := range []int{0, 1, 4 << 10, fsapi.MaxWrite} {
		data := bytes.Repeat([]byte{0xa5}, size)
		req := Request{Op: OpWrite, ID: 9, Caller: sampleCaller, Ino: 2, Handle: 3, Offset: 4096}
		head := encodeRequest(t, &req)
		req.Data = data
		want := encodeRequest(t, &req)

		got := make([]byte, len(head)+len(data))
		putWriteRequest(got, head, data)
		if !bytes.Equal(got, want) {
			t.Errorf("%d-byte Write written in place differs from AppendRequest's encoding", size)
		}
	}
}
