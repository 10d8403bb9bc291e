package shell

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// recordingAuthorize returns an Authorize hook that accepts every caller
// and a function that returns the callers it saw.
func recordingAuthorize() (func(principal.Principal) error, func() []principal.Principal) {
	var mu sync.Mutex
	var seen []principal.Principal
	authorize := func(p principal.Principal) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, p)
		return nil
	}
	callers := func() []principal.Principal {
		mu.Lock()
		defer mu.Unlock()
		return append([]principal.Principal(nil), seen...)
	}
	return authorize, callers
}

// serveEndpoint registers the shell service of node under a new run
// directory and serves it until the test ends. It returns the run
// directory, the service's address and its log.
func serveEndpoint(t *testing.T, node principal.Principal, authorize func(principal.Principal) error) (string, endpoint.Address, *syncBuffer) {
	t.Helper()
	run := t.TempDir()
	address := endpoint.Service(node, node, ServiceName)
	l, err := endpoint.Register(run, address)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts := ServerOptions{Authorize: authorize, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, EndpointListener(l), opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener error = %v, want nil after its context ended", err)
		}
	})
	return run, address, logs
}

func issueChain(t *testing.T, issuer *principal.Credential, subject principal.Principal, prefix string) capability.Chain {
	t.Helper()
	now := time.Now()
	w, err := capability.Issue(issuer.Signing, subject, prefix, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return capability.Chain{w}
}

func newCredential(t *testing.T) *principal.Credential {
	t.Helper()
	c, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEndpointLocalCallerIsNode(t *testing.T) {
	node := newCredential(t).Principal()
	authorize, callers := recordingAuthorize()
	run, address, logs := serveEndpoint(t, node, authorize)

	ctx := testContext(t)
	conn, err := endpoint.Dial(ctx, run, node, address.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var stdout bytes.Buffer
	status, err := Run(ctx, conn, Request{Argv: []string{"sh", "-c", "echo hi; exit 4"}}, nil, &stdout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if status.Code != 4 || stdout.String() != "hi\n" {
		t.Errorf("status %+v, stdout %q; want exit 4 and %q", status, stdout.String(), "hi\n")
	}
	if got := callers(); len(got) != 1 || got[0] != node {
		t.Errorf("Authorize saw %v, want the node %v", got, node)
	}
	waitFor(ctx, t, "the session's end in the log", func() bool { return strings.Contains(logs.String(), "shell session ended") })
	for _, event := range []string{"shell session started", "shell session ended"} {
		if lines := linesWith(logs.String(), event, "principal="+node.String()); len(lines) != 1 {
			t.Errorf("log has %d lines %q with the node's principal, want 1:\n%s", len(lines), event, logs)
		}
	}
}

func TestEndpointRemoteCallerByChain(t *testing.T) {
	nodeCred, remote := newCredential(t), newCredential(t)
	node := nodeCred.Principal()
	authorize, callers := recordingAuthorize()
	run, address, logs := serveEndpoint(t, node, authorize)
	ctx := testContext(t)

	// A chain over the echo service does not reach the shell: Accept
	// rejects the hello, and the service goes on.
	echoOnly := issueChain(t, nodeCred, remote.Principal(), endpoint.Service(node, node, endpoint.EchoName).String())
	conn, err := endpoint.DialOrigin(ctx, run, address, &endpoint.Origin{Principal: remote.Principal(), Chain: echoOnly, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, conn, Request{Argv: []string{"true"}}, nil, io.Discard, io.Discard)
	conn.Close()
	if err == nil {
		t.Error("a session with a chain over svc/echo only succeeded, want it rejected")
	}
	waitFor(ctx, t, "the rejection in the log", func() bool { return strings.Contains(logs.String(), "shell connection rejected") })

	// A chain over the shell address does.
	covering := issueChain(t, nodeCred, remote.Principal(), address.String())
	conn, err = endpoint.DialOrigin(ctx, run, address, &endpoint.Origin{Principal: remote.Principal(), Chain: covering, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	status, err := Run(ctx, conn, Request{Argv: []string{"sh", "-c", "exit 5"}}, nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if status.Code != 5 {
		t.Errorf("status %+v, want exit 5", status)
	}
	if got := callers(); len(got) != 1 || got[0] != remote.Principal() {
		t.Errorf("Authorize saw %v, want only the remote principal %v", got, remote.Principal())
	}
	waitFor(ctx, t, "the session's end in the log", func() bool { return strings.Contains(logs.String(), "shell session ended") })
	if lines := linesWith(logs.String(), "shell session ended", "principal="+remote.Principal().String()); len(lines) != 1 {
		t.Errorf("log has %d session ends with the remote principal, want 1:\n%s", len(lines), logs)
	}
}

// linesWith returns the lines of s that contain every word.
func linesWith(s string, words ...string) []string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		ok := line != ""
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			lines = append(lines, line)
		}
	}
	return lines
}
