package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseModulesDep(t *testing.T) {
	deps, err := ParseModulesDep([]byte("kernel/fs/fuse/fuse.ko:\n# comment\n\nkernel/a.ko: kernel/b.ko kernel/c.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := deps["kernel/a.ko"]; !slices.Equal(got, []string{"kernel/b.ko", "kernel/c.ko"}) {
		t.Errorf("dependencies of a.ko = %q", got)
	}
	if got, ok := deps["kernel/fs/fuse/fuse.ko"]; !ok || len(got) != 0 {
		t.Errorf("fuse.ko = %q, %v; expected present without dependencies", got, ok)
	}
}

func TestParseModulesDepRejectsLineWithoutColon(t *testing.T) {
	_, err := ParseModulesDep([]byte("kernel/a.ko kernel/b.ko\n"))
	if err == nil || !strings.Contains(err.Error(), "kernel/a.ko kernel/b.ko") {
		t.Errorf("error %v, expected one naming the line", err)
	}
}

func TestReadLinesSkipsCommentsAndBlanks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "modules.txt")
	if err := os.WriteFile(path, []byte("# list\nvirtio_pci\n\n  fuse  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines, err := ReadLines(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lines, []string{"virtio_pci", "fuse"}) {
		t.Errorf("lines %q", lines)
	}
}

// FuzzParseModulesDep feeds modules.dep contents to the parser, which
// must return a map or an error and never panic.
func FuzzParseModulesDep(f *testing.F) {
	f.Add([]byte("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"))
	f.Add([]byte(":\n"))
	f.Add([]byte("no colon\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		deps, err := ParseModulesDep(data)
		if err == nil && deps == nil {
			t.Fatal("nil map without an error")
		}
	})
}
