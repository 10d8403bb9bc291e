package journal

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

const benchPayloadSize = 4096

func benchPayload(b *testing.B) []byte {
	payload := make([]byte, benchPayloadSize)
	if _, err := rand.Read(payload); err != nil {
		b.Fatalf("rand.Read: %v", err)
	}
	return payload
}

// openBench opens a journal in a fresh directory with counting, but real,
// fdatasync calls.
func openBench(b *testing.B) (*Log, *countingHooks) {
	e := newEnv(b)
	counter := &countingHooks{}
	opts := e.options(0)
	opts.hooks = counter.hooks()
	return e.openWith(opts), counter
}

// BenchmarkAppendSyncCPU measures the CPU time of the same work as
// BenchmarkAppendSync with fdatasync skipped, so that the disk does not
// hide the cost of encrypting, hashing and signing. "serial" signs once per
// record, "batch64" once per 64 records.
func BenchmarkAppendSyncCPU(b *testing.B) {
	payload := benchPayload(b)
	tags := []uint64{42, 43}
	for _, perSync := range []int{1, 64} {
		name := "serial"
		if perSync > 1 {
			name = fmt.Sprintf("batch%d", perSync)
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			opts := e.options(0)
			opts.hooks = noSyncHooks()
			l := e.openWith(opts)
			b.SetBytes(benchPayloadSize)
			n := 0
			for b.Loop() {
				if _, err := l.Append(tags, payload); err != nil {
					b.Fatalf("Append: %v", err)
				}
				if n++; n%perSync == 0 {
					if err := l.Sync(); err != nil {
						b.Fatalf("Sync: %v", err)
					}
				}
			}
			if err := l.Sync(); err != nil {
				b.Fatalf("Sync: %v", err)
			}
		})
	}
}

// BenchmarkAppendSync measures 4 KiB records made durable. The baseline is
// a bare 4 KiB write and fdatasync on the same file system. "serial" is one
// Append and one Sync per record from one goroutine, and "parallel" the same
// from 8 goroutines per CPU, where group commit shares each fdatasync.
// "batch64" is 64 Appends per Sync from one goroutine.
func BenchmarkAppendSync(b *testing.B) {
	payload := benchPayload(b)
	tags := []uint64{42, 43}

	b.Run("baseline", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "baseline"))
		if err != nil {
			b.Fatalf("Create: %v", err)
		}
		defer f.Close()
		b.SetBytes(benchPayloadSize)
		for b.Loop() {
			if _, err := f.Write(payload); err != nil {
				b.Fatalf("Write: %v", err)
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				b.Fatalf("Fdatasync: %v", err)
			}
		}
	})

	b.Run("serial", func(b *testing.B) {
		l, counter := openBench(b)
		before := counter.fdatasyncs.Load()
		b.SetBytes(benchPayloadSize)
		for b.Loop() {
			if _, err := l.Append(tags, payload); err != nil {
				b.Fatalf("Append: %v", err)
			}
			if err := l.Sync(); err != nil {
				b.Fatalf("Sync: %v", err)
			}
		}
		b.ReportMetric(float64(counter.fdatasyncs.Load()-before)/float64(b.N), "fdatasyncs/op")
	})

	b.Run("parallel", func(b *testing.B) {
		l, counter := openBench(b)
		before := counter.fdatasyncs.Load()
		b.SetBytes(benchPayloadSize)
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Append(tags, payload); err != nil {
					b.Errorf("Append: %v", err)
					return
				}
				if err := l.Sync(); err != nil {
					b.Errorf("Sync: %v", err)
					return
				}
			}
		})
		b.ReportMetric(float64(counter.fdatasyncs.Load()-before)/float64(b.N), "fdatasyncs/op")
	})

	b.Run("batch64", func(b *testing.B) {
		l, counter := openBench(b)
		before := counter.fdatasyncs.Load()
		b.SetBytes(benchPayloadSize)
		n := 0
		for b.Loop() {
			if _, err := l.Append(tags, payload); err != nil {
				b.Fatalf("Append: %v", err)
			}
			if n++; n%64 == 0 {
				if err := l.Sync(); err != nil {
					b.Fatalf("Sync: %v", err)
				}
			}
		}
		if err := l.Sync(); err != nil {
			b.Fatalf("Sync: %v", err)
		}
		b.ReportMetric(float64(counter.fdatasyncs.Load()-before)/float64(b.N), "fdatasyncs/op")
	})
}
