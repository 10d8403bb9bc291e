package endpoint

import (
	"errors"
	"fmt"
	"strings"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Address kinds.
const (
	KindService = "svc"
	KindProgram = "proc"
)

// MaxNameLen bounds the last component of an address in bytes.
const MaxNameLen = 64

// ErrInvalidAddress is wrapped by every error of Parse.
var ErrInvalidAddress = errors.New("invalid bus address")

// Address is a parsed bus address: /ROOT/dev/NODE/KIND/NAME.
type Address struct {
	Root principal.Principal
	Node principal.Principal
	Kind string // KindService or KindProgram
	Name string
}

// Service returns the address of the service name of node in root's tree.
func Service(root, node principal.Principal, name string) Address {
	return Address{Root: root, Node: node, Kind: KindService, Name: name}
}

// String returns the address as a tree path.
func (a Address) String() string {
	return "/" + a.Root.String() + "/dev/" + a.Node.String() + "/" + a.Kind + "/" + a.Name
}

// Parse checks and splits an address of the form /ROOT/dev/NODE/svc/NAME or
// /ROOT/dev/NODE/proc/NAME.
func Parse(s string) (Address, error) {
	root, err := capability.PathRoot(s)
	if err != nil {
		return Address{}, fmt.Errorf("%w %q: %w", ErrInvalidAddress, s, err)
	}
	parts := strings.Split(s[1:], "/")
	if len(parts) != 5 || parts[1] != "dev" {
		return Address{}, fmt.Errorf("%w %q: expected /ROOT/dev/NODE/svc/NAME or /ROOT/dev/NODE/proc/NAME", ErrInvalidAddress, s)
	}
	node, err := principal.Parse(parts[2])
	if err != nil {
		return Address{}, fmt.Errorf("%w %q: the component after dev is not a node principal: %v", ErrInvalidAddress, s, err)
	}
	a := Address{Root: root, Node: node, Kind: parts[3], Name: parts[4]}
	if a.Kind != KindService && a.Kind != KindProgram {
		return Address{}, fmt.Errorf("%w %q: kind %q, expected %s or %s", ErrInvalidAddress, s, a.Kind, KindService, KindProgram)
	}
	if err := checkName(a.Name); err != nil {
		return Address{}, fmt.Errorf("%w %q: %w", ErrInvalidAddress, s, err)
	}
	return a, nil
}

// checkName checks the last component, which also becomes a file name
// under the run directory.
func checkName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("name is %d bytes, expected 1 to %d", len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("name %q: byte %d (%q) is not allowed; use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", name, i, c)
		}
	}
	return nil
}
