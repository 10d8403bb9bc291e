package ifconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxRecordSize bounds the state file. MaxInterfaces interfaces with
// MaxAddresses addresses and two gateways each fit in well under it.
const maxRecordSize = 1 << 20

// owned is one address or default route that a Manager added to the
// kernel. Exactly one of Address and Gateway is valid.
type owned struct {
	Interface string       `json:"interface"`
	Address   netip.Prefix `json:"address,omitzero"`
	Gateway   netip.Addr   `json:"gateway,omitzero"`
}

func (o owned) String() string {
	if o.Address.IsValid() {
		return o.Address.String()
	}
	return "default via " + o.Gateway.String()
}

// recordFile is the state file's layout.
type recordFile struct {
	Owned []owned `json:"owned"`
}

// decodeRecord parses a state file and checks every entry.
func decodeRecord(data []byte) ([]owned, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("state file is %d bytes, more than the maximum of %d", len(data), maxRecordSize)
	}
	var f recordFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	for _, o := range f.Owned {
		if err := checkInterfaceName(o.Interface); err != nil || o.Interface == "" {
			return nil, fmt.Errorf("entry for interface %q: invalid interface name", o.Interface)
		}
		if o.Address.IsValid() == o.Gateway.IsValid() {
			return nil, fmt.Errorf("entry for interface %q: needs exactly one of address and gateway", o.Interface)
		}
	}
	return f.Owned, nil
}

// encodeRecord returns the state file for a set of owned entries, sorted so
// that equal sets give equal files.
func encodeRecord(set map[owned]struct{}) []byte {
	f := recordFile{Owned: make([]owned, 0, len(set))}
	for o := range set {
		f.Owned = append(f.Owned, o)
	}
	slices.SortFunc(f.Owned, func(a, b owned) int {
		if c := strings.Compare(a.Interface, b.Interface); c != 0 {
			return c
		}
		return strings.Compare(a.String(), b.String())
	})
	data, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		// Only netip values and strings are encoded, which cannot fail.
		panic(fmt.Sprintf("encode state file: %v", err))
	}
	return append(data, '\n')
}

// loadRecord reads the state file at path. A missing file is an empty
// record.
func loadRecord(path string) (map[owned]struct{}, error) {
	set := make(map[owned]struct{})
	if path == "" {
		return set, nil
	}
	data, err := readLimited(path, maxRecordSize)
	if errors.Is(err, os.ErrNotExist) {
		return set, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := decodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w: fix or delete it (without it netd leaves the addresses it listed alone)", path, err)
	}
	for _, o := range entries {
		set[o] = struct{}{}
	}
	return set, nil
}

// saveRecord replaces the state file at path with set, through a
// temporary file and a rename so that a crash leaves the old or the new
// file.
func saveRecord(path string, set map[owned]struct{}) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ifconfig-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(encodeRecord(set)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readLimited reads a whole file of at most limit bytes. A longer file
// returns limit+1 bytes, so that the caller's size check rejects it without
// reading the rest.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}
