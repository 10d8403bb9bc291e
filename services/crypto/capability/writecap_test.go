package capability_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// delegation issues a chain of n links from the root through fresh
// principals. Link i grants "/d1/.../d(i+1)", so each prefix narrows the
// previous one. It returns the chain, the last subject and the last prefix.
func (f *fixture) delegation(n int) (capability.Chain, *principal.Credential, string) {
	f.t.Helper()
	var chain capability.Chain
	issuer := f.root
	prefix := f.path("")
	for i := range n {
		subject := newCredential(f.t)
		prefix += fmt.Sprintf("/d%d", i+1)
		chain = append(chain, f.issue(issuer, subject, prefix))
		issuer = subject
	}
	return chain, issuer, prefix
}

func TestVerifyValidChain(t *testing.T) {
	for _, n := range []int{1, 2, capability.MaxChainDepth} {
		t.Run(fmt.Sprintf("%dLinks", n), func(t *testing.T) {
			f := newFixture(t)
			chain, writer, prefix := f.delegation(n)

			if err := chain.Verify(f.root.Principal(), writer.Principal(), prefix, testNow); err != nil {
				t.Errorf("Verify of the last prefix itself: %v", err)
			}
			if err := chain.Verify(f.root.Principal(), writer.Principal(), prefix+"/sub/file", testNow); err != nil {
				t.Errorf("Verify of a path below the last prefix: %v", err)
			}
		})
	}
}

func TestVerifyValidSamePrefix(t *testing.T) {
	// A link may pass on its whole prefix unchanged.
	f := newFixture(t)
	chain := capability.Chain{
		f.issue(f.root, f.a, f.path("/a")),
		f.issue(f.a, f.b, f.path("/a")),
	}

	if err := chain.Verify(f.root.Principal(), f.b.Principal(), f.path("/a/x"), testNow); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestVerifyValidWholeTree(t *testing.T) {
	f := newFixture(t)
	chain := capability.Chain{f.issue(f.root, f.a, f.path(""))}

	if err := chain.Verify(f.root.Principal(), f.a.Principal(), f.path(""), testNow); err != nil {
		t.Errorf("Verify of the root path: %v", err)
	}
	if err := chain.Verify(f.root.Principal(), f.a.Principal(), f.path("/any/thing"), testNow); err != nil {
		t.Errorf("Verify of a path in the tree: %v", err)
	}
}

func TestVerifyRootEmptyChain(t *testing.T) {
	f := newFixture(t)

	for name, chain := range map[string]capability.Chain{"nil": nil, "empty": {}} {
		for _, path := range []string{f.path(""), f.path("/etc/netd")} {
			if err := chain.Verify(f.root.Principal(), f.root.Principal(), path, testNow); err != nil {
				t.Errorf("Verify of %s chain for the root at %q: %v", name, path, err)
			}
		}
	}
}

func TestVerifyValidityBoundaries(t *testing.T) {
	f := newFixture(t)
	notBefore := testNow.Add(-time.Hour)
	expires := testNow.Add(time.Hour)
	chain := capability.Chain{f.issueAt(f.root, f.a, f.path("/a"), notBefore, expires)}
	path := f.path("/a")

	if err := chain.Verify(f.root.Principal(), f.a.Principal(), path, notBefore); err != nil {
		t.Errorf("Verify at NotBefore: %v, expected nil because NotBefore is inclusive", err)
	}
	if err := chain.Verify(f.root.Principal(), f.a.Principal(), path, expires.Add(-time.Nanosecond)); err != nil {
		t.Errorf("Verify 1ns before Expires: %v", err)
	}

	err := chain.Verify(f.root.Principal(), f.a.Principal(), path, notBefore.Add(-time.Nanosecond))
	assertChainError(t, err, capability.ErrNotYetValid, 0)

	err = chain.Verify(f.root.Principal(), f.a.Principal(), path, expires)
	assertChainError(t, err, capability.ErrExpired, 0)
}

// verifyCall is one call to Chain.Verify. A nil root means the fixture's root,
// and a zero now means testNow.
type verifyCall struct {
	chain  capability.Chain
	root   *principal.Credential
	writer *principal.Credential
	path   string
	now    time.Time
}

func TestVerifyRejects(t *testing.T) {
	hourAgo := testNow.Add(-time.Hour)
	hourLater := testNow.Add(time.Hour)

	tests := []struct {
		name  string
		build func(f *fixture) verifyCall
		want  error
		index int
	}{
		// Validity period.
		{"expiredOnlyLink", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issueAt(f.root, f.a, f.path("/a"), hourAgo.Add(-time.Hour), hourAgo)},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrExpired, 0},
		{"expiredFirstOfThree", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issueAt(f.root, f.a, f.path("/a"), hourAgo.Add(-time.Hour), hourAgo),
					f.issue(f.a, f.b, f.path("/a")),
					f.issue(f.b, f.c, f.path("/a")),
				},
				writer: f.c, path: f.path("/a"),
			}
		}, capability.ErrExpired, 0},
		{"expiredMiddleOfThree", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issueAt(f.a, f.b, f.path("/a"), hourAgo.Add(-time.Hour), hourAgo),
					f.issue(f.b, f.c, f.path("/a")),
				},
				writer: f.c, path: f.path("/a"),
			}
		}, capability.ErrExpired, 1},
		{"expiredLastOfThree", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/a")),
					f.issueAt(f.b, f.c, f.path("/a"), hourAgo.Add(-time.Hour), hourAgo),
				},
				writer: f.c, path: f.path("/a"),
			}
		}, capability.ErrExpired, 2},
		{"expiredAtInstant", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issueAt(f.root, f.a, f.path("/a"), hourAgo, testNow)},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrExpired, 0},
		{"notYetValidFirst", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issueAt(f.root, f.a, f.path("/a"), hourLater, hourLater.Add(time.Hour)),
					f.issue(f.a, f.b, f.path("/a")),
				},
				writer: f.b, path: f.path("/a"),
			}
		}, capability.ErrNotYetValid, 0},
		{"notYetValidLast", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issueAt(f.a, f.b, f.path("/a"), testNow.Add(time.Second), hourLater),
				},
				writer: f.b, path: f.path("/a"),
			}
		}, capability.ErrNotYetValid, 1},

		// Scope of prefixes and the path.
		{"prefixOutsideParent", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/b")),
				},
				writer: f.b, path: f.path("/b"),
			}
		}, capability.ErrOutOfScope, 1},
		{"prefixWidensParent", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a/b")),
					f.issue(f.a, f.b, f.path("/a")),
				},
				writer: f.b, path: f.path("/a/b"),
			}
		}, capability.ErrOutOfScope, 1},
		{"prefixSiblingOfParent", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/ab")),
				},
				writer: f.b, path: f.path("/ab"),
			}
		}, capability.ErrOutOfScope, 1},
		{"prefixInOtherTree", func(f *fixture) verifyCall {
			other := capability.RootPath(f.d.Principal())
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.a, other+"/a")},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrOutOfScope, 0},
		{"pathOutsideLastPrefix", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/a/b")),
				},
				writer: f.b, path: f.path("/a/c"),
			}
		}, capability.ErrOutOfScope, 1},
		{"pathSiblingOfLastPrefix", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.a, f.path("/a"))},
				writer: f.a, path: f.path("/ab"),
			}
		}, capability.ErrOutOfScope, 0},
		{"pathAboveLastPrefix", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.a, f.path("/a/b"))},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrOutOfScope, 0},
		{"pathInOtherTree", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.a, f.path("/a"))},
				writer: f.a, path: capability.RootPath(f.d.Principal()) + "/a",
			}
		}, capability.ErrOutOfScope, -1},
		{"rootInOtherTree", func(f *fixture) verifyCall {
			return verifyCall{writer: f.root, path: capability.RootPath(f.d.Principal()) + "/a"}
		}, capability.ErrOutOfScope, -1},
		{"pathInvalid", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.a, f.path("/a"))},
				writer: f.a, path: f.path("/a/../b"),
			}
		}, capability.ErrInvalidPath, -1},

		// Signatures. The fields are changed after Issue signed them.
		{"signatureFlippedFirst", func(f *fixture) verifyCall {
			chain := capability.Chain{
				f.issue(f.root, f.a, f.path("/a")),
				f.issue(f.a, f.b, f.path("/a")),
			}
			chain[0].Signature[10] ^= 0x01
			return verifyCall{chain: chain, writer: f.b, path: f.path("/a")}
		}, capability.ErrBadSignature, 0},
		{"signatureFlippedLast", func(f *fixture) verifyCall {
			chain := capability.Chain{
				f.issue(f.root, f.a, f.path("/a")),
				f.issue(f.a, f.b, f.path("/a")),
			}
			chain[1].Signature[principal.SignatureSize-1] ^= 0x80
			return verifyCall{chain: chain, writer: f.b, path: f.path("/a")}
		}, capability.ErrBadSignature, 1},
		{"subjectChanged", func(f *fixture) verifyCall {
			chain := capability.Chain{
				f.issue(f.root, f.a, f.path("/a")),
				f.issue(f.a, f.b, f.path("/a")),
			}
			chain[1].Subject = f.c.Principal()
			return verifyCall{chain: chain, writer: f.c, path: f.path("/a")}
		}, capability.ErrBadSignature, 1},
		{"prefixChanged", func(f *fixture) verifyCall {
			chain := capability.Chain{f.issue(f.root, f.a, f.path("/a"))}
			chain[0].Prefix = f.path("/a/b")
			return verifyCall{chain: chain, writer: f.a, path: f.path("/a/b")}
		}, capability.ErrBadSignature, 0},
		{"prefixWidenedAfterSigning", func(f *fixture) verifyCall {
			chain := capability.Chain{f.issue(f.root, f.a, f.path("/a"))}
			chain[0].Prefix = f.path("")
			return verifyCall{chain: chain, writer: f.a, path: f.path("/b")}
		}, capability.ErrBadSignature, 0},
		{"expiresChanged", func(f *fixture) verifyCall {
			chain := capability.Chain{f.issue(f.root, f.a, f.path("/a"))}
			chain[0].Expires = chain[0].Expires.Add(24 * time.Hour)
			return verifyCall{chain: chain, writer: f.a, path: f.path("/a")}
		}, capability.ErrBadSignature, 0},
		{"notBeforeChanged", func(f *fixture) verifyCall {
			chain := capability.Chain{f.issue(f.root, f.a, f.path("/a"))}
			chain[0].NotBefore = chain[0].NotBefore.Add(-time.Second)
			return verifyCall{chain: chain, writer: f.a, path: f.path("/a")}
		}, capability.ErrBadSignature, 0},
		{"signatureFromOtherLink", func(f *fixture) verifyCall {
			chain := capability.Chain{f.issue(f.root, f.a, f.path("/a"))}
			chain[0].Signature = f.issue(f.root, f.a, f.path("/b")).Signature
			return verifyCall{chain: chain, writer: f.a, path: f.path("/a")}
		}, capability.ErrBadSignature, 0},

		// Loops. The loop is reported at the first link whose issuer already
		// appeared, or at the last link when its subject already appeared.
		{"loopABA", func(f *fixture) verifyCall {
			// In R→A, A→B, B→A, A→B, A issues a second time at link 3.
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/a")),
					f.issue(f.b, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/a")),
				},
				writer: f.b, path: f.path("/a"),
			}
		}, capability.ErrLoop, 3},
		{"loopLastSubjectEarlierIssuer", func(f *fixture) verifyCall {
			// In R→A, A→B, B→A, the last subject A already issued link 1.
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/a")),
					f.issue(f.b, f.a, f.path("/a")),
				},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrLoop, 2},
		{"loopLastSubjectRoot", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.root, f.path("/a")),
				},
				writer: f.root, path: f.path("/a"),
			}
		}, capability.ErrLoop, 1},
		{"loopMiddleSubjectRoot", func(f *fixture) verifyCall {
			// In R→A, A→R, R→B, the root issues a second time at link 2.
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.root, f.path("/a")),
					f.issue(f.root, f.b, f.path("/a")),
				},
				writer: f.b, path: f.path("/a"),
			}
		}, capability.ErrLoop, 2},
		{"loopSelfGrant", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.a, f.path("/a")),
				},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrLoop, 1},
		{"loopRootSelfGrant", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.root, f.path("/a"))},
				writer: f.root, path: f.path("/a"),
			}
		}, capability.ErrLoop, 0},

		// Depth, linkage, root and writer.
		{"tooDeep", func(f *fixture) verifyCall {
			chain, writer, prefix := f.delegation(capability.MaxChainDepth + 1)
			return verifyCall{chain: chain, writer: writer, path: prefix}
		}, capability.ErrTooDeep, -1},
		{"brokenChainSecond", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.b, f.c, f.path("/a")),
				},
				writer: f.c, path: f.path("/a"),
			}
		}, capability.ErrBrokenChain, 1},
		{"brokenChainThird", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/a")),
					f.issue(f.c, f.d, f.path("/a")),
				},
				writer: f.d, path: f.path("/a"),
			}
		}, capability.ErrBrokenChain, 2},
		{"wrongRoot", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issue(f.d, f.a, f.path("/a"))},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrWrongRoot, 0},
		{"wrongRootOtherTreesChain", func(f *fixture) verifyCall {
			// A valid chain for D's tree, checked for a path in the root's tree.
			other := capability.RootPath(f.d.Principal())
			return verifyCall{
				chain:  capability.Chain{f.issue(f.d, f.a, other+"/a")},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrWrongRoot, 0},
		{"wrongRootArgument", func(f *fixture) verifyCall {
			// The path is in D's tree and D is passed as the root, but the
			// chain starts at the fixture's root.
			other := capability.RootPath(f.d.Principal())
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.a, f.path("/a"))},
				root:   f.d,
				writer: f.a, path: other + "/a",
			}
		}, capability.ErrWrongRoot, 0},
		{"wrongWriterOneLink", func(f *fixture) verifyCall {
			return verifyCall{
				chain:  capability.Chain{f.issue(f.root, f.a, f.path("/a"))},
				writer: f.b, path: f.path("/a"),
			}
		}, capability.ErrWrongWriter, 0},
		{"wrongWriterTwoLinks", func(f *fixture) verifyCall {
			return verifyCall{
				chain: capability.Chain{
					f.issue(f.root, f.a, f.path("/a")),
					f.issue(f.a, f.b, f.path("/a")),
				},
				writer: f.a, path: f.path("/a"),
			}
		}, capability.ErrWrongWriter, 1},
		{"wrongWriterEmptyChain", func(f *fixture) verifyCall {
			return verifyCall{writer: f.a, path: f.path("/a")}
		}, capability.ErrWrongWriter, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			call := tt.build(f)
			if call.root == nil {
				call.root = f.root
			}
			if call.now.IsZero() {
				call.now = testNow
			}

			err := call.chain.Verify(call.root.Principal(), call.writer.Principal(), call.path, call.now)
			assertChainError(t, err, tt.want, tt.index)
		})
	}
}

func TestChainErrorMessage(t *testing.T) {
	link := &capability.ChainError{Index: 2, Err: capability.ErrExpired}
	if got, want := link.Error(), "writecap chain link 2: writecap expired"; got != want {
		t.Errorf("Error = %q, expected %q", got, want)
	}

	whole := &capability.ChainError{Index: -1, Err: capability.ErrTooDeep}
	if got, want := whole.Error(), "writecap chain: chain longer than the maximum depth"; got != want {
		t.Errorf("Error = %q, expected %q", got, want)
	}
}

func TestIssueRejects(t *testing.T) {
	f := newFixture(t)
	start := testNow.Truncate(time.Second)

	tests := []struct {
		name              string
		prefix            string
		notBefore, expire time.Time
	}{
		{"invalidPrefix", f.path("/a/"), start, start.Add(time.Hour)},
		{"relativePrefix", "a/b", start, start.Add(time.Hour)},
		{"expiresAtStart", f.path("/a"), start, start},
		{"expiresBeforeStart", f.path("/a"), start, start.Add(-time.Hour)},
		// Both times are cut to whole seconds, which would leave an empty period.
		{"expiresInSameSecond", f.path("/a"), start.Add(100 * time.Millisecond), start.Add(900 * time.Millisecond)},
		// time.Time comparisons wrap around for Unix seconds near the int64
		// limit, so a start at math.MaxInt64 looks earlier than any expiry.
		{"startAtMaxInt64", f.path("/a"), time.Unix(math.MaxInt64, 0), start.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := capability.Issue(f.root.Signing, f.a.Principal(), tt.prefix, tt.notBefore, tt.expire)
			if err == nil {
				t.Errorf("Issue = %+v, expected an error", w)
			}
		})
	}
}

func TestIssueInvalidPrefixError(t *testing.T) {
	f := newFixture(t)

	_, err := capability.Issue(f.root.Signing, f.a.Principal(), f.path("/a/"), testNow, testNow.Add(time.Hour))
	if !errors.Is(err, capability.ErrInvalidPath) {
		t.Errorf("Issue with prefix ending in /: error %v, expected ErrInvalidPath", err)
	}
}

func TestIssueTruncatesToSeconds(t *testing.T) {
	f := newFixture(t)
	notBefore := time.Date(2030, 1, 1, 0, 0, 10, 700_000_000, time.UTC)
	expires := notBefore.Add(time.Hour)

	w := f.issueAt(f.root, f.a, f.path("/a"), notBefore, expires)
	if w.NotBefore.Unix() != notBefore.Unix() || w.NotBefore.Nanosecond() != 0 {
		t.Errorf("NotBefore = %v, expected %v cut to the second", w.NotBefore, notBefore)
	}
	if w.Expires.Unix() != expires.Unix() || w.Expires.Nanosecond() != 0 {
		t.Errorf("Expires = %v, expected %v cut to the second", w.Expires, expires)
	}
}

func TestVerifyFarFutureNotBefore(t *testing.T) {
	// A grant for the last hour that int64 Unix seconds can express.
	f := newFixture(t)
	chain := capability.Chain{f.issueAt(f.root, f.a, f.path("/a"), time.Unix(math.MaxInt64-3600, 0), time.Unix(math.MaxInt64, 0))}

	err := chain.Verify(f.root.Principal(), f.a.Principal(), f.path("/a"), testNow)
	assertChainError(t, err, capability.ErrNotYetValid, 0)
}

func TestVerifyFarFutureExpires(t *testing.T) {
	// Expires at math.MaxInt64 means "never" and must not read as expired.
	f := newFixture(t)
	chain := capability.Chain{f.issueAt(f.root, f.a, f.path("/a"), testNow.Add(-time.Hour), time.Unix(math.MaxInt64, 0))}

	if err := chain.Verify(f.root.Principal(), f.a.Principal(), f.path("/a"), testNow); err != nil {
		t.Errorf("Verify of a grant expiring at Unix second math.MaxInt64: %v", err)
	}
}

func TestVerifyFarPastNotBefore(t *testing.T) {
	f := newFixture(t)
	chain := capability.Chain{f.issueAt(f.root, f.a, f.path("/a"), time.Unix(math.MinInt64, 0), testNow.Add(time.Hour))}

	if err := chain.Verify(f.root.Principal(), f.a.Principal(), f.path("/a"), testNow); err != nil {
		t.Errorf("Verify of a grant valid from Unix second math.MinInt64: %v", err)
	}
}

func marshal(t testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	data, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return data
}

func TestWritecapRoundTrip(t *testing.T) {
	f := newFixture(t)
	w := f.issue(f.root, f.a, f.path("/etc/netd"))
	data := marshal(t, w)

	parsed, err := capability.ParseWritecap(data)
	if err != nil {
		t.Fatalf("ParseWritecap: %v", err)
	}
	if !parsed.Issuer.Equal(w.Issuer) {
		t.Errorf("parsed Issuer differs from the original")
	}
	if parsed.Subject != w.Subject {
		t.Errorf("parsed Subject = %s, expected %s", parsed.Subject, w.Subject)
	}
	if parsed.Prefix != w.Prefix {
		t.Errorf("parsed Prefix = %q, expected %q", parsed.Prefix, w.Prefix)
	}
	if !parsed.NotBefore.Equal(w.NotBefore) {
		t.Errorf("parsed NotBefore = %v, expected %v", parsed.NotBefore, w.NotBefore)
	}
	if !parsed.Expires.Equal(w.Expires) {
		t.Errorf("parsed Expires = %v, expected %v", parsed.Expires, w.Expires)
	}
	if !bytes.Equal(parsed.Signature, w.Signature) {
		t.Errorf("parsed Signature = %x, expected %x", parsed.Signature, w.Signature)
	}
	if again := marshal(t, parsed); !bytes.Equal(again, data) {
		t.Errorf("re-encoding = %x, expected the original %x", again, data)
	}

	chain := capability.Chain{parsed}
	if err := chain.Verify(f.root.Principal(), f.a.Principal(), f.path("/etc/netd"), testNow); err != nil {
		t.Errorf("Verify of the parsed writecap: %v", err)
	}
}

func TestWritecapEncodingIgnoresTimeZone(t *testing.T) {
	f := newFixture(t)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	notBefore := testNow.Add(-time.Hour)
	expires := testNow.Add(time.Hour)

	utc := marshal(t, f.issueAt(f.root, f.a, f.path("/a"), notBefore, expires))
	zoned := marshal(t, f.issueAt(f.root, f.a, f.path("/a"), notBefore.In(zone), expires.In(zone)))

	// ECDSA signatures are randomized, so compare the signed part only.
	unsigned := len(utc) - principal.SignatureSize
	if !bytes.Equal(utc[:unsigned], zoned[:unsigned]) {
		t.Errorf("signed fields differ by time zone:\nUTC   %x\nzoned %x", utc[:unsigned], zoned[:unsigned])
	}
}

func TestWritecapMarshalUnsigned(t *testing.T) {
	f := newFixture(t)
	signed := f.issue(f.root, f.a, f.path("/a"))

	noSignature := *signed
	noSignature.Signature = nil
	shortSignature := *signed
	shortSignature.Signature = signed.Signature[:principal.SignatureSize-1]

	tests := map[string]*capability.Writecap{
		"zero":           {},
		"noIssuer":       {Prefix: f.path("/a"), Signature: signed.Signature},
		"noSignature":    &noSignature,
		"shortSignature": &shortSignature,
	}
	for name, w := range tests {
		if _, err := w.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary of writecap %s = nil error, expected a rejection", name)
		}
	}
}

// encodeWritecapFields encodes a writecap from raw fields, so that tests can
// build encodings that Issue never makes.
func encodeWritecapFields(version uint8, issuer, subject []byte, prefix string, notBefore, expires int64, sig []byte) []byte {
	e := wire.NewEncoder(wire.KindWritecap, version)
	e.Fixed(issuer)
	e.Fixed(subject)
	e.String(prefix)
	e.Int64(notBefore)
	e.Int64(expires)
	e.Fixed(sig)
	return e.Data()
}

func TestParseWritecapRejects(t *testing.T) {
	f := newFixture(t)
	valid := marshal(t, f.issue(f.root, f.a, f.path("/a")))
	issuer := f.root.Signing.Public().Bytes()
	subject := f.a.Principal()
	sig := make([]byte, principal.SignatureSize)

	offCurve := make([]byte, principal.PublicKeySize)
	offCurve[0], offCurve[32], offCurve[64] = 4, 1, 1

	wrongKind := append([]byte(nil), valid...)
	wrongKind[1] = byte(wire.KindReadcap)

	tests := []struct {
		name string
		data []byte
		want error // nil when no sentinel applies
	}{
		{"trailingByte", append(append([]byte(nil), valid...), 0), wire.ErrTrailing},
		{"unknownVersion", encodeWritecapFields(2, issuer, subject[:], f.path("/a"), 0, 1, sig), wire.ErrUnknownVersion},
		{"wrongKind", wrongKind, wire.ErrWrongKind},
		{"prefixTooLong", encodeWritecapFields(1, issuer, subject[:], f.path("/"+strings.Repeat("x", capability.MaxPathLen)), 0, 1, sig), wire.ErrTooLong},
		{"prefixInvalid", encodeWritecapFields(1, issuer, subject[:], f.path("/a/../b"), 0, 1, sig), capability.ErrInvalidPath},
		{"prefixEmpty", encodeWritecapFields(1, issuer, subject[:], "", 0, 1, sig), capability.ErrInvalidPath},
		{"issuerOffCurve", encodeWritecapFields(1, offCurve, subject[:], f.path("/a"), 0, 1, sig), nil},
		{"empty", nil, wire.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := capability.ParseWritecap(tt.data)
			if err == nil {
				t.Fatalf("ParseWritecap = %+v, expected an error", w)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("ParseWritecap error %v does not wrap the expected %v", err, tt.want)
			}
		})
	}
}

func TestParseWritecapTruncated(t *testing.T) {
	f := newFixture(t)
	data := marshal(t, f.issue(f.root, f.a, f.path("/a")))

	for cut := range len(data) {
		_, err := capability.ParseWritecap(data[:cut])
		if !errors.Is(err, wire.ErrTruncated) {
			t.Errorf("ParseWritecap of the first %d of %d bytes: error %v, expected ErrTruncated", cut, len(data), err)
		}
	}
}

func TestParseWritecapUnsignedFields(t *testing.T) {
	// ParseWritecap checks form only, so a zero signature and an empty
	// validity period parse, and they still re-encode byte for byte.
	f := newFixture(t)
	subject := f.a.Principal()
	data := encodeWritecapFields(1, f.root.Signing.Public().Bytes(), subject[:], f.path("/a"), math.MaxInt64, math.MinInt64, make([]byte, principal.SignatureSize))

	w, err := capability.ParseWritecap(data)
	if err != nil {
		t.Fatalf("ParseWritecap: %v", err)
	}
	if again := marshal(t, w); !bytes.Equal(again, data) {
		t.Errorf("re-encoding = %x, expected the original %x", again, data)
	}

	err = capability.Chain{w}.Verify(f.root.Principal(), f.a.Principal(), f.path("/a"), testNow)
	assertChainError(t, err, capability.ErrBadSignature, 0)
}

func TestChainRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 2, capability.MaxChainDepth} {
		t.Run(fmt.Sprintf("%dLinks", n), func(t *testing.T) {
			f := newFixture(t)
			chain, writer, prefix := f.delegation(n)
			data := marshal(t, chain)

			parsed, err := capability.ParseChain(data)
			if err != nil {
				t.Fatalf("ParseChain: %v", err)
			}
			if len(parsed) != n {
				t.Fatalf("parsed %d links, expected %d", len(parsed), n)
			}
			for i := range parsed {
				if !bytes.Equal(marshal(t, parsed[i]), marshal(t, chain[i])) {
					t.Errorf("parsed link %d encodes differently from the original", i)
				}
			}
			if again := marshal(t, parsed); !bytes.Equal(again, data) {
				t.Errorf("re-encoding = %x, expected the original %x", again, data)
			}

			if err := parsed.Verify(f.root.Principal(), writer.Principal(), prefix, testNow); err != nil {
				t.Errorf("Verify of the parsed chain: %v", err)
			}
		})
	}
}

func TestChainMarshalTooDeep(t *testing.T) {
	f := newFixture(t)
	chain, _, _ := f.delegation(capability.MaxChainDepth + 1)

	if _, err := chain.MarshalBinary(); err == nil {
		t.Errorf("MarshalBinary of %d links = nil error, expected a rejection", len(chain))
	}
}

func TestChainMarshalUnsignedLink(t *testing.T) {
	chain := capability.Chain{{}}

	if _, err := chain.MarshalBinary(); err == nil {
		t.Errorf("MarshalBinary of a chain with an unsigned link = nil error, expected a rejection")
	}
}

// encodeChainLinks encodes a chain header, the count and the given links.
func encodeChainLinks(version uint8, count uint32, links ...[]byte) []byte {
	e := wire.NewEncoder(wire.KindChain, version)
	e.Uint32(count)
	for _, link := range links {
		e.Bytes(link)
	}
	return e.Data()
}

func TestParseChainRejects(t *testing.T) {
	f := newFixture(t)
	chain, _, _ := f.delegation(2)
	valid := marshal(t, chain)
	link := marshal(t, chain[0])

	manyLinks := make([][]byte, capability.MaxChainDepth+1)
	for i := range manyLinks {
		manyLinks[i] = link
	}
	wrongKind := append([]byte(nil), valid...)
	wrongKind[1] = byte(wire.KindWritecap)

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"trailingByte", append(append([]byte(nil), valid...), 0), wire.ErrTrailing},
		{"unknownVersion", encodeChainLinks(2, 1, link), wire.ErrUnknownVersion},
		{"wrongKind", wrongKind, wire.ErrWrongKind},
		{"tooManyLinks", encodeChainLinks(1, capability.MaxChainDepth+1, manyLinks...), wire.ErrTooLong},
		{"countHuge", encodeChainLinks(1, math.MaxUint32), wire.ErrTooLong},
		{"countAboveLinks", encodeChainLinks(1, 2, link), wire.ErrTruncated},
		{"countBelowLinks", encodeChainLinks(1, 1, link, link), wire.ErrTrailing},
		{"linkTooLong", encodeChainLinks(1, 1, make([]byte, 8192)), wire.ErrTooLong},
		{"linkTrailing", encodeChainLinks(1, 1, append(append([]byte(nil), link...), 0)), wire.ErrTrailing},
		{"linkTruncated", encodeChainLinks(1, 1, link[:len(link)-1]), wire.ErrTruncated},
		{"linkWrongKind", encodeChainLinks(1, 1, valid), wire.ErrWrongKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := capability.ParseChain(tt.data)
			if !errors.Is(err, tt.want) {
				t.Errorf("ParseChain = (%d links, %v), expected an error wrapping %v", len(c), err, tt.want)
			}
		})
	}
}

func TestParseChainNamesBadLink(t *testing.T) {
	f := newFixture(t)
	link := marshal(t, f.issue(f.root, f.a, f.path("/a")))
	data := encodeChainLinks(1, 2, link, link[:len(link)-1])

	_, err := capability.ParseChain(data)
	if err == nil {
		t.Fatalf("ParseChain = nil error, expected a rejection of link 1")
	}
	if !strings.Contains(err.Error(), "link 1") {
		t.Errorf("ParseChain error %q does not name link 1", err)
	}
}

func TestParseChainTruncated(t *testing.T) {
	f := newFixture(t)
	chain, _, _ := f.delegation(2)
	data := marshal(t, chain)

	for cut := range len(data) {
		_, err := capability.ParseChain(data[:cut])
		if !errors.Is(err, wire.ErrTruncated) {
			t.Errorf("ParseChain of the first %d of %d bytes: error %v, expected ErrTruncated", cut, len(data), err)
		}
	}
}

func FuzzParseWritecap(f *testing.F) {
	fx := newFixture(f)
	valid := marshal(f, fx.issue(fx.root, fx.a, fx.path("/etc/netd")))
	subject := fx.a.Principal()
	issuer := fx.root.Signing.Public().Bytes()
	sig := make([]byte, principal.SignatureSize)

	f.Add(valid)
	f.Add(marshal(f, fx.issue(fx.root, fx.a, fx.path(""))))
	f.Add(encodeWritecapFields(1, issuer, subject[:], fx.path("/a"), math.MaxInt64, math.MinInt64, sig))
	f.Add(encodeWritecapFields(1, issuer, subject[:], fx.path("/a"), -1, 0, sig))
	f.Add(encodeWritecapFields(1, issuer, subject[:], fx.path("/a/"), 0, 1, sig))
	f.Add(valid[:len(valid)-1])
	f.Add(append(append([]byte(nil), valid...), 0))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := capability.ParseWritecap(data)
		if err != nil {
			return
		}
		again, err := w.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted writecap %x does not encode: %v", data, err)
		}
		if !bytes.Equal(again, data) {
			t.Errorf("accepted writecap %x re-encodes as %x", data, again)
		}
	})
}

func FuzzParseChain(f *testing.F) {
	fx := newFixture(f)
	for _, n := range []int{0, 1, 3} {
		chain, _, _ := fx.delegation(n)
		f.Add(marshal(f, chain))
	}
	link := marshal(f, fx.issue(fx.root, fx.a, fx.path("/a")))
	f.Add(encodeChainLinks(1, 2, link))
	f.Add(encodeChainLinks(1, 1, link, link))
	f.Add(encodeChainLinks(1, capability.MaxChainDepth+1))
	f.Add(encodeChainLinks(1, 1, link[:len(link)-1]))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		chain, err := capability.ParseChain(data)
		if err != nil {
			return
		}
		if len(chain) > capability.MaxChainDepth {
			t.Errorf("accepted a chain of %d links, limit %d", len(chain), capability.MaxChainDepth)
		}
		again, err := chain.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted chain %x does not encode: %v", data, err)
		}
		if !bytes.Equal(again, data) {
			t.Errorf("accepted chain %x re-encodes as %x", data, again)
		}
	})
}

func TestChainTextRoundTrip(t *testing.T) {
	fx := newFixture(t)
	chain, _, _ := fx.delegation(2)
	text, err := chain.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), capability.ChainTextPrefix) {
		t.Fatalf("text form %q does not start with %q", text, capability.ChainTextPrefix)
	}
	for name, data := range map[string][]byte{
		"text":              text,
		"text with newline": append([]byte("  "), append(text, '\n')...),
		"binary":            marshal(t, chain),
	} {
		got, err := capability.ParseChainFile(data)
		if err != nil {
			t.Errorf("%s: ParseChainFile: %v", name, err)
			continue
		}
		if !bytes.Equal(marshal(t, got), marshal(t, chain)) {
			t.Errorf("%s: ParseChainFile returned another chain", name)
		}
	}
	if _, err := capability.ParseChainFile(text[:len(text)-3]); err == nil {
		t.Errorf("ParseChainFile accepted a cut text form")
	}
	if _, err := capability.ParseChainFile([]byte(capability.ChainTextPrefix + "!!!")); err == nil {
		t.Errorf("ParseChainFile accepted text that is not base64")
	}
}

func FuzzParseChainFile(f *testing.F) {
	fx := newFixture(f)
	chain, _, _ := fx.delegation(1)
	text, err := chain.MarshalText()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(text)
	f.Add(marshal(f, chain))
	f.Add([]byte(capability.ChainTextPrefix))
	f.Fuzz(func(t *testing.T, data []byte) {
		chain, err := capability.ParseChainFile(data)
		if err != nil {
			return
		}
		if _, err := chain.MarshalText(); err != nil {
			t.Fatalf("accepted chain does not encode as text: %v", err)
		}
	})
}
