package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCustomReleaseFindsOneRelease(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "lib", "modules", "6.1.192"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := customRelease(dir)
	if err != nil {
		t.Fatalf("customRelease: %v", err)
	}
	if got != "6.1.192" {
		t.Errorf("release %q, expected 6.1.192", got)
	}
}

func TestCustomReleaseRejectsAmbiguousTree(t *testing.T) {
	dir := t.TempDir()
	if _, err := customRelease(dir); err == nil || !strings.Contains(err.Error(), "make kernel") {
		t.Errorf("empty tree: error %v, expected one that points to make kernel", err)
	}
	for _, release := range []string{"6.1.0", "6.1.1"} {
		if err := os.MkdirAll(filepath.Join(dir, "lib", "modules", release), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := customRelease(dir); err == nil || !strings.Contains(err.Error(), "2 releases") {
		t.Errorf("two releases: error %v, expected one that counts them", err)
	}
}
