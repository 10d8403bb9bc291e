package hostmode

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The benchmarks run the same loop on a directory of the host's file system
// (the baseline) and on a node's mount, in one run, so that their ratio is
// what the block tree costs on this machine.

// benchmarkTargets returns the baseline directory and a mount of a running
// node. The node stops when the benchmark ends.
func benchmarkTargets(b *testing.B) map[string]string {
	requireHost(b)
	state, mount := newNodeDirs(b)
	n := startNode(b, state, mount)
	b.Cleanup(n.stop)
	return map[string]string{"host": b.TempDir(), "blocktree": mount}
}

// BenchmarkWriteFsync writes 4 KiB at a new offset and fsyncs, as a database
// commit does.
func BenchmarkWriteFsync(b *testing.B) {
	block := bytes.Repeat([]byte{'x'}, 4096)
	for name, dir := range benchmarkTargets(b) {
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(dir, "fsync-bench"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(int64(len(block)))
			i := int64(0)
			for b.Loop() {
				if _, err := f.WriteAt(block, i*int64(len(block))%(64<<20)); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkSequentialWrite writes a 64 MiB file in 1 MiB requests and
// fsyncs it once at the end.
func BenchmarkSequentialWrite(b *testing.B) {
	chunk := bytes.Repeat([]byte{'y'}, 1<<20)
	const fileSize = 64 << 20
	for name, dir := range benchmarkTargets(b) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(fileSize)
			for b.Loop() {
				path := filepath.Join(dir, "sequential-bench")
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				for off := 0; off < fileSize; off += len(chunk) {
					if _, err := f.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				f.Close()
				os.Remove(path)
			}
		})
	}
}

// BenchmarkReadBack reads a 64 MiB file in 1 MiB requests, opening it anew
// each time. The host serves it from its page cache; through the mount every
// open makes the kernel drop its cached copy, so the bytes come from the
// daemon, which checks and decrypts nothing here (the data is resident in
// the engine) but does cross FUSE and the bus.
func BenchmarkReadBack(b *testing.B) {
	chunk := bytes.Repeat([]byte{'z'}, 1<<20)
	const fileSize = 64 << 20
	for name, dir := range benchmarkTargets(b) {
		path := filepath.Join(dir, "read-bench")
		data := bytes.Repeat(chunk, fileSize/len(chunk))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, len(chunk))
			b.SetBytes(fileSize)
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				for {
					n, err := f.Read(buf)
					if n == 0 || err != nil {
						break
					}
				}
				f.Close()
			}
		})
	}
}
