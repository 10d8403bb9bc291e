package capability_test

import (
	"errors"
	pathpkg "path"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

func TestValidatePathAccepts(t *testing.T) {
	root := newCredential(t).Principal()
	r := capability.RootPath(root)

	// The longest valid path: the root path, "/" and filler up to MaxPathLen bytes.
	longest := r + "/" + strings.Repeat("x", capability.MaxPathLen-len(r)-1)

	tests := map[string]string{
		"root":        r,
		"oneName":     r + "/etc",
		"nested":      r + "/etc/netd/config.toml",
		"dotPrefixed": r + "/.hidden",
		"threeDots":   r + "/...",
		"dotsInside":  r + "/a..b",
		"space":       r + "/a b",
		"unicode":     r + "/données",
		"backslash":   r + `/a\b`,
		"atMaxLen":    longest,
	}
	for name, path := range tests {
		t.Run(name, func(t *testing.T) {
			if err := capability.ValidatePath(path); err != nil {
				t.Errorf("ValidatePath(%q) = %v, expected nil", path, err)
			}
			got, err := capability.PathRoot(path)
			if err != nil {
				t.Fatalf("PathRoot(%q) = %v, expected nil", path, err)
			}
			if got != root {
				t.Errorf("PathRoot(%q) = %s, expected %s", path, got, root)
			}
		})
	}
}

func TestValidatePathRejects(t *testing.T) {
	root := newCredential(t).Principal()
	r := capability.RootPath(root)
	rootText := root.String()

	tests := map[string]string{
		"empty":             "",
		"slashOnly":         "/",
		"relative":          rootText + "/a",
		"relativeDot":       "./" + rootText,
		"doubleLeading":     "/" + r,
		"emptyComponent":    r + "//a",
		"trailingSlash":     r + "/a/",
		"rootTrailingSlash": r + "/",
		"dot":               r + "/./a",
		"dotLast":           r + "/a/.",
		"dotDot":            r + "/a/../b",
		"dotDotLast":        r + "/..",
		"nul":               r + "/a\x00b",
		"nulInRoot":         "/" + rootText[:10] + "\x00" + rootText[11:],
		"tooLong":           r + "/" + strings.Repeat("x", capability.MaxPathLen-len(r)),
		"notPrincipal":      "/etc/passwd",
		"upperPrincipal":    "/" + strings.ToUpper(rootText) + "/a",
		"shortPrincipal":    "/" + rootText[:len(rootText)-1] + "/a",
		"nonCanonicalRoot":  "/" + rootText[:len(rootText)-1] + "z/a",
		"dotRoot":           "/./" + rootText,
	}
	for name, path := range tests {
		t.Run(name, func(t *testing.T) {
			err := capability.ValidatePath(path)
			if !errors.Is(err, capability.ErrInvalidPath) {
				t.Errorf("ValidatePath(%q) = %v, expected ErrInvalidPath", path, err)
			}

			got, err := capability.PathRoot(path)
			if !errors.Is(err, capability.ErrInvalidPath) {
				t.Errorf("PathRoot(%q) error = %v, expected ErrInvalidPath", path, err)
			}
			if !got.IsZero() {
				t.Errorf("PathRoot(%q) returned root %s with its error, expected the zero Principal", path, got)
			}
		})
	}
}

func TestValidatePathNamesValue(t *testing.T) {
	path := capability.RootPath(newCredential(t).Principal()) + "/a//b"

	err := capability.ValidatePath(path)
	if err == nil {
		t.Fatalf("ValidatePath(%q) = nil, expected an error", path)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("ValidatePath error %q does not name the path %q", err, path)
	}
}

func TestRootPath(t *testing.T) {
	root := newCredential(t).Principal()

	if got, want := capability.RootPath(root), "/"+root.String(); got != want {
		t.Errorf("RootPath = %q, expected %q", got, want)
	}
	if err := capability.ValidatePath(capability.RootPath(root)); err != nil {
		t.Errorf("ValidatePath(RootPath) = %v, expected nil", err)
	}
}

func TestCovers(t *testing.T) {
	r := capability.RootPath(newCredential(t).Principal())
	other := capability.RootPath(newCredential(t).Principal())

	tests := []struct {
		prefix, path string
		want         bool
	}{
		{r + "/a", r + "/a", true},
		{r + "/a", r + "/a/b", true},
		{r + "/a", r + "/a/b/c", true},
		{r, r + "/a", true},
		{r, r, true},
		{r + "/a", r + "/ab", false},
		{r + "/a", r + "/a.b", false},
		{r + "/a/b", r + "/a", false},
		{r + "/a", r, false},
		{r + "/a", r + "/b", false},
		{r, other, false},
		{r, other + "/a", false},
	}
	for _, tt := range tests {
		if got := capability.Covers(tt.prefix, tt.path); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, expected %v", tt.prefix, tt.path, got, tt.want)
		}
	}
}

func FuzzValidatePath(f *testing.F) {
	r := capability.RootPath(newCredential(f).Principal())
	f.Add(r)
	f.Add(r + "/etc/netd")
	f.Add(r + "/a/")
	f.Add(r + "//a")
	f.Add(r + "/../a")
	f.Add(r + "/a\x00")
	f.Add("/" + principal.Principal{}.String())
	f.Add("")
	f.Add("/")
	f.Add("relative/path")

	f.Fuzz(func(t *testing.T, path string) {
		root, err := capability.PathRoot(path)
		if validateErr := capability.ValidatePath(path); (validateErr == nil) != (err == nil) {
			t.Fatalf("ValidatePath(%q) = %v but PathRoot error = %v", path, validateErr, err)
		}
		if err != nil {
			if !errors.Is(err, capability.ErrInvalidPath) {
				t.Errorf("PathRoot(%q) error %v does not wrap ErrInvalidPath", path, err)
			}
			return
		}

		// An accepted path is canonical, so path.Clean leaves it unchanged.
		if cleaned := pathpkg.Clean(path); cleaned != path {
			t.Errorf("accepted path %q cleans to %q", path, cleaned)
		}
		if len(path) > capability.MaxPathLen {
			t.Errorf("accepted path of %d bytes, limit %d", len(path), capability.MaxPathLen)
		}
		if strings.IndexByte(path, 0) >= 0 {
			t.Errorf("accepted path %q contains a NUL byte", path)
		}
		if !capability.Covers(capability.RootPath(root), path) {
			t.Errorf("accepted path %q is not covered by the path of its root %s", path, root)
		}
	})
}
