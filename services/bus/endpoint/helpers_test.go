package endpoint

import (
	"context"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

func newCredential(t testing.TB) *principal.Credential {
	t.Helper()
	c, err := principal.GenerateCredential()
	if err != nil {
		t.Fatalf("GenerateCredential: %v", err)
	}
	return c
}

func issue(t testing.TB, issuer *principal.Credential, subject principal.Principal, prefix string) capability.Chain {
	t.Helper()
	now := time.Now()
	w, err := capability.Issue(issuer.Signing, subject, prefix, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return capability.Chain{w}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// register registers a under run and closes it when the test ends.
func register(t testing.TB, run string, a Address) *Listener {
	t.Helper()
	l, err := Register(run, a)
	if err != nil {
		t.Fatalf("Register %s: %v", a, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
