package image

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	recoveryKeyLine = regexp.MustCompile(`Recovery key \(shown only now[^\n]*\n\s*\n\s*([A-Z2-7]{5}(?:-[A-Z2-7]{1,5})+)`)
	serviceStatus   = regexp.MustCompile(`storage state=ready pid=(\d+) restarts=0\s+fuse state=ready pid=(\d+)`)
	restartLine     = regexp.MustCompile(`storage exited \(killed by signal 9[^)]*\)[^\n]*restart[^\n]*in [0-9.]+m?s`)
	restartedStatus = regexp.MustCompile(`storage state=(\w+) pid=\d+ restarts=(\d+)\s+fuse state=(\w+) pid=(\d+)`)
)

// TestApplianceLifecycle boots one device again and again, as a user
// would. The first boot starts with a new TPM and an empty data disk and
// writes files, which the second boot reads back after a clean power off.
// Later boots restart a killed service and reboot by ctrl-alt-del, report
// a corrupted block, and refuse a changed measured boot until the recovery
// key is typed.
func TestApplianceLifecycle(t *testing.T) {
	requireImageTest(t, "apt-get", "dpkg-deb", "depmod", "qemu-system-x86_64", "swtpm", "mkfs.ext4", "debugfs")
	art := buildImage(t)
	dev := newAppliance(t)
	var recoveryKey string

	t.Run("first boot writes files", func(t *testing.T) {
		v := dev.boot(t, art, defaultCmdline)
		m := v.waitMatch(0, readyTimeout, recoveryKeyLine)
		recoveryKey = m[1]
		v.waitReady()
		v.run("cat /proc/mounts", "cgroup2 /sys/fs/cgroup cgroup2")
		v.run("cat /proc/mounts", "/bt fuse.blocktree")
		v.run("cat /proc/sys/kernel/hostname", "blocktree")
		v.run("cat /proc/modules", "virtio_rng")
		v.run("pwd", "/bt")
		v.exec("echo hello from the tree > /bt/hello.txt")
		v.exec("mkdir /bt/docs")
		// 256 KiB of random bytes (zeros would be a hole): the largest block on the disk, which the
		// corruption step below finds by its size.
		v.exec("dd if=/dev/urandom of=/bt/docs/big bs=4096 count=64")
		v.exec("sync")
		v.poweroff()
	})
	if recoveryKey == "" {
		t.Fatal("no recovery key from the first boot")
	}

	t.Run("second boot reads them back", func(t *testing.T) {
		v := dev.boot(t, art, defaultCmdline)
		v.waitReady()
		if strings.Contains(v.console.text(0), "Recovery key") {
			t.Fatal("the second boot showed a recovery key again")
		}
		v.run("cat /bt/hello.txt", "hello from the tree")
		v.run("ls -l /bt/docs", "big")
		v.poweroff()
	})

	t.Run("killed service restarts", func(t *testing.T) {
		v := dev.boot(t, art, defaultCmdline)
		v.waitReady()
		before := v.output("cat /run/bt/status", serviceStatus)
		offset := v.console.len()
		v.typeLine("kill -9 " + before[1])
		line := v.waitMatch(offset, commandTimeout, restartLine)
		t.Logf("restart logged: %s", line[0])
		// The FUSE server depends on the storage daemon: it stops, and
		// starts again once the daemon is ready.
		deadline := time.Now().Add(readyTimeout)
		for {
			m := v.output("cat /run/bt/status", restartedStatus)
			if m[1] == "ready" && m[2] == "1" && m[3] == "ready" && m[4] != before[2] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the services did not come back within %s: %s", readyTimeout, m[0])
			}
			time.Sleep(time.Second)
		}
		v.run("cat /bt/hello.txt", "hello from the tree")
		// The kernel turns ctrl-alt-del into SIGINT for PID 1, which
		// stops the services and reboots.
		v.ctrlAltDel()
	})

	t.Run("corrupted block is reported", func(t *testing.T) {
		offset, original := corruptLargestBlock(t, dev.disk)
		v := dev.boot(t, art, defaultCmdline)
		v.waitReady()
		v.run("cat /bt/hello.txt", "hello from the tree")
		v.run("wc -c /bt/docs/big", "input/output error")
		v.waitText(0, commandTimeout, "block=")
		if !regexp.MustCompile(`storage: [^\n]*(integrity|authentic|damaged)[^\n]*block=`).MatchString(v.console.text(0)) {
			t.Errorf("no integrity error naming the block from the storage service on the console")
		}
		v.reboot()
		restoreByte(t, dev.disk, offset, original)
	})

	t.Run("changed boot is refused, then recovered", func(t *testing.T) {
		changed := defaultCmdline + " bt.test=changed"
		before := fileDigest(t, dev.disk)
		v := dev.boot(t, art, changed)
		v.waitMatch(0, readyTimeout, regexp.MustCompile(`the TPM refused to unseal this device's keys: the measured boot changed`))
		v.waitText(0, commandTimeout, "recovery key: ")
		if readyLine.MatchString(v.console.text(0)) {
			t.Fatal("the device became ready although its keys did not unseal")
		}
		offset := v.console.len()
		v.typeLine("poweroff")
		v.waitExit(offset, poweringOff)
		if after := fileDigest(t, dev.disk); after != before {
			t.Fatalf("the data disk changed during the refused boot: sha256 %s before, %s after", before, after)
		}

		v = dev.boot(t, art, changed)
		v.waitText(0, readyTimeout, "recovery key: ")
		time.Sleep(promptSettle)
		v.typeLine(recoveryKey)
		v.waitText(0, readyTimeout, "blocktree: recovered")
		v.waitReady()
		v.run("cat /bt/hello.txt", "hello from the tree")
		v.poweroff()

		// The keys are sealed to the changed boot now.
		v = dev.boot(t, art, changed)
		v.waitReady()
		if strings.Contains(v.console.text(0), "refused") {
			t.Fatal("the TPM refused the boot the keys were sealed to during recovery")
		}
		v.poweroff()
	})
}

// corruptLargestBlock flips one byte in the middle of the largest block
// file on the data partition and returns its disk offset and old value.
// debugfs reads the ext4 file system in the image without mounting it.
func corruptLargestBlock(t *testing.T, disk string) (int64, byte) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	must(t, err, "open data disk")
	defer f.Close()
	info, err := f.Stat()
	must(t, err, "stat data disk")
	table, err := ReadGPT(f, info.Size())
	must(t, err, "read the data disk's GPT")
	var part *Partition
	for i := range table.Partitions {
		if table.Partitions[i].Name == "blocktree-data" {
			part = &table.Partitions[i]
		}
	}
	if part == nil {
		t.Fatal("no blocktree-data partition on the data disk")
	}
	fs := fmt.Sprintf("%s?offset=%d", disk, part.Offset())

	var cmds strings.Builder
	for i := 0; i < 256; i++ {
		fmt.Fprintf(&cmds, "ls -l /node/blocks/%02x\n", i)
	}
	listing := debugfs(t, fs, cmds.String())
	// Block files are named ID-VERSION; take the newest version of the
	// largest block.
	var bestPath string
	var bestSize int64
	for _, block := range parseListing(listing) {
		if block.size > bestSize || block.size == bestSize && block.path > bestPath {
			bestPath, bestSize = block.path, block.size
		}
	}
	if bestSize < 64<<10 {
		t.Fatalf("no block file of at least 64 KiB on the data disk (largest %d bytes at %q)", bestSize, bestPath)
	}
	stats := debugfs(t, fs, "stats\n")
	m := regexp.MustCompile(`Block size:\s+(\d+)`).FindStringSubmatch(stats)
	if m == nil {
		t.Fatalf("no block size in debugfs stats:\n%s", stats)
	}
	fsBlock, _ := strconv.ParseInt(m[1], 10, 64)
	// The physical block that holds byte bestSize/2 of the file.
	logical := bestSize / 2 / fsBlock
	out := debugfs(t, fs, fmt.Sprintf("bmap %s %d\n", bestPath, logical))
	physical, err := strconv.ParseInt(lastNumber(out), 10, 64)
	must(t, err, "bmap output %q", out)
	offset := part.Offset() + physical*fsBlock + 123

	var b [1]byte
	_, err = f.ReadAt(b[:], offset)
	must(t, err, "read the byte to flip")
	_, err = f.WriteAt([]byte{b[0] ^ 0x5a}, offset)
	must(t, err, "flip a byte")
	must(t, f.Sync(), "sync the data disk")
	t.Logf("flipped the byte at disk offset %d, in block file %s (%d bytes)", offset, bestPath, bestSize)
	return offset, b[0]
}

func restoreByte(t *testing.T, disk string, offset int64, value byte) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	must(t, err, "open data disk")
	defer f.Close()
	_, err = f.WriteAt([]byte{value}, offset)
	must(t, err, "restore the flipped byte")
}

func debugfs(t *testing.T, fs, commands string) string {
	t.Helper()
	cmdFile := t.TempDir() + "/cmds"
	must(t, os.WriteFile(cmdFile, []byte(commands), 0o600), "write debugfs commands")
	out, err := exec.Command("debugfs", "-f", cmdFile, fs).CombinedOutput()
	must(t, err, "debugfs: %s", out)
	return string(out)
}

type listedFile struct {
	path string
	size int64
}

// parseListing reads the output of debugfs "ls -l DIR" commands: each
// command is echoed as "debugfs: ls -l DIR", and each entry line ends in
// size, date and name.
func parseListing(out string) []listedFile {
	var files []listedFile
	dir := ""
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		line := s.Text()
		if rest, ok := strings.CutPrefix(line, "debugfs: ls -l "); ok {
			dir = strings.TrimSpace(rest)
			continue
		}
		fields := strings.Fields(line)
		if dir == "" || len(fields) < 9 || !strings.HasPrefix(fields[1], "100") {
			continue
		}
		size, err := strconv.ParseInt(fields[5], 10, 64)
		if err != nil {
			continue
		}
		files = append(files, listedFile{path: dir + "/" + fields[len(fields)-1], size: size})
	}
	return files
}

func lastNumber(s string) string {
	fields := strings.Fields(s)
	for i := len(fields) - 1; i >= 0; i-- {
		if _, err := strconv.ParseInt(fields[i], 10, 64); err == nil {
			return fields[i]
		}
	}
	return ""
}
