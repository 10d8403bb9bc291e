//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBlockDevices writes one uevent file for each device into a temporary
// directory and points sysClassBlock there for the test.
func fakeBlockDevices(t *testing.T, uevents map[string]string) {
	t.Helper()
	root := t.TempDir()
	for name, text := range uevents {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "uevent"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := sysClassBlock
	sysClassBlock = root
	t.Cleanup(func() { sysClassBlock = old })
}

func TestScanPartitionsFindsDataPartition(t *testing.T) {
	fakeBlockDevices(t, map[string]string{
		"vda":  "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda1": "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=EFI system\n",
		"vda2": "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=blocktree-data\n",
	})
	dev, err := scanPartitions()
	if err != nil {
		t.Fatal(err)
	}
	if dev != "/dev/vda2" {
		t.Fatalf("data partition = %q, want /dev/vda2", dev)
	}
}

func TestScanPartitionsNoneFound(t *testing.T) {
	fakeBlockDevices(t, map[string]string{
		"vda":  "DEVNAME=vda\nDEVTYPE=disk\n",
		"vda1": "DEVNAME=vda1\nDEVTYPE=partition\nPARTNAME=EFI system\n",
		// A whole disk named like the partition does not count.
		"vdb": "DEVNAME=vdb\nDEVTYPE=disk\nPARTNAME=blocktree-data\n",
	})
	dev, err := scanPartitions()
	if err != nil {
		t.Fatalf("scanPartitions: %v", err)
	}
	if dev != "" {
		t.Fatalf("data partition = %q, want none", dev)
	}
}

func TestScanPartitionsRejectsTwo(t *testing.T) {
	fakeBlockDevices(t, map[string]string{
		"vda1": "DEVNAME=vda1\nDEVTYPE=partition\nPARTNAME=blocktree-data\n",
		"sda1": "DEVNAME=sda1\nDEVTYPE=partition\nPARTNAME=blocktree-data\n",
	})
	_, err := scanPartitions()
	if err == nil {
		t.Fatal("two data partitions were accepted")
	}
	for _, want := range []string{"/dev/vda1", "/dev/sda1", "attach only one"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
