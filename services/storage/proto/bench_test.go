package proto

import (
	"context"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func BenchmarkRoundTrip(b *testing.B) {
	client, attr, _ := benchSetup(b)
	ctx := context.Background()
	c := &fsapi.Caller{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.GetAttr(ctx, c, attr.Ino); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRoundTripParallel(b *testing.B) {
	client, attr, _ := benchSetup(b)
	c := &fsapi.Caller{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := client.GetAttr(ctx, c, attr.Ino); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkWrite1MiB(b *testing.B) {
	client, attr, h := benchSetup(b)
	ctx := context.Background()
	c := &fsapi.Caller{}
	data := make([]byte, fsapi.MaxWrite)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := client.Write(ctx, c, attr.Ino, h, 0, data); err != nil || n != len(data) {
			b.Fatalf("Write = %d, %v", n, err)
		}
	}
}

func BenchmarkRead1MiB(b *testing.B) {
	client, attr, h := benchSetup(b)
	ctx := context.Background()
	c := &fsapi.Caller{}
	dest := make([]byte, fsapi.MaxWrite)
	if _, err := client.Write(ctx, c, attr.Ino, h, 0, dest); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(dest)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := client.Read(ctx, c, attr.Ino, h, 0, dest); err != nil || n != len(dest) {
			b.Fatalf("Read = %d, %v", n, err)
		}
	}
}

// BenchmarkReadView1MiB reads as the FUSE server does: the data stays in
// the shared memory, where the caller reads it before it releases it.
func BenchmarkReadView1MiB(b *testing.B) {
	client, attr, h := benchSetup(b)
	ctx := context.Background()
	c := &fsapi.Caller{}
	if _, err := client.Write(ctx, c, attr.Ino, h, 0, make([]byte, fsapi.MaxWrite)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fsapi.MaxWrite)
	b.ReportAllocs()
	for b.Loop() {
		view, err := client.ReadView(ctx, c, attr.Ino, h, 0, fsapi.MaxWrite)
		if err != nil || len(view.Bytes()) != fsapi.MaxWrite {
			b.Fatalf("ReadView = %v", err)
		}
		view.Release()
	}
}

// benchSetup starts a server on a memFS that keeps no call records, and
// returns a client, a file and a handle open on it.
func benchSetup(b *testing.B) (*Client, fsapi.Attr, fsapi.HandleID) {
	b.Helper()
	fs := newMemFS()
	fs.unrecorded = true
	srv := startServer(b, fs, ServerOptions{})
	client := dial(b, srv.path)
	attr, h, err := client.Create(context.Background(), &fsapi.Caller{}, fsapi.RootIno, "bench", 0o644, syscall.O_RDWR)
	if err != nil {
		b.Fatalf("Create: %v", err)
	}
	return client, attr, h
}
