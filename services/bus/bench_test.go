package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/msgbench"
)

// The benchmarks compare the bus with a Unix stream socket (the baseline)
// and with a pair of pipes, between this process and a peer process that
// TestBenchPeer runs. Each sub-benchmark starts its own peer. Every bus
// and pipe case reports ratios against the Unix socket case of the same
// run: speedup-vs-unix for the time per operation (not for paced round
// trips, whose time per operation is the interval) and
// p50-speedup-vs-unix for the median round trip.

// benchPeerEnv names the variable that makes TestBenchPeer act as the peer
// of a benchmark. Its value is "TRANSPORT MODE SIZE RINGSIZE PATH".
const benchPeerEnv = "BUS_BENCH_PEER"

// Message kinds of the benchmark exchange on the bus.
const (
	kindBenchData = 1 // a message to echo or to consume
	kindBenchEnd  = 2 // the end of a stream; the peer acknowledges it
)

// Transports and the peer's modes.
const (
	transportUnix = "unix"
	transportPipe = "pipe"
	transportBus  = "bus"

	modeEcho = "echo" // send every message back
	modeSink = "sink" // consume messages, acknowledge the end of the stream
)

var baselines msgbench.Baselines

// msgStream carries messages of a size that both ends know.
type msgStream interface {
	send(p []byte) error
	// recv receives the next message of n bytes and calls fn with it, in
	// place on the bus. It returns io.EOF when the peer ended its stream.
	recv(n int, fn func(p []byte) error) error
	// endStream signals the peer that no more messages follow.
	endStream() error
}

// byteStream carries messages over a Unix socket or a pair of pipes. The
// receiver reads each message into its own buffer.
type byteStream struct {
	r          io.Reader
	w          io.Writer
	closeWrite func() error
	buf        []byte
}

func (s *byteStream) send(p []byte) error {
	_, err := s.w.Write(p)
	return err
}

func (s *byteStream) recv(n int, fn func([]byte) error) error {
	if len(s.buf) < n {
		s.buf = make([]byte, n)
	}
	if _, err := io.ReadFull(s.r, s.buf[:n]); err != nil {
		return err
	}
	return fn(s.buf[:n])
}

func (s *byteStream) endStream() error { return s.closeWrite() }

// busStream carries messages over a bus connection.
type busStream struct{ c *Conn }

func (s busStream) send(p []byte) error {
	return s.c.Send(context.Background(), kindBenchData, p)
}

func (s busStream) recv(n int, fn func([]byte) error) error {
	msg, err := s.c.Recv(context.Background())
	if errors.Is(err, ErrPeerGone) {
		return io.EOF
	}
	if err != nil {
		return err
	}
	defer msg.Release()
	if msg.Kind == kindBenchEnd {
		return io.EOF
	}
	if len(msg.Data) != n {
		return fmt.Errorf("message of %d bytes, expected %d", len(msg.Data), n)
	}
	return fn(msg.Data)
}

func (s busStream) endStream() error {
	return s.c.Send(context.Background(), kindBenchEnd, nil)
}

// touch reads the first and last byte of p, which is what a receiver
// that reads in place costs at the least.
func touch(p []byte) error {
	if p[0]+p[len(p)-1] == 0xff {
		return errors.New("unexpected pattern bytes")
	}
	return nil
}

func ignore([]byte) error { return nil }

// TestBenchPeer is the peer process of the benchmarks. It does nothing
// unless benchPeerEnv is set.
func TestBenchPeer(t *testing.T) {
	spec := os.Getenv(benchPeerEnv)
	if spec == "" {
		t.Skip("runs only as the peer process of the benchmarks")
	}
	if err := runBenchPeer(spec); err != nil {
		fmt.Fprintf(os.Stderr, "benchmark peer %q: %v\n", spec, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runBenchPeer(spec string) error {
	var transport, mode, path string
	var size, ringSize int
	if _, err := fmt.Sscan(spec, &transport, &mode, &size, &ringSize, &path); err != nil {
		return fmt.Errorf("parse %s: %w", benchPeerEnv, err)
	}

	var s msgStream
	switch transport {
	case transportUnix:
		c, err := net.Dial("unix", path)
		if err != nil {
			return err
		}
		defer c.Close()
		s = &byteStream{r: c, w: c, closeWrite: c.(*net.UnixConn).CloseWrite}
	case transportPipe:
		// fd 3 is the read end of the parent's pipe, fd 4 the write end
		// of the pipe to the parent.
		r, w := os.NewFile(3, "from parent"), os.NewFile(4, "to parent")
		defer r.Close()
		s = &byteStream{r: r, w: w, closeWrite: w.Close}
	case transportBus:
		c, err := (&Dialer{RingSize: ringSize}).Dial(path)
		if err != nil {
			return err
		}
		defer c.Close()
		s = busStream{c}
	default:
		return fmt.Errorf("unknown transport %q", transport)
	}

	handle := touch
	if mode == modeEcho {
		handle = s.send
	}
	for {
		err := s.recv(size, handle)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if mode == modeSink {
		return s.send([]byte{1})
	}
	return nil
}

// startPeer starts a peer process in mode for messages of size bytes and
// returns this process's end of the connection to it. The bus connection
// is also returned for its counters; it is nil for the other transports.
// The peer is stopped when b ends.
func startPeer(b *testing.B, transport, mode string, size, ringSize int) (msgStream, *Conn, int) {
	b.Helper()
	path := filepath.Join(b.TempDir(), transport+".sock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchPeer$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d %d %s", benchPeerEnv, transport, mode, size, ringSize, path))
	cmd.Stderr = os.Stderr

	var s msgStream
	var conn *Conn
	accept := func() {}
	switch transport {
	case transportUnix:
		ln, err := net.Listen("unix", path)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		accept = func() {
			c, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			s = &byteStream{r: c, w: c, closeWrite: c.(*net.UnixConn).CloseWrite}
		}
	case transportPipe:
		toPeerR, toPeerW, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		fromPeerR, fromPeerW, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{toPeerR, fromPeerW}
		accept = func() {
			toPeerR.Close()
			fromPeerW.Close()
			b.Cleanup(func() {
				toPeerW.Close()
				fromPeerR.Close()
			})
			s = &byteStream{r: fromPeerR, w: toPeerW, closeWrite: toPeerW.Close}
		}
	case transportBus:
		ln, err := Listen(path)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		accept = func() {
			c, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			s, conn = busStream{c}, c
		}
	}

	if err := cmd.Start(); err != nil {
		b.Fatalf("start benchmark peer: %v", err)
	}
	// Registered before accept's cleanups, so it runs after them: the
	// peer reads the end of its connection and exits.
	b.Cleanup(func() {
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	accept()
	return s, conn, cmd.Process.Pid
}

// processCPU returns the CPU time that process pid has used so far, in
// the kernel's clock ticks of 10 ms.
func processCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which ends at the last ')'.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	var ticks int64
	for _, f := range fields[11:13] { // utime and stime
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// reportSignals reports the bus end's eventfd writes per operation.
func reportSignals(b *testing.B, conn *Conn) {
	if conn != nil && b.N > 0 {
		b.ReportMetric(float64(conn.SignalsSent())/float64(b.N), "signals/op")
	}
}

var transports = []string{transportUnix, transportPipe, transportBus}

// BenchmarkRoundTrip sends a 64-byte message and waits for the peer to
// send it back, back to back.
func BenchmarkRoundTrip(b *testing.B) {
	benchmarkRoundTrip(b, true, func(b *testing.B, roundTrip func() error) float64 {
		return msgbench.RoundTrips(b, 0, roundTrip)
	})
}

// BenchmarkPacedRoundTrip is BenchmarkRoundTrip with one request every
// millisecond, so that each side goes to sleep between requests and the
// figures include waking it.
func BenchmarkPacedRoundTrip(b *testing.B) {
	benchmarkRoundTrip(b, false, func(b *testing.B, roundTrip func() error) float64 {
		return msgbench.RoundTrips(b, time.Millisecond, roundTrip)
	})
}

// BenchmarkIrregularRoundTrip is BenchmarkPacedRoundTrip with a random gap
// between requests, so that the peer cannot foresee the next request and
// sleep with a timer until it comes. The gap requested is 0.5 to 1.5 ms,
// which Go's timers turn into about 1 or 2 ms at random.
func BenchmarkIrregularRoundTrip(b *testing.B) {
	benchmarkRoundTrip(b, false, func(b *testing.B, roundTrip func() error) float64 {
		return msgbench.IrregularRoundTrips(b, 500*time.Microsecond, 1500*time.Microsecond, roundTrip)
	})
}

// benchmarkRoundTrip times round trips of 64 bytes with timeRoundTrips,
// which returns their median. backToBack is true when the round trips
// follow each other at once, so that the time per operation compares too.
func benchmarkRoundTrip(b *testing.B, backToBack bool, timeRoundTrips func(b *testing.B, roundTrip func() error) float64) {
	const size = 64
	for _, transport := range transports {
		b.Run(transport, func(b *testing.B) {
			s, conn, pid := startPeer(b, transport, modeEcho, size, DefaultRingSize)
			buf := pattern(size, 1)
			cpuBefore := processCPU(b, pid)
			p50 := timeRoundTrips(b, func() error {
				if err := s.send(buf); err != nil {
					return err
				}
				return s.recv(size, ignore)
			})
			b.ReportMetric(float64((processCPU(b, pid)-cpuBefore).Nanoseconds())/float64(b.N), "peer-cpu-ns/op")
			reportSignals(b, conn)
			baseline := filepath.Dir(b.Name()) + "/" + transportUnix
			if transport == transportUnix {
				baselines.Record(b, baseline, msgbench.NsPerOp(b))
				baselines.Record(b, baseline+"/p50", p50)
				return
			}
			// With pauses between requests the time per operation is
			// mostly the pause, so only the percentiles compare.
			if backToBack {
				baselines.ReportRatio(b, baseline, msgbench.NsPerOp(b), "speedup-vs-unix")
			}
			baselines.ReportRatio(b, baseline+"/p50", p50, "p50-speedup-vs-unix")
		})
	}
}

// BenchmarkThroughput streams messages one way to a peer that consumes
// them. The bus peer reads the first and last byte of each message in
// place; the socket and pipe peers read each message into a buffer.
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name     string
		size     int
		ringSize int
	}{
		{"64B", 64, DefaultRingSize},
		{"1MiB", 1 << 20, 4 << 20},
	} {
		for _, transport := range transports {
			b.Run(tc.name+"/"+transport, func(b *testing.B) {
				s, conn, _ := startPeer(b, transport, modeSink, tc.size, tc.ringSize)
				payload := pattern(tc.size, 1)
				b.SetBytes(int64(tc.size))
				b.ResetTimer()
				for range b.N {
					if err := s.send(payload); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.endStream(); err != nil {
					b.Fatal(err)
				}
				if err := s.recv(1, ignore); err != nil {
					b.Fatalf("acknowledgement of the stream's end: %v", err)
				}
				b.StopTimer()
				reportSignals(b, conn)
				if transport == transportUnix {
					baselines.Record(b, b.Name(), msgbench.NsPerOp(b))
					return
				}
				baselines.ReportRatio(b, filepath.Dir(b.Name())+"/"+transportUnix, msgbench.NsPerOp(b), "speedup-vs-unix")
			})
		}
	}
}
