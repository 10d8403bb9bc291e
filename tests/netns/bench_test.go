package netns

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/internal/msgbench"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/node/state"
)

// BenchmarkBetweenNodes compares netd with a plain TCP connection (the
// baseline) and a TLS 1.3 connection over the same veth pair, between
// two network namespaces, A and B. Each transport reaches an echo server
// in B: for netd it is node B's echo service behind both nodes' netd, for
// TCP and TLS it is echoPeer, run in B by this test binary. The client is
// this process: it reaches node A's netd through A's run directory, and
// opens the TCP and TLS connections from a socket made in A.
//
// The tls-batched case is TLS 1.3 whose two ends write their records in
// batches, as netd's links do. crypto/tls writes each record with a write
// system call of its own, and batchedConn collects them until a flush, so
// this case shows what TLS costs without those calls.
//
// Throughput is measured through the echo as well. Each operation writes
// one message of the row's size, a goroutine reads the echoes, and MB/s
// counts the bytes of one direction, although both directions carry
// them. On netd a 1 MiB operation is four bus messages of 256 KiB,
// because netd relays messages of at most route.MaxMessage (512 KiB less
// 8 bytes).
func BenchmarkBetweenNodes(b *testing.B) {
	requireHost(b)
	p := prefix()
	nsA, nsB := namespace(b, p+"a"), namespace(b, p+"b")
	addrA, addrB := pointToPoint(b, nsA, nsB)

	na, nb := newNode(b, nsA, addrA), newNode(b, nsB, addrB)
	for _, n := range []*node{na, nb} {
		n.start()
		n.stop()
	}
	na.grant(nb, nb.tree()+"/dev")
	na.addPeer(nb)
	na.start()
	nb.start()

	certFile, keyFile, roots := writeBenchCert(b, addrB)
	startEchoPeer(b, nsB, addrB, certFile, keyFile)

	dialers := []struct {
		name string
		dial func(b *testing.B) echoConn
	}{
		{"tcp", func(b *testing.B) echoConn {
			return newStreamConn(dialInNamespace(b, nsA, net.JoinHostPort(addrB, echoPeerTCPPort)))
		}},
		{"tls", func(b *testing.B) echoConn {
			raw := dialInNamespace(b, nsA, net.JoinHostPort(addrB, echoPeerTLSPort))
			c := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: addrB})
			if err := c.Handshake(); err != nil {
				b.Fatalf("TLS handshake with the echo peer: %v", err)
			}
			return newStreamConn(c)
		}},
		{"tls-batched", func(b *testing.B) echoConn {
			raw := &batchedConn{Conn: dialInNamespace(b, nsA, net.JoinHostPort(addrB, echoPeerBatchedTLSPort))}
			c := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: addrB})
			if err := c.Handshake(); err != nil {
				b.Fatalf("TLS handshake with the echo peer: %v", err)
			}
			raw.startBatching()
			s := newStreamConn(c)
			s.flush = raw.flush
			return s
		}},
		{"netd", func(b *testing.B) echoConn { return dialNetdEcho(b, na, nb) }},
	}

	var baselines msgbench.Baselines
	// ratio records the tcp case's figures and reports the others' ratios
	// to them. Paced round trips report only the median's ratio, because
	// their time per operation is the interval.
	ratio := func(b *testing.B, name string, paced bool, p50 float64) {
		baseline := filepath.Dir(b.Name()) + "/tcp"
		if name == "tcp" {
			baselines.Record(b, baseline, msgbench.NsPerOp(b))
			baselines.Record(b, baseline+"/p50", p50)
			return
		}
		if !paced {
			baselines.ReportRatio(b, baseline, msgbench.NsPerOp(b), "speedup-vs-tcp")
		}
		if p50 > 0 {
			baselines.ReportRatio(b, baseline+"/p50", p50, "p50-speedup-vs-tcp")
		}
	}

	for _, round := range []struct {
		name     string
		interval time.Duration
	}{
		{"RoundTrip", 0},
		{"PacedRoundTrip", time.Millisecond},
	} {
		for _, d := range dialers {
			b.Run(round.name+"/"+d.name, func(b *testing.B) {
				c := d.dial(b)
				msg := make([]byte, 64)
				p50 := msgbench.RoundTrips(b, round.interval, func() error {
					if err := c.write(msg); err != nil {
						return err
					}
					_, err := c.read()
					return err
				})
				ratio(b, d.name, round.interval > 0, p50)
			})
		}
	}

	for _, size := range []struct {
		name string
		n    int
	}{
		{"64B", 64},
		{"1MiB", 1 << 20},
	} {
		for _, d := range dialers {
			b.Run("Throughput/"+size.name+"/"+d.name, func(b *testing.B) {
				c := d.dial(b)
				benchmarkEchoStream(b, c, size.n)
				ratio(b, d.name, false, 0)
			})
		}
	}

	na.stop()
	nb.stop()
}

// benchmarkEchoStream writes b.N messages of size bytes to c while a
// goroutine reads the echoes, and stops the timer when every echo is in.
func benchmarkEchoStream(b *testing.B, c echoConn, size int) {
	payload := make([]byte, size)
	want := int64(b.N) * int64(size)
	echoed := make(chan error, 1)
	b.SetBytes(int64(size))
	b.ResetTimer()
	go func() {
		var got int64
		for got < want {
			n, err := c.read()
			if err != nil {
				echoed <- fmt.Errorf("after %d of %d echoed bytes: %w", got, want, err)
				return
			}
			got += int64(n)
		}
		echoed <- nil
	}()
	for range b.N {
		if err := c.write(payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-echoed; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// echoConn is the client's end of a connection to an echo server.
type echoConn interface {
	write(p []byte) error
	// read returns the number of echoed bytes that arrived; at most 64
	// KiB for a stream, one message for netd.
	read() (int, error)
}

// streamConn is a TCP or TLS connection.
type streamConn struct {
	conn  net.Conn
	buf   []byte
	flush func() error // nil unless the connection's writes need a flush
}

func newStreamConn(c net.Conn) *streamConn {
	return &streamConn{conn: c, buf: make([]byte, 64<<10)}
}

func (c *streamConn) write(p []byte) error {
	if _, err := c.conn.Write(p); err != nil {
		return err
	}
	if c.flush != nil {
		return c.flush()
	}
	return nil
}

// batchedConn is a TCP connection below a TLS connection. After
// startBatching, which comes after the handshake, it collects what the
// TLS connection writes until flush. Only one goroutine may write.
type batchedConn struct {
	net.Conn
	w *bufio.Writer // nil before startBatching
}

// batchSize is the size in bytes of a batchedConn's buffer, the same as
// a netd link's.
const batchSize = 64 << 10

func (c *batchedConn) startBatching() { c.w = bufio.NewWriterSize(c.Conn, batchSize) }

func (c *batchedConn) Write(p []byte) (int, error) {
	if c.w == nil {
		return c.Conn.Write(p)
	}
	return c.w.Write(p)
}

func (c *batchedConn) flush() error { return c.w.Flush() }

// read reads at least 64 bytes, the size of a round trip's message, and
// at most 64 KiB.
func (c *streamConn) read() (int, error) {
	return io.ReadAtLeast(c.conn, c.buf, 64)
}

// netdConn is a circuit through node A's netd to node B's echo service.
type netdConn struct{ c *bus.Conn }

// netdChunk is the largest message the benchmark sends through netd.
const netdChunk = 256 << 10

func (c netdConn) write(p []byte) error {
	for len(p) > 0 {
		n := min(len(p), netdChunk)
		if err := c.c.Send(context.Background(), 1, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (c netdConn) read() (int, error) {
	msg, err := c.c.Recv(context.Background())
	if err != nil {
		return 0, err
	}
	n := len(msg.Data)
	msg.Release()
	return n, nil
}

// dialNetdEcho opens a circuit from node from's netd to node to's echo
// service, as bt ping does, and closes it when b ends.
func dialNetdEcho(b *testing.B, from, to *node) echoConn {
	b.Helper()
	_, self, err := state.ReadPrincipals(from.state())
	if err != nil {
		b.Fatal(err)
	}
	dest, err := principal.Parse(to.principal)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := endpoint.Dial(ctx, filepath.Join(from.state(), "run"), self, endpoint.Service(dest, dest, endpoint.EchoName).String())
	if err != nil {
		b.Fatalf("open a circuit to the echo service of %s: %v", to.principal, err)
	}
	b.Cleanup(func() { c.Close() })
	return netdConn{c}
}

// dialInNamespace connects to addr over TCP from a socket made in network
// namespace ns, and closes the connection when b ends. A socket stays in
// the namespace it was made in, so this process can use it from any
// thread afterwards.
func dialInNamespace(b *testing.B, ns, addr string) net.Conn {
	b.Helper()
	conn, err := dialFromNamespace(ns, addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

func dialFromNamespace(ns, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer own.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open network namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace %s: %w", ns, err)
	}

	conn, dialErr := net.DialTimeout("tcp", addr, 10*time.Second)

	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime ends it with this
		// goroutine instead of running other goroutines in ns.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("return from network namespace %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	if dialErr != nil {
		return nil, fmt.Errorf("dial %s in network namespace %s: %w", addr, ns, dialErr)
	}
	return conn, nil
}

// The echo peer's variable and ports. The variable's value is "ADDR
// CERTFILE KEYFILE".
const (
	echoPeerEnv            = "NETNS_BENCH_ECHO_PEER"
	echoPeerTCPPort        = "7430"
	echoPeerTLSPort        = "7431"
	echoPeerBatchedTLSPort = "7432"
)

// startEchoPeer runs runEchoPeer in namespace ns, listening on addr, and
// waits for its ready line. It ends when b ends, because its standard
// input closes.
func startEchoPeer(b *testing.B, ns, addr, certFile, keyFile string) {
	b.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s", echoPeerEnv, addr, certFile, keyFile))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the echo peer in %s: %v", ns, err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("echo peer in %s printed %q before exiting (%v), expected its ready line", ns, line, err)
	}
}

// runEchoPeer is the echo peer's process: it echoes every TCP and TLS
// connection until its standard input ends. On echoPeerBatchedTLSPort it
// writes the TLS records in batches (echoBatched). TestMain calls it in
// place of the tests when echoPeerEnv is set.
func runEchoPeer(spec string) error {
	fields := strings.Fields(spec)
	if len(fields) != 3 {
		return fmt.Errorf("%s=%q: expected ADDR CERTFILE KEYFILE", echoPeerEnv, spec)
	}
	addr, certFile, keyFile := fields[0], fields[1], fields[2]
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}

	plain, err := net.Listen("tcp", net.JoinHostPort(addr, echoPeerTCPPort))
	if err != nil {
		return err
	}
	secure, err := net.Listen("tcp", net.JoinHostPort(addr, echoPeerTLSPort))
	if err != nil {
		return err
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	secure = tls.NewListener(secure, tlsConfig)
	batched, err := net.Listen("tcp", net.JoinHostPort(addr, echoPeerBatchedTLSPort))
	if err != nil {
		return err
	}

	for _, ln := range []net.Listener{plain, secure} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					io.Copy(c, c)
				}()
			}
		}()
	}
	go func() {
		for {
			c, err := batched.Accept()
			if err != nil {
				return
			}
			go echoBatched(c, tlsConfig)
		}
	}()
	fmt.Println("ready")

	io.Copy(io.Discard, os.Stdin)
	return nil
}

// echoBatched echoes a TLS connection on raw and writes its records in
// batches. A reader goroutine hands what it reads to the writer, which
// flushes whenever it has written all that was handed to it, as a netd
// link flushes when no other frame waits.
func echoBatched(raw net.Conn, config *tls.Config) {
	defer raw.Close()
	out := &batchedConn{Conn: raw}
	c := tls.Server(out, config)
	if err := c.Handshake(); err != nil {
		return
	}
	out.startBatching()

	// A Read returns the plaintext of at most one TLS record, 16 KiB.
	const buffers = 32
	free := make(chan []byte, buffers)
	for range buffers {
		free <- make([]byte, 16<<10)
	}
	full := make(chan []byte, buffers)
	go func() {
		defer close(full)
		for buf := range free {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			full <- buf[:n]
		}
	}()

	for buf := range full {
		if _, err := c.Write(buf); err != nil {
			return
		}
		free <- buf[:cap(buf)]
		if len(full) == 0 {
			if err := out.flush(); err != nil {
				return
			}
		}
	}
}

// writeBenchCert writes a self-signed ECDSA P-256 certificate for the IP
// address addr and its key to files, and returns their paths and a pool
// that trusts the certificate.
func writeBenchCert(b *testing.B, addr string) (certFile, keyFile string, roots *x509.CertPool) {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "netns benchmark echo peer"},
		IPAddresses:  []net.IP{net.ParseIP(addr)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}

	dir := b.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		b.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}
