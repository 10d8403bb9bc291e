package capability_test

import (
	"errors"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// testNow is the verification time of every chain test. Writecaps issued by
// fixture.issue are valid from an hour before it until an hour after it.
var testNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func newCredential(t testing.TB) *principal.Credential {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatalf("GenerateCredential: %v", err)
	}
	return cred
}

// fixture is a tree root and a few other principals, A to D, that take part
// in delegations under it.
type fixture struct {
	t                testing.TB
	root, a, b, c, d *principal.Credential
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return &fixture{
		t:    t,
		root: newCredential(t),
		a:    newCredential(t),
		b:    newCredential(t),
		c:    newCredential(t),
		d:    newCredential(t),
	}
}

// path returns the tree path of the root's tree followed by the given suffix,
// which is empty or starts with "/".
func (f *fixture) path(suffix string) string {
	return capability.RootPath(f.root.Principal()) + suffix
}

// issue signs a writecap valid for an hour either side of testNow.
func (f *fixture) issue(issuer, subject *principal.Credential, prefix string) *capability.Writecap {
	f.t.Helper()
	return f.issueAt(issuer, subject, prefix, testNow.Add(-time.Hour), testNow.Add(time.Hour))
}

func (f *fixture) issueAt(issuer, subject *principal.Credential, prefix string, notBefore, expires time.Time) *capability.Writecap {
	f.t.Helper()
	w, err := capability.Issue(issuer.Signing, subject.Principal(), prefix, notBefore, expires)
	if err != nil {
		f.t.Fatalf("Issue(%s to %s, %q): %v", issuer.Principal(), subject.Principal(), prefix, err)
	}
	return w
}

// assertChainError checks that err wraps want and is a *ChainError for the
// link at index, where -1 means the chain as a whole.
func assertChainError(t *testing.T, err error, want error, index int) {
	t.Helper()
	if err == nil {
		t.Errorf("Verify = nil, expected an error wrapping %q at index %d", want, index)
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("Verify error %q does not wrap the expected %q", err, want)
	}
	var chainErr *capability.ChainError
	if !errors.As(err, &chainErr) {
		t.Errorf("Verify error %q is %T, expected *capability.ChainError", err, err)
		return
	}
	if chainErr.Index != index {
		t.Errorf("ChainError.Index = %d, expected %d (error: %v)", chainErr.Index, index, err)
	}
}
