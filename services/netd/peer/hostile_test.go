package peer

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// servingListener is a Listener of a valid node with its logs and its
// accepted links.
type servingListener struct {
	tree     *testTree
	node     *principal.Credential
	ln       *Listener
	logs     *logBuffer
	accepted <-chan acceptResult
}

func newServingListener(t *testing.T, timeout time.Duration) *servingListener {
	t.Helper()
	tree := newTestTree(t)
	node, chain := tree.node()
	logs := &logBuffer{}
	cfg := tree.config(node, chain, logs)
	cfg.HandshakeTimeout = timeout
	ln := listen(t, cfg)
	return &servingListener{tree: tree, node: node, ln: ln, logs: logs, accepted: acceptInBackground(t, ln)}
}

func (s *servingListener) addr() string { return s.ln.Addr().String() }

// assertStillServes checks that a valid node of the tree can still make a
// link.
func (s *servingListener) assertStillServes(t *testing.T) {
	t.Helper()
	cred, chain := s.tree.node()
	link, err := Dial(testContext(t), s.tree.config(cred, chain, nil), "tcp", s.addr(), s.node.Principal())
	if err != nil {
		t.Fatalf("Dial by a valid node: %v", err)
	}
	link.Close()
	if served := nextAccepted(t, s.accepted); served.Peer() != cred.Principal() {
		t.Errorf("accepted %s, expected %s", served.Peer(), cred.Principal())
	}
}

// assertLogged checks that the line of the latest rejection counted
// contains each of parts.
func (s *servingListener) assertLogged(t *testing.T, parts ...string) {
	t.Helper()
	lines := rejectionLines(t, s.logs, int(s.ln.Rejected()))
	assertContains(t, "log line", lines[len(lines)-1], append([]string{"level=WARN", "peer=127.0.0.1:"}, parts...)...)
}

// clientConfig returns the TLS configuration of a client that presents
// cert and offers the peer protocol, as a peer does, but checks nothing.
func clientConfig(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		NextProtos:         []string{ProtocolName},
		Certificates:       []tls.Certificate{*cert},
	}
}

func TestListenerRejectsPlainTLSClient(t *testing.T) {
	s := newServingListener(t, 5*time.Second)
	cert, client := selfSignedCertificate(t)

	// No ALPN: an ordinary TLS client of some other protocol.
	config := clientConfig(cert)
	config.NextProtos = nil
	if conn, err := plainTLSClient(t, s.addr(), config); err == nil {
		// In TLS 1.3 the client finishes the handshake first and gets the
		// rejection on its first read.
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Error("the listener sent data to a client without the peer protocol")
		}
	}
	waitRejected(t, s.ln, 1)
	s.assertLogged(t, ErrProtocol.Error(), "rejected=1")

	// The right protocol and a certificate, but no chain: the client
	// closes its side after the handshake.
	conn, err := plainTLSClient(t, s.addr(), clientConfig(cert))
	if err != nil {
		t.Fatalf("TLS handshake with the peer protocol: %v", err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	waitRejected(t, s.ln, 2)
	s.assertLogged(t, "principal="+client.String(), "closed the link before sending its writecap chain", "rejected=2")

	assertNothingAccepted(t, s.accepted)
	s.assertStillServes(t)
}

func TestListenerRejectsClientWithoutCertificate(t *testing.T) {
	s := newServingListener(t, 5*time.Second)
	config := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{ProtocolName}}
	if conn, err := plainTLSClient(t, s.addr(), config); err == nil {
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Error("the listener sent data to a client without a certificate")
		}
	}
	waitRejected(t, s.ln, 1)
	s.assertLogged(t, "TLS 1.3 handshake failed", "certificate")
	s.assertStillServes(t)
}

func TestListenerRejectsCertificateNotSelfSigned(t *testing.T) {
	s := newServingListener(t, 5*time.Second)
	cert, _ := certificateSignedByOtherKey(t)
	if conn, err := plainTLSClient(t, s.addr(), clientConfig(cert)); err == nil {
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Error("the listener sent data to a client whose certificate is not self-signed")
		}
	}
	waitRejected(t, s.ln, 1)
	s.assertLogged(t, ErrCertificate.Error(), "not signed by its own key")
	s.assertStillServes(t)
}

func TestListenerRejectsTLS12Client(t *testing.T) {
	s := newServingListener(t, 5*time.Second)
	cert, _ := selfSignedCertificate(t)
	config := clientConfig(cert)
	config.MinVersion = tls.VersionTLS12
	config.MaxVersion = tls.VersionTLS12

	_, err := plainTLSClient(t, s.addr(), config)
	if err == nil {
		t.Fatal("TLS 1.2 handshake succeeded")
	}
	assertContains(t, "client error", err.Error(), "protocol version")
	waitRejected(t, s.ln, 1)
	s.assertLogged(t, "TLS 1.3 handshake failed", "unsupported versions")
	s.assertStillServes(t)
}

func TestListenerRejectsBadChainFrame(t *testing.T) {
	frame := func(size uint32, body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, size), body...)
	}
	cases := []struct {
		name string
		sent []byte
		want string
	}{
		{"length above 4 GiB limit", frame(0xffffffff, nil), "4294967295 bytes, limit 65536"},
		{"length one above limit", frame(maxChainFrame+1, nil), "65537 bytes, limit 65536"},
		{"empty chain encoding", frame(0, nil), "input is truncated"},
		{"garbage", frame(16, []byte("0123456789abcdef")), "wrong kind of structure"},
		{"truncated body", frame(100, make([]byte, 10)), "connection closed after 10 of 100 bytes"},
		{"truncated length", []byte{0, 0}, "connection closed inside the length prefix"},
	}
	s := newServingListener(t, 5*time.Second)
	cert, client := selfSignedCertificate(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := plainTLSClient(t, s.addr(), clientConfig(cert))
			if err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
			if _, err := conn.Write(c.sent); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if err := conn.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			waitRejected(t, s.ln, uint64(i+1))
			s.assertLogged(t, "principal="+client.String(), ErrFrame.Error(), c.want)
		})
	}
	assertNothingAccepted(t, s.accepted)
	s.assertStillServes(t)
}

func TestListenerTimesOutSilentPeer(t *testing.T) {
	const timeout = 2 * time.Second
	s := newServingListener(t, timeout)
	cert, _ := selfSignedCertificate(t)

	// One peer connects over TCP and sends nothing, another makes the TLS
	// handshake and sends no chain.
	silent, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer silent.Close()
	if _, err := plainTLSClient(t, s.addr(), clientConfig(cert)); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}

	// Both are pending; a valid node is still served at once.
	start := time.Now()
	s.assertStillServes(t)
	if elapsed := time.Since(start); elapsed > timeout/2 {
		t.Errorf("a valid node waited %s behind the silent peers", elapsed)
	}

	waitRejected(t, s.ln, 2)
	if elapsed := time.Since(start); elapsed < timeout*3/4 {
		t.Errorf("silent peers rejected after %s, before the %s timeout", elapsed, timeout)
	}
	logged := strings.Join(rejectionLines(t, s.logs, 2), "\n")
	assertContains(t, "log", logged, "TLS handshake timed out after 2s", "chain exchange timed out after 2s")
}

func TestListenerCloseEndsPendingHandshakes(t *testing.T) {
	s := newServingListener(t, time.Minute)
	silent, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer silent.Close()
	time.Sleep(50 * time.Millisecond) // lets the listener start the handshake

	start := time.Now()
	if err := s.ln.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Close took %s with a pending handshake", elapsed)
	}
	select {
	case r := <-s.accepted:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, %v; expected an error wrapping net.ErrClosed", r.link, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Accept did not return after Close")
	}
	if n := s.ln.Rejected(); n != 0 {
		t.Errorf("Rejected() = %d; a handshake ended by Close is no rejection", n)
	}
}

// fakeListener accepts one TLS connection with config, reads the
// dialer's chain frame and sends reply in place of the acceptance.
func fakeListener(t *testing.T, config *tls.Config, reply []byte) string {
	t.Helper()
	ln := tls.NewListener(loopback(t), config)
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := readChainFrame(conn); err != nil {
			return
		}
		conn.Write(reply)
		conn.Read(make([]byte, 1)) // waits for the dialer to close
	}()
	return ln.Addr().String()
}

func serverConfig(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   []string{ProtocolName},
	}
}

func TestDialRejectsBadAcceptance(t *testing.T) {
	tree := newTestTree(t)
	cred, chain := tree.node()
	cert, server := selfSignedCertificate(t)
	garbage := append(binary.BigEndian.AppendUint32(nil, 8), "garbage!"...)
	addr := fakeListener(t, serverConfig(cert), garbage)

	_, err := Dial(testContext(t), tree.config(cred, chain, nil), "tcp", addr, server)

	assertErrorIs(t, err, ErrFrame)
	if err != nil {
		assertContains(t, "Dial error", err.Error(), "peer "+addr, server.String(), "read acceptance")
	}
}

func TestDialRejectsTLS12Server(t *testing.T) {
	tree := newTestTree(t)
	cred, chain := tree.node()
	cert, server := selfSignedCertificate(t)
	config := serverConfig(cert)
	config.MinVersion = tls.VersionTLS12
	config.MaxVersion = tls.VersionTLS12
	addr := fakeListener(t, config, nil)

	_, err := Dial(testContext(t), tree.config(cred, chain, nil), "tcp", addr, server)

	if err == nil {
		t.Fatal("Dial to a TLS 1.2 server succeeded")
	}
	assertContains(t, "Dial error", err.Error(), "peer "+addr, "TLS 1.3 handshake failed", "protocol version")
}

func TestDialRejectsServerWithoutProtocol(t *testing.T) {
	tree := newTestTree(t)
	cred, chain := tree.node()
	cert, server := selfSignedCertificate(t)
	config := serverConfig(cert)
	config.NextProtos = nil
	addr := fakeListener(t, config, nil)

	_, err := Dial(testContext(t), tree.config(cred, chain, nil), "tcp", addr, server)

	assertErrorIs(t, err, ErrProtocol)
}

func TestDialTimesOutSilentServer(t *testing.T) {
	tree := newTestTree(t)
	cred, chain := tree.node()
	ln := loopback(t) // the kernel accepts connections, and nothing responds
	defer ln.Close()
	cfg := tree.config(cred, chain, nil)
	cfg.HandshakeTimeout = 300 * time.Millisecond

	start := time.Now()
	_, err := Dial(testContext(t), cfg, "tcp", ln.Addr().String(), tree.root.Principal())

	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Dial returned after %s with a 300ms handshake timeout", elapsed)
	}
	if err == nil {
		t.Fatal("Dial to a silent server succeeded")
	}
	assertContains(t, "Dial error", err.Error(), "peer "+ln.Addr().String(), "TLS handshake timed out after 300ms")
}

func TestDialCancelledDuringChainExchange(t *testing.T) {
	tree := newTestTree(t)
	cred, chain := tree.node()
	cert, server := selfSignedCertificate(t)
	addr := fakeListener(t, serverConfig(cert), nil) // never accepts

	ctx, cancel := context.WithCancel(testContext(t))
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := Dial(ctx, tree.config(cred, chain, nil), "tcp", addr, server)

	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Dial returned %s after the cancellation", elapsed)
	}
	assertErrorIs(t, err, context.Canceled)
	if err != nil {
		assertContains(t, "Dial error", err.Error(), "read acceptance", "chain exchange cancelled")
	}
}
