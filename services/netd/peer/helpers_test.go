package peer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/logbuf"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// testTree is a tree root that issues writecaps to test nodes.
type testTree struct {
	t    testing.TB
	root *principal.Credential
}

func newTestTree(t testing.TB) *testTree {
	t.Helper()
	return &testTree{t: t, root: newCredential(t)}
}

func newCredential(t testing.TB) *principal.Credential {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatalf("GenerateCredential: %v", err)
	}
	return cred
}

// space returns the tree's node address space followed by suffix.
func (tr *testTree) space(suffix string) string {
	return NodeSpace(tr.root.Principal()) + suffix
}

// issue signs a writecap from issuer to subject over prefix, valid from an
// hour ago until an hour from now.
func (tr *testTree) issue(issuer *principal.Credential, subject principal.Principal, prefix string) *capability.Writecap {
	tr.t.Helper()
	now := time.Now()
	return tr.issueAt(issuer, subject, prefix, now.Add(-time.Hour), now.Add(time.Hour))
}

func (tr *testTree) issueAt(issuer *principal.Credential, subject principal.Principal, prefix string, notBefore, expires time.Time) *capability.Writecap {
	tr.t.Helper()
	w, err := capability.Issue(issuer.Signing, subject, prefix, notBefore, expires)
	if err != nil {
		tr.t.Fatalf("Issue(%s to %s, %q): %v", issuer.Principal(), subject, prefix, err)
	}
	return w
}

// node returns a new node of the tree with a one-link chain from the root
// over the node address space.
func (tr *testTree) node() (*principal.Credential, capability.Chain) {
	tr.t.Helper()
	cred := newCredential(tr.t)
	return cred, capability.Chain{tr.issue(tr.root, cred.Principal(), tr.space(""))}
}

// config returns a Config of this tree for cred and chain that logs to
// logs, which may be nil.
func (tr *testTree) config(cred *principal.Credential, chain capability.Chain, logs *logBuffer) Config {
	cfg := Config{Node: cred, Chain: chain, Root: tr.root.Principal(), HandshakeTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// logBuffer collects log output for tests that check what was logged.
type logBuffer = logbuf.Buffer

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// loopback listens on a free TCP port of 127.0.0.1.
func loopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	return ln
}

// listen starts a Listener for cfg on loopback without checking the
// node's own chain, so tests can also run listeners that peers must
// reject. It is closed when the test ends.
func listen(t testing.TB, cfg Config) *Listener {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	key, err := tlsKey(cfg.Node)
	if err != nil {
		t.Fatalf("tlsKey: %v", err)
	}
	l := newListener(cfg, key, loopback(t))
	t.Cleanup(func() { l.Close() })
	return l
}

// dialUnchecked is Dial without the check of the node's own chain, so
// tests can dial with chains that the listener must reject.
func dialUnchecked(ctx context.Context, t testing.TB, cfg Config, addr string, expect principal.Principal) (*Link, error) {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	key, err := tlsKey(cfg.Node)
	if err != nil {
		t.Fatalf("tlsKey: %v", err)
	}
	return dial(ctx, cfg, key, "tcp", addr, expect)
}

// acceptResult is what one call of Accept returned.
type acceptResult struct {
	link *Link
	err  error
}

// acceptInBackground calls Accept until the listener stops and sends each
// result to the returned channel. Links are closed when the test ends.
func acceptInBackground(t testing.TB, l *Listener) <-chan acceptResult {
	ch := make(chan acceptResult, 16)
	go func() {
		for {
			link, err := l.Accept()
			if link != nil {
				t.Cleanup(func() { link.Close() })
			}
			ch <- acceptResult{link, err}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// nextAccepted waits for the next link from acceptInBackground.
func nextAccepted(t testing.TB, ch <-chan acceptResult) *Link {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		return r.link
	case <-time.After(10 * time.Second):
		t.Fatal("Accept returned no link within 10s")
		return nil
	}
}

// assertNothingAccepted checks that Accept returns nothing within a short
// time.
func assertNothingAccepted(t testing.TB, ch <-chan acceptResult) {
	t.Helper()
	select {
	case r := <-ch:
		t.Errorf("Accept returned link %v, error %v; expected nothing", r.link, r.err)
	case <-time.After(200 * time.Millisecond):
	}
}

// waitRejected waits until the listener has rejected n peers.
func waitRejected(t testing.TB, l *Listener, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Rejected() < n {
		if time.Now().After(deadline) {
			t.Fatalf("Rejected() = %d after 10s, expected %d", l.Rejected(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := l.Rejected(); got != n {
		t.Errorf("Rejected() = %d, expected %d", got, n)
	}
}

// rejectionLines waits until logs hold n "peer rejected" lines and returns
// them. The listener counts a rejection before it logs it, so a test that
// has seen the count go up must still wait for the line.
func rejectionLines(t testing.TB, logs *logBuffer, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := logs.Lines("peer rejected")
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rejections logged after 10s, expected %d:\n%s", len(lines), n, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// selfSignedCertificate returns a TLS certificate with a new P-256 key,
// made as a peer makes its own.
func selfSignedCertificate(t testing.TB) (*tls.Certificate, principal.Principal) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	p, err := publicKeyPrincipal(&key.PublicKey)
	if err != nil {
		t.Fatalf("publicKeyPrincipal: %v", err)
	}
	cert, err := newCertificate(key, p)
	if err != nil {
		t.Fatalf("newCertificate: %v", err)
	}
	return cert, p
}

// plainTLSClient makes a TLS connection to addr with config, completes the
// handshake and returns the connection, which is closed when the test ends.
func plainTLSClient(t testing.TB, addr string, config *tls.Config) (*tls.Conn, error) {
	t.Helper()
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: config}
	conn, err := dialer.DialContext(testContext(t), "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return conn.(*tls.Conn), nil
}

// assertErrorIs checks that err wraps each of wants.
func assertErrorIs(t testing.TB, err error, wants ...error) {
	t.Helper()
	if err == nil {
		t.Errorf("error = nil, expected one wrapping %v", wants)
		return
	}
	for _, want := range wants {
		if !errors.Is(err, want) {
			t.Errorf("error %q does not wrap %q", err, want)
		}
	}
}

// assertContains checks that s contains each of parts.
func assertContains(t testing.TB, label, s string, parts ...string) {
	t.Helper()
	for _, part := range parts {
		if !strings.Contains(s, part) {
			t.Errorf("%s %q does not contain %q", label, s, part)
		}
	}
}
