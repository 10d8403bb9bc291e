package grant

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/bus/rpc"
	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

func newCredential(t *testing.T) *principal.Credential {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func TestRequestRoundTrip(t *testing.T) {
	subject := newCredential(t).Principal()
	r := Request{Subject: subject, Prefix: capability.RootPath(subject) + "/dev", Expires: time.Unix(1900000000, 5)}
	got, err := DecodeRequest(EncodeRequest(r))
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	if got.Subject != r.Subject || got.Prefix != r.Prefix || !got.Expires.Equal(r.Expires) {
		t.Errorf("round trip gave %+v, expected %+v", got, r)
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	subject := newCredential(t).Principal()
	good := EncodeRequest(Request{Subject: subject, Prefix: capability.RootPath(subject), Expires: time.Unix(1900000000, 0)})
	cases := map[string][]byte{
		"empty":          nil,
		"truncated":      good[:len(good)-1],
		"trailing byte":  append(append([]byte{}, good...), 0),
		"zero subject":   EncodeRequest(Request{Prefix: capability.RootPath(subject), Expires: time.Unix(1900000000, 0)}),
		"relative path":  EncodeRequest(Request{Subject: subject, Prefix: "dev", Expires: time.Unix(1900000000, 0)}),
		"other kind":     append([]byte{0x06, 0x01}, good[2:]...),
		"future version": append([]byte{good[0], good[1], 9}, good[3:]...),
	}
	for name, body := range cases {
		if _, err := DecodeRequest(body); err == nil {
			t.Errorf("%s: DecodeRequest accepted it", name)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	cred, err := principal.GenerateCredential()
	if err != nil {
		f.Fatal(err)
	}
	subject := cred.Principal()
	f.Add(EncodeRequest(Request{Subject: subject, Prefix: capability.RootPath(subject) + "/dev/x", Expires: time.Unix(1900000000, 0)}))
	f.Add([]byte{})
	f.Add([]byte{0x06, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		again, err := DecodeRequest(EncodeRequest(r))
		if err != nil {
			t.Fatalf("an accepted request does not decode after encoding: %v", err)
		}
		if again.Subject != r.Subject || again.Prefix != r.Prefix || !again.Expires.Equal(r.Expires) {
			t.Fatalf("re-encoding changed the request: %+v, then %+v", r, again)
		}
	})
}

func TestIssueChecks(t *testing.T) {
	node := newCredential(t)
	subject := newCredential(t).Principal()
	s := &Server{Node: node}
	now := time.Now()
	scope := capability.RootPath(node.Principal())

	chain, err := s.Issue(Request{Subject: subject, Prefix: scope + "/dev", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if err := chain.Verify(node.Principal(), subject, scope+"/dev/x", now); err != nil {
		t.Errorf("the issued chain does not verify: %v", err)
	}

	other := capability.RootPath(subject)
	for name, r := range map[string]Request{
		"outside scope": {Subject: subject, Prefix: other, Expires: now.Add(time.Hour)},
		"past expiry":   {Subject: subject, Prefix: scope, Expires: now.Add(-time.Second)},
		"far expiry":    {Subject: subject, Prefix: scope, Expires: now.Add(MaxLifetime + time.Hour)},
	} {
		if _, err := s.Issue(r, now); err == nil {
			t.Errorf("%s: Issue accepted it", name)
		}
	}
}

// TestServeIssuesForLocalOnly sends requests to a running key service over a real bus
// endpoint, once as this node and once with a relayed remote origin,
// which the service must close unanswered.
func TestServeIssuesForLocalOnly(t *testing.T) {
	node := newCredential(t)
	self := node.Principal()
	runDir, err := os.MkdirTemp("", "grant")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	addr := endpoint.Service(self, self, ServiceName)
	l, err := endpoint.Register(runDir, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Node: node}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	subject := newCredential(t).Principal()
	shell := endpoint.Service(self, self, "shell").String()
	request := Request{Subject: subject, Prefix: shell, Expires: time.Now().Add(time.Hour)}
	callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer callCancel()

	conn, err := endpoint.Dial(callCtx, runDir, self, addr.String())
	if err != nil {
		t.Fatalf("dial the key service: %v", err)
	}
	defer conn.Close()
	client := rpc.NewClient(conn)
	chain, err := Ask(callCtx, client, request)
	if err != nil {
		t.Fatalf("Ask: %v", err)
	}
	if err := chain.Verify(self, subject, shell, time.Now()); err != nil {
		t.Errorf("the chain from the service does not verify: %v", err)
	}
	if _, err := Ask(callCtx, client, Request{Subject: subject, Prefix: capability.RootPath(subject), Expires: time.Now().Add(time.Hour)}); err == nil || !strings.Contains(err.Error(), "outside this node's scope") {
		t.Errorf("a request outside the node's scope gave %v, expected an error naming the scope", err)
	}

	// A remote origin with a chain that covers the key service is still
	// rejected: only the node's own processes may have it sign.
	remote := newCredential(t)
	link, err := capability.Issue(node.Signing, remote.Principal(), capability.RootPath(self), time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	relayed, err := endpoint.DialOrigin(callCtx, runDir, addr, &endpoint.Origin{Principal: remote.Principal(), Chain: capability.Chain{link}, Remote: true})
	if err != nil {
		t.Fatalf("dial with a remote origin: %v", err)
	}
	defer relayed.Close()
	if _, err := Ask(callCtx, rpc.NewClient(relayed), request); !errors.Is(err, rpc.ErrPeerGone) {
		t.Errorf("a relayed request gave %v, expected the connection to be closed (%v)", err, rpc.ErrPeerGone)
	}
	if got := s.RejectedRemote(); got != 1 {
		t.Errorf("RejectedRemote = %d, expected 1", got)
	}
	if _, err := os.Stat(filepath.Join(runDir, "svc", ServiceName)); err != nil {
		t.Errorf("the endpoint socket is missing: %v", err)
	}
}
