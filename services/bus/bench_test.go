package bus

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// The benchmarks run each case twice, over a Unix stream socket (the
// baseline) and over the bus, in two goroutines of one process. The two
// ends of a bus connection map the memfd separately, as two processes
// would. The bus case reports speedup-vs-unix, which is the baseline's
// ns/op from the same run divided by its own.

var (
	baselineMu sync.Mutex
	baselineNs = map[string]float64{}
)

func recordBaseline(b *testing.B) {
	baselineMu.Lock()
	defer baselineMu.Unlock()
	baselineNs[b.Name()] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}

// reportSpeedup reports the baseline's time per operation divided by b's.
// baselineName is the full name of the baseline sub-benchmark.
func reportSpeedup(b *testing.B, baselineName string) {
	baselineMu.Lock()
	base, ok := baselineNs[baselineName]
	baselineMu.Unlock()
	if !ok || b.N == 0 {
		return
	}
	own := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(base/own, "speedup-vs-unix")
}

// unixPair returns both ends of a Unix stream socket connection.
func unixPair(b *testing.B) (client, server *net.UnixConn) {
	b.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(b.TempDir(), "unix.sock"), Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.UnixConn, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			b.Error(err)
		}
		accepted <- c
	}()
	client, err = net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	b.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// BenchmarkRoundTrip sends a 64-byte message and waits for the peer to send
// it back.
func BenchmarkRoundTrip(b *testing.B) {
	const size = 64

	b.Run("unix", func(b *testing.B) {
		client, server := unixPair(b)
		go func() {
			buf := make([]byte, size)
			for {
				if _, err := io.ReadFull(server, buf); err != nil {
					return
				}
				if _, err := server.Write(buf); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, size)
		b.ResetTimer()
		for range b.N {
			if _, err := client.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(client, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		recordBaseline(b)
	})

	b.Run("bus", func(b *testing.B) {
		client, server := connPair(b, Dialer{}, ListenConfig{})
		go func() {
			ctx := context.Background()
			for {
				msg, err := server.Recv(ctx)
				if err != nil {
					return
				}
				err = server.Send(ctx, msg.Kind, msg.Data)
				msg.Release()
				if err != nil {
					return
				}
			}
		}()
		ctx := context.Background()
		buf := make([]byte, size)
		b.ResetTimer()
		for range b.N {
			if err := client.Send(ctx, 1, buf); err != nil {
				b.Fatal(err)
			}
			msg, err := client.Recv(ctx)
			if err != nil {
				b.Fatal(err)
			}
			msg.Release()
		}
		b.StopTimer()
		reportSpeedup(b, "BenchmarkRoundTrip/unix")
		b.ReportMetric(float64(client.SignalsSent()+server.SignalsSent())/float64(b.N), "signals/op")
	})
}

// BenchmarkThroughput streams messages one way. The bus receiver looks at
// the first and last byte of each message in place; the socket receiver
// reads each message into a buffer.
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name     string
		size     int
		ringSize int
	}{
		{"4KiB", 4 << 10, DefaultRingSize},
		{"1MiB", 1 << 20, 4 << 20},
	} {
		b.Run(tc.name+"/unix", func(b *testing.B) {
			client, server := unixPair(b)
			done := make(chan error, 1)
			n := b.N
			go func() {
				buf := make([]byte, tc.size)
				for range n {
					if _, err := io.ReadFull(server, buf); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			payload := pattern(tc.size, 1)
			b.SetBytes(int64(tc.size))
			b.ResetTimer()
			for range n {
				if _, err := client.Write(payload); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			recordBaseline(b)
		})

		b.Run(tc.name+"/bus", func(b *testing.B) {
			client, server := connPair(b, Dialer{RingSize: tc.ringSize}, ListenConfig{})
			done := make(chan error, 1)
			n := b.N
			go func() {
				ctx := context.Background()
				var sum byte
				for range n {
					msg, err := server.Recv(ctx)
					if err != nil {
						done <- err
						return
					}
					sum += msg.Data[0] + msg.Data[len(msg.Data)-1]
					msg.Release()
				}
				_ = sum
				done <- nil
			}()
			ctx := context.Background()
			payload := pattern(tc.size, 1)
			b.SetBytes(int64(tc.size))
			b.ResetTimer()
			for range n {
				if err := client.Send(ctx, 1, payload); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportSpeedup(b, "BenchmarkThroughput/"+tc.name+"/unix")
			b.ReportMetric(float64(client.SignalsSent()+server.SignalsSent())/float64(n), "signals/op")
		})
	}
}
