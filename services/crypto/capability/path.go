package capability

import (
	"errors"
	"fmt"
	"strings"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// MaxPathLen bounds a tree path or prefix in bytes, as Linux's PATH_MAX does.
const MaxPathLen = 4096

// ErrInvalidPath is wrapped by every path validation failure.
var ErrInvalidPath = errors.New("invalid tree path")

// ValidatePath checks that path is a canonical tree path: absolute, rooted at
// a principal, with no empty, "." or ".." components and no NUL bytes.
func ValidatePath(path string) error {
	_, err := PathRoot(path)
	return err
}

// PathRoot returns the root principal that path starts with, after checking
// that path is canonical.
func PathRoot(path string) (principal.Principal, error) {
	if len(path) > MaxPathLen {
		return principal.Principal{}, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidPath, len(path), MaxPathLen)
	}
	if !strings.HasPrefix(path, "/") {
		return principal.Principal{}, fmt.Errorf("%w %q: must start with /", ErrInvalidPath, path)
	}
	parts := strings.Split(path[1:], "/")
	for _, name := range parts {
		switch {
		case name == "":
			return principal.Principal{}, fmt.Errorf("%w %q: empty component (double or trailing /)", ErrInvalidPath, path)
		case name == "." || name == "..":
			return principal.Principal{}, fmt.Errorf("%w %q: component %q is not allowed", ErrInvalidPath, path, name)
		case strings.IndexByte(name, 0) >= 0:
			return principal.Principal{}, fmt.Errorf("%w %q: contains a NUL byte", ErrInvalidPath, path)
		}
	}
	root, err := principal.Parse(parts[0])
	if err != nil {
		return principal.Principal{}, fmt.Errorf("%w %q: first component is not a principal: %v", ErrInvalidPath, path, err)
	}
	return root, nil
}

// Covers reports whether prefix covers path on component boundaries.
// Both must already be valid tree paths.
func Covers(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// RootPath returns the tree path of a root principal's whole tree.
func RootPath(root principal.Principal) string { return "/" + root.String() }
