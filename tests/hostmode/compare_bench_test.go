package hostmode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
)

// BenchmarkCompareFileSystems runs the same workloads on four directories
// in one run. They are a directory of the host's file system (plain), a
// pass-through FUSE mount of such a directory (go-fuse's example/loopback,
// built from the version in go.mod), a gocryptfs mount and a Blocktree
// node's mount. Each sub-benchmark is named row/target and reports its
// figure and, once they are measured, its speed relative to gocryptfs and
// to the pass-through mount (above 1 is faster). A summary table with every
// ratio is printed at the end. Results are in docs/benchmarks.md.
//
// The two sequential rows and the create and delete rows measure every
// target twice, the second time in the reverse order, and the table gives
// the total work over the total time.
//
// Page cache: before every iteration of a read row the benchmark syncs and
// writes 3 to /proc/sys/vm/drop_caches, so that plain, pass-through and
// gocryptfs read from the disk. Blocktree keeps file data in the storage
// daemon's memory, which dropping the kernel's caches does not touch.
func BenchmarkCompareFileSystems(b *testing.B) {
	requireHost(b)
	requireTools(b, "gocryptfs", "git", "tar", "go")

	tarball, fileCount := goSourceTarball(b)
	targets := compareTargets(b)
	results := map[string]map[string]float64{}
	// background holds the CPU time each server used in the pauses,
	// charged to the row that server last worked for. For Blocktree that
	// time is its checkpoints.
	background := map[string]map[string]time.Duration{}
	lastRow := map[string]string{}
	pause := func(b *testing.B) {
		for i, used := range settle(b, targets) {
			if last := lastRow[targets[i].name]; last != "" {
				background[last][targets[i].name] += used
			}
		}
	}
	var rows []compareRow
	for _, row := range compareRows(tarball, fileCount) {
		rows = append(rows, row)
		results[row.name] = map[string]float64{}
		background[row.name] = map[string]time.Duration{}
		b.Run(row.name, func(b *testing.B) {
			passes := [][]compareTarget{targets}
			if row.twice {
				reversed := slices.Clone(targets)
				slices.Reverse(reversed)
				passes = append(passes, reversed)
			}
			figures := map[string][]float64{}
			for pass, order := range passes {
				for _, target := range order {
					dir := filepath.Join(target.dir, row.name)
					if err := os.MkdirAll(dir, 0o755); err != nil {
						b.Fatal(err)
					}
					lastRow[target.name] = row.name
					if row.setup != nil {
						row.setup(b, dir)
					}
					pause(b)
					warmMemory(b)
					name := target.name
					if len(passes) > 1 {
						name = fmt.Sprintf("%s/pass%d", target.name, pass+1)
					}
					b.Run(name, func(b *testing.B) {
						figure := row.measure(b, dir)
						figures[target.name] = append(figures[target.name], figure)
						b.ReportMetric(figure, row.unit)
						for _, base := range []string{"gocryptfs", "passthrough"} {
							if baseFigures := figures[base]; len(baseFigures) > pass {
								b.ReportMetric(row.speedRatio(figure, baseFigures[pass]), "speed_vs_"+base)
							}
						}
					})
					if row.teardown != nil && pass == len(passes)-1 {
						row.teardown(b, dir)
					}
				}
			}
			for _, target := range targets {
				results[row.name][target.name] = row.combine(figures[target.name])
			}
		})
	}
	pause(b)
	printCompareTable(rows, targets, results)
	printBackgroundTable(rows, targets, background)
}

// compareTarget is one directory the workloads run in.
type compareTarget struct {
	name string
	dir  string
	pid  int // the FUSE server's process, 0 for the plain directory
}

// compareTargets mounts the three FUSE file systems and returns them with
// the plain directory, in the order the rows measure them: gocryptfs and
// the pass-through mount first, so that the others can report ratios to
// both. Every mount is unmounted and every process ended by the cleanups.
func compareTargets(b *testing.B) []compareTarget {
	base := b.TempDir()
	mkdir := func(name string) string {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		return dir
	}

	// gocryptfs 2.3 reads the password from a file. A cost of 2^10 for
	// scrypt only shortens the mount, because scrypt runs once per mount.
	passfile := filepath.Join(base, "gocryptfs-password")
	if err := os.WriteFile(passfile, []byte("benchmark password\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cipher := mkdir("gocryptfs-cipher")
	run(b, "", nil, "gocryptfs", "-init", "-q", "-scryptn", "10", "-passfile", passfile, cipher)
	gocryptfsMount := mkdir("gocryptfs")
	gocryptfsPID := startFUSEProcess(b, gocryptfsMount, "gocryptfs", "-fg", "-q", "-nosyslog", "-passfile", passfile, cipher, gocryptfsMount)

	loopback := filepath.Join(base, "loopback")
	run(b, "", nil, "go", "build", "-o", loopback, "github.com/hanwen/go-fuse/v2/example/loopback")
	loopbackOrig := mkdir("passthrough-orig")
	loopbackMount := mkdir("passthrough")
	loopbackPID := startFUSEProcess(b, loopbackMount, loopback, "-q", loopbackMount, loopbackOrig)

	// With an interval of 3 s, the node checkpoints what a row changed
	// once its tree has been quiet for two seconds, so in the pause before
	// the next measurement (settle) instead of in it. The interval also
	// sets the age at which a checkpoint runs while requests go on (ten
	// intervals): 30 s is longer than any row, where 1 s made a checkpoint
	// run in the middle of the 11 s untar.
	state, mount := newNodeDirs(b)
	n := startNode(b, state, mount, "--checkpoint-interval", "3s")
	if path := os.Getenv("BT_BENCH_NODE_LOG"); path != "" {
		// Runs after n.stop: cleanups run last first.
		b.Cleanup(func() {
			if err := os.WriteFile(path, []byte(n.log()), 0o644); err != nil {
				b.Error(err)
			}
		})
	}
	b.Cleanup(n.stop)

	return []compareTarget{
		{"gocryptfs", gocryptfsMount, gocryptfsPID},
		{"passthrough", loopbackMount, loopbackPID},
		{"plain", mkdir("plain"), 0},
		{"blocktree", mount, n.cmd.Process.Pid},
	}
}

// startFUSEProcess starts a FUSE server that stays in the foreground,
// waits until it has mounted mount and returns its process id. The cleanup
// unmounts it and ends the process and its process group.
func startFUSEProcess(b *testing.B, mount, name string, args ...string) int {
	b.Helper()
	cmd := exec.Command(name, args...)
	var output syncBuffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		if isMounted(mount) {
			if out, err := exec.Command("fusermount3", "-u", mount).CombinedOutput(); err != nil {
				b.Errorf("fusermount3 -u %s: %v: %s", mount, err, out)
				lazyUnmount(b, mount)
			}
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			b.Errorf("%s did not exit within 10 seconds of the unmount of %s, killing it", name, mount)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if !testenv.WaitGroupGone(cmd.Process.Pid, 5*time.Second) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			b.Errorf("%s exited but left processes of its process group running", name)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(mount) {
		select {
		case <-exited:
			b.Fatalf("%s exited with %v before mounting %s\noutput:\n%s", name, cmd.ProcessState, mount, output.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not mount %s within 30 seconds\noutput:\n%s", name, mount, output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd.Process.Pid
}

// Sizes of the workloads. Each row's name states its size.
const (
	sequentialSize = 1 << 30   // bytes written and read by the sequential rows
	sequentialIO   = 1 << 20   // request size of the sequential rows
	randomFileSize = 256 << 20 // size of the file of the random rows
	randomIO       = 4 << 10   // request size of the random rows
	randomOps      = 20000     // requests per iteration of a random row
	metadataFiles  = 10000     // files created, then passed to stat, then deleted
)

// compareRow is one workload. Its setup and teardown run on each target's
// directory before and after the target's sub-benchmark and are not timed.
// Its measure runs the sub-benchmark's iterations and returns the figure in
// unit.
type compareRow struct {
	name     string
	unit     string
	setup    func(b *testing.B, dir string)
	measure  func(b *testing.B, dir string) float64
	teardown func(b *testing.B, dir string)
	// lowerIsFaster is set for rows whose figure is a time.
	lowerIsFaster bool
	// twice makes the row measure every target a second time, in the
	// reverse order, so that a row bound by the disk does not favour the
	// target that runs first. This machine's disk slows down for a while
	// after each target's 1 GiB, and the pause before each target does not
	// fully hide it. The create and delete rows, short and bound by
	// wake-up latency, swing from run to run: gocryptfs created 2,529 to
	// 6,596 files per second in single passes on one day.
	twice bool
}

// combine returns the figure of the same work done in every pass: the mean
// of times, and for rates the total work over the total time.
func (r compareRow) combine(figures []float64) float64 {
	var sum float64
	for _, f := range figures {
		if r.lowerIsFaster {
			sum += f
		} else {
			sum += 1 / f
		}
	}
	if r.lowerIsFaster {
		return sum / float64(len(figures))
	}
	return float64(len(figures)) / sum
}

// speedRatio returns how many times faster figure is than base.
func (r compareRow) speedRatio(figure, base float64) float64 {
	if r.lowerIsFaster {
		return base / figure
	}
	return figure / base
}

func compareRows(tarball string, fileCount int) []compareRow {
	const seqFile, randFile, treeDir, filesDir = "sequential", "random", "go", "files"
	// Some rows work on what an earlier row left in its directory, a
	// sibling of their own.
	seqWrite := fmt.Sprintf("seq-write-%s-fsync", sizeName(sequentialSize))
	randRead := fmt.Sprintf("rand-read-4KiB-%s", sizeName(randomFileSize))
	create := fmt.Sprintf("create-%d-files", metadataFiles)
	untar := fmt.Sprintf("untar-go-src-%d-files", fileCount)
	inRow := func(dir, row string, names ...string) string {
		return filepath.Join(append([]string{filepath.Dir(dir), row}, names...)...)
	}
	megabytesPerSecond := func(b *testing.B, bytes int64) float64 {
		return float64(bytes) * float64(b.N) / b.Elapsed().Seconds() / 1e6
	}
	opsPerSecond := func(b *testing.B, ops int) float64 {
		return float64(ops) * float64(b.N) / b.Elapsed().Seconds()
	}
	secondsPerOp := func(b *testing.B) float64 {
		return b.Elapsed().Seconds() / float64(b.N)
	}
	remove := func(b *testing.B, path string) {
		if err := os.Remove(path); err != nil {
			b.Fatal(err)
		}
	}

	return []compareRow{
		{
			name:  seqWrite,
			unit:  "MB/s",
			twice: true,
			measure: func(b *testing.B, dir string) float64 {
				path := filepath.Join(dir, seqFile)
				for b.Loop() {
					b.StopTimer()
					removeIfExists(b, path)
					b.StartTimer()
					writeSequential(b, path, sequentialSize)
				}
				return megabytesPerSecond(b, sequentialSize)
			},
		},
		{
			// Reads the file that the write row left.
			name:  fmt.Sprintf("seq-read-%s", sizeName(sequentialSize)),
			unit:  "MB/s",
			twice: true,
			measure: func(b *testing.B, dir string) float64 {
				path := inRow(dir, seqWrite, seqFile)
				for b.Loop() {
					b.StopTimer()
					dropCaches(b)
					b.StartTimer()
					if n := readAll(b, path); n != sequentialSize {
						b.Fatalf("read %d bytes of %s, expected %d", n, path, sequentialSize)
					}
				}
				return megabytesPerSecond(b, sequentialSize)
			},
			teardown: func(b *testing.B, dir string) {
				remove(b, inRow(dir, seqWrite, seqFile))
			},
		},
		{
			name: randRead,
			unit: "ops/s",
			setup: func(b *testing.B, dir string) {
				writeSequential(b, filepath.Join(dir, randFile), randomFileSize)
			},
			measure: func(b *testing.B, dir string) float64 {
				path := filepath.Join(dir, randFile)
				for b.Loop() {
					b.StopTimer()
					dropCaches(b)
					b.StartTimer()
					randomRequests(b, path, false)
				}
				return opsPerSecond(b, randomOps)
			},
		},
		{
			// Writes into the file that the read row left, then fsyncs once.
			name: fmt.Sprintf("rand-write-4KiB-%s-fsync", sizeName(randomFileSize)),
			unit: "ops/s",
			measure: func(b *testing.B, dir string) float64 {
				path := inRow(dir, randRead, randFile)
				for b.Loop() {
					randomRequests(b, path, true)
				}
				return opsPerSecond(b, randomOps)
			},
			teardown: func(b *testing.B, dir string) {
				remove(b, inRow(dir, randRead, randFile))
			},
		},
		{
			name:  create,
			unit:  "files/s",
			twice: true,
			measure: func(b *testing.B, dir string) float64 {
				files := filepath.Join(dir, filesDir)
				for b.Loop() {
					b.StopTimer()
					if err := os.RemoveAll(files); err != nil {
						b.Fatal(err)
					}
					if err := os.Mkdir(files, 0o755); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					createFiles(b, files)
				}
				return opsPerSecond(b, metadataFiles)
			},
		},
		{
			// Stats the files that the create row left, with the kernel's
			// caches as the create row left them.
			name: fmt.Sprintf("stat-%d-files", metadataFiles),
			unit: "files/s",
			measure: func(b *testing.B, dir string) float64 {
				files := inRow(dir, create, filesDir)
				for b.Loop() {
					for i := range metadataFiles {
						if _, err := os.Lstat(filepath.Join(files, fileName(i))); err != nil {
							b.Fatal(err)
						}
					}
				}
				return opsPerSecond(b, metadataFiles)
			},
		},
		{
			name:  fmt.Sprintf("delete-%d-files", metadataFiles),
			unit:  "files/s",
			twice: true,
			// The create row left the files for the first pass. The second
			// pass creates them again here, before the pause, so that a
			// checkpoint of the new files does not run during the deletes.
			setup: func(b *testing.B, dir string) {
				files := inRow(dir, create, filesDir)
				if _, err := os.Lstat(filepath.Join(files, fileName(0))); err != nil {
					createFiles(b, files)
				}
			},
			measure: func(b *testing.B, dir string) float64 {
				files := inRow(dir, create, filesDir)
				first := true
				for b.Loop() {
					if !first {
						b.StopTimer()
						createFiles(b, files)
						b.StartTimer()
					}
					first = false
					for i := range metadataFiles {
						if err := os.Remove(filepath.Join(files, fileName(i))); err != nil {
							b.Fatal(err)
						}
					}
				}
				return opsPerSecond(b, metadataFiles)
			},
		},
		{
			name:          untar,
			unit:          "s",
			lowerIsFaster: true,
			measure: func(b *testing.B, dir string) float64 {
				tree := filepath.Join(dir, treeDir)
				for b.Loop() {
					b.StopTimer()
					if err := os.RemoveAll(tree); err != nil {
						b.Fatal(err)
					}
					if err := os.Mkdir(tree, 0o755); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					run(b, "", nil, "tar", "-C", tree, "-xf", tarball)
				}
				return secondsPerOp(b)
			},
		},
		{
			// `git read-tree HEAD` clears the stat data in the index, so
			// that git status reads and hashes every file, as it does first
			// after an unpack or a clone into a new directory.
			name:          "git-status-hash-all",
			unit:          "s",
			lowerIsFaster: true,
			measure: func(b *testing.B, dir string) float64 {
				tree := inRow(dir, untar, treeDir)
				for b.Loop() {
					b.StopTimer()
					run(b, tree, gitEnv(), "git", "read-tree", "HEAD")
					b.StartTimer()
					gitStatusClean(b, tree)
				}
				return secondsPerOp(b)
			},
		},
		{
			// The previous row left an index whose stat data matches, so
			// git status only stats every file.
			name:          "git-status",
			unit:          "s",
			lowerIsFaster: true,
			measure: func(b *testing.B, dir string) float64 {
				tree := inRow(dir, untar, treeDir)
				for b.Loop() {
					gitStatusClean(b, tree)
				}
				return secondsPerOp(b)
			},
		},
	}
}

// sizeName returns n bytes as a whole number of MiB or GiB.
func sizeName(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%dGiB", n>>30)
	}
	return fmt.Sprintf("%dMiB", n>>20)
}

func fileName(i int) string { return fmt.Sprintf("f%05d", i) }

// benchmarkData returns sequentialIO bytes of pseudo-random data, the same
// in every run. Blocktree stores an all-zero sector as a hole, so zeros
// would not measure its writes.
var benchmarkData = sync.OnceValue(func() []byte {
	data := make([]byte, sequentialIO)
	rand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'}).Read(data)
	return data
})

func removeIfExists(b *testing.B, path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.Fatal(err)
	}
}

// writeSequential creates path with size bytes written in sequentialIO
// requests and fsyncs it once.
func writeSequential(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	data := benchmarkData()
	for written := int64(0); written < size; written += int64(len(data)) {
		if _, err := f.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// readAll reads path in sequentialIO requests and returns its length.
func readAll(b *testing.B, path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, sequentialIO))
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// randomRequests makes randomOps requests of randomIO bytes at 4 KiB-aligned
// offsets of path, the same offsets in every call. Writes end with one
// fsync.
func randomRequests(b *testing.B, path string, write bool) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, randomIO)
	data := benchmarkData()
	for i := range randomOps {
		off := rng.Int64N(randomFileSize/randomIO) * randomIO
		if write {
			// The slice depends on the request number, not on the offset,
			// so most writes change the bytes of their sector.
			start := (i * randomIO) % len(data)
			if _, err := f.WriteAt(data[start:start+randomIO], off); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if write {
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// createFiles creates metadataFiles empty files in dir.
func createFiles(b *testing.B, dir string) {
	for i := range metadataFiles {
		f, err := os.OpenFile(filepath.Join(dir, fileName(i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// settle writes dirty pages back and waits until the disks and the FUSE
// servers of targets have been idle for settleIdle, for at most a minute,
// and returns the CPU time each server used meanwhile. The disk of the
// machine these figures come from writes at 200 to 800 MB/s, and it may
// still be busy after an fsync returns. A 1 GiB write right after another
// target's 1 GiB write measured 142 MB/s, and 214 MB/s five seconds later.
// A server is busy while it uses more than 20 ms of CPU time in a quarter
// of a second: a Blocktree node that checkpoints what the last row
// changed, for example. So each target starts on a quiet machine,
// whatever the target before it left.
func settle(b *testing.B, targets []compareTarget) []time.Duration {
	syscall.Sync()
	start := time.Now()
	deadline := start.Add(time.Minute)
	first := serverCPU(targets)
	lastDisk, lastCPU, idleSince := diskWrites(), first, start
	for time.Since(idleSince) < settleIdle {
		if time.Now().After(deadline) {
			b.Logf("the disks or FUSE servers were still busy after %s of waiting, measuring anyway", time.Since(start).Round(time.Second))
			break
		}
		time.Sleep(250 * time.Millisecond)
		disk, cpu := diskWrites(), serverCPU(targets)
		if disk != lastDisk || sum(cpu)-sum(lastCPU) > 20*time.Millisecond {
			idleSince = time.Now()
		}
		lastDisk, lastCPU = disk, cpu
	}
	used := make([]time.Duration, len(targets))
	for i := range used {
		used[i] = lastCPU[i] - first[i]
	}
	return used
}

// sum returns the total of durations.
func sum(durations []time.Duration) time.Duration {
	var total time.Duration
	for _, d := range durations {
		total += d
	}
	return total
}

// serverCPU returns the CPU time that the FUSE server of each target has
// used, from /proc/PID/stat. The plain directory and a process it cannot
// read count as none.
func serverCPU(targets []compareTarget) []time.Duration {
	used := make([]time.Duration, len(targets))
	for i, target := range targets {
		if target.pid == 0 {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", target.pid))
		if err != nil {
			continue
		}
		// The command name ends with the last ')'. The state (field 3)
		// follows it, and utime and stime are fields 14 and 15.
		text := string(data)
		end := strings.LastIndex(text, ") ")
		if end < 0 {
			continue
		}
		fields := strings.Fields(text[end+2:])
		if len(fields) < 13 {
			continue
		}
		// Linux reports these in clock ticks (USER_HZ), which are 1/100 s
		// on x86-64 and arm64.
		for _, field := range fields[11:13] {
			if ticks, err := strconv.ParseUint(field, 10, 64); err == nil {
				used[i] += time.Duration(ticks) * 10 * time.Millisecond
			}
		}
	}
	return used
}

// warmMemory writes to every page of warmBytes of new anonymous memory
// and unmaps it again, so that the target measured next finds that much
// memory that the machine has used before. On the virtual machine of
// docs/benchmarks.md the host backs guest memory when the guest first
// touches it. Writing 1 GiB of memory that nothing had used since boot
// took 1.6 to 2.6 s, and 0.4 s once it had been used and freed. There a
// second 1 GiB mapping right after the first was unmapped ran at the fast
// speed, so the kernel gave the freed pages out again first. Without this,
// the first pass of the sequential write row depended on the order of the
// targets: those measured early used memory that the setup had freed, and
// the last one mostly new memory. It does nothing where less than twice
// warmBytes is available, so that it never pushes other targets' caches
// out of memory.
func warmMemory(b *testing.B) {
	if available := memAvailable(); available < 2*warmBytes {
		warmSkipped.Do(func() {
			b.Logf("memory not warmed before each target: %d bytes available, fewer than %d", available, 2*warmBytes)
		})
		return
	}
	mem, err := syscall.Mmap(-1, 0, warmBytes, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		b.Fatalf("map %d bytes to warm memory: %v", warmBytes, err)
	}
	page := os.Getpagesize()
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
	}
	if err := syscall.Munmap(mem); err != nil {
		b.Fatalf("unmap the memory warmed: %v", err)
	}
}

var warmSkipped sync.Once

// memAvailable returns MemAvailable from /proc/meminfo in bytes, or 0 when
// it cannot be read.
func memAvailable() uint64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 3 && fields[0] == "MemAvailable:" && fields[2] == "kB" {
			if kib, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
				return kib << 10
			}
		}
	}
	return 0
}

// warmBytes covers the largest row: a 1 GiB write through FUSE, which
// takes 1 GiB of page cache for the mounted file and up to 1 GiB more in
// the file system below or in the Blocktree node.
const warmBytes = 3 << 30

// settleIdle is longer than a Blocktree node waits after the last change
// before it starts a checkpoint: two seconds, checked every second, after
// a journal sync that may wait for the disk. So a checkpoint that a row
// leaves to do starts within the pause, and settle waits until it has
// ended. Its CPU time is reported apart (printBackgroundTable).
const settleIdle = 5 * time.Second

// diskWrites returns the sectors written to every block device so far, from
// /proc/diskstats, or 0 when it cannot be read.
func diskWrites() uint64 {
	data, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return 0
	}
	var total uint64
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 10 {
			continue
		}
		if n, err := strconv.ParseUint(fields[9], 10, 64); err == nil {
			total += n
		}
	}
	return total
}

// dropCaches writes dirty pages back and drops the kernel's page cache,
// dentries and inodes. It logs the first failure and goes on without.
func dropCaches(b *testing.B) {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		dropCachesFailure.Do(func() {
			b.Logf("page cache not dropped, read rows may read from memory: %v", err)
		})
	}
}

var dropCachesFailure sync.Once

// gitEnv returns an environment in which git reads no configuration of
// the machine or the user and never starts an automatic gc, which would
// run in the background after a commit of many loose objects.
func gitEnv() []string {
	return []string{
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=gc.auto", "GIT_CONFIG_VALUE_0=0",
		"HOME=/nonexistent",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Blocktree Benchmark", "GIT_AUTHOR_EMAIL=bench@blocktree.invalid",
		"GIT_COMMITTER_NAME=Blocktree Benchmark", "GIT_COMMITTER_EMAIL=bench@blocktree.invalid",
		"LC_ALL=C",
	}
}

// gitStatusClean runs git status in tree and fails when it lists a change,
// because the tree must match the commit that the tarball holds.
func gitStatusClean(b *testing.B, tree string) {
	if status := run(b, tree, gitEnv(), "git", "status", "--porcelain"); status != "" {
		b.Fatalf("git status in %s lists changes, expected none:\n%s", tree, tail(status, 20))
	}
}

// goSourceTarball copies GOROOT/src, commits it to a new git repository
// whose objects are in one pack, and writes the tree with its .git
// directory to a tarball. It returns the tarball and the number of files
// in it.
func goSourceTarball(b *testing.B) (string, int) {
	goroot := strings.TrimSpace(run(b, "", nil, "go", "env", "GOROOT"))
	base := b.TempDir()
	tree := filepath.Join(base, "src")
	if err := os.Mkdir(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	run(b, "", nil, "bash", "-c", `set -o pipefail; tar -C "$1" -c . | tar -C "$2" -x`, "tar", filepath.Join(goroot, "src"), tree)
	git := func(args ...string) { run(b, tree, gitEnv(), "git", args...) }
	git("init", "-q", "-b", "main")
	// -f also commits files that a .gitignore in GOROOT/src matches, so
	// that every file is tracked and git status lists nothing.
	git("add", "-A", "-f")
	git("commit", "-q", "-m", "Go sources")
	// No delta search: packing is only there to keep .git to a few files.
	git("repack", "-a", "-d", "-q", "--window=0")
	git("prune-packed")

	tarball := filepath.Join(base, "go-src.tar")
	run(b, "", nil, "tar", "-C", tree, "-cf", tarball, ".")
	listing := run(b, "", nil, "tar", "-tf", tarball)
	files := 0
	for line := range strings.SplitSeq(listing, "\n") {
		if line != "" && !strings.HasSuffix(line, "/") {
			files++
		}
	}
	if err := os.RemoveAll(tree); err != nil {
		b.Fatal(err)
	}
	return tarball, files
}

// printCompareTable prints every row's figures with their speed relative
// to gocryptfs and to the pass-through mount, as a Markdown table. It
// writes to standard output because go test shows a benchmark's log only
// with -v.
func printCompareTable(rows []compareRow, targets []compareTarget, results map[string]map[string]float64) {
	var table bytes.Buffer
	table.WriteString("\nEach cell: figure (speed vs gocryptfs, speed vs passthrough); above 1 is faster.\n\n| row | unit |")
	for _, target := range targets {
		fmt.Fprintf(&table, " %s |", target.name)
	}
	table.WriteString("\n| --- | --- |")
	for range targets {
		table.WriteString(" --- |")
	}
	table.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(&table, "| %s | %s |", row.name, row.unit)
		for _, target := range targets {
			figure := results[row.name][target.name]
			fmt.Fprintf(&table, " %.4g (%.2f, %.2f) |", figure,
				row.speedRatio(figure, results[row.name]["gocryptfs"]),
				row.speedRatio(figure, results[row.name]["passthrough"]))
		}
		table.WriteString("\n")
	}
	os.Stdout.Write(table.Bytes())
}

// printBackgroundTable prints the CPU time that each FUSE server used in
// the pauses after each row: work that no row's timing contains.
func printBackgroundTable(rows []compareRow, targets []compareTarget, background map[string]map[string]time.Duration) {
	var table bytes.Buffer
	table.WriteString("\nCPU seconds each server used in the pauses after the row (its setup included), counted in no row:\n\n| row |")
	for _, target := range targets {
		if target.pid != 0 {
			fmt.Fprintf(&table, " %s |", target.name)
		}
	}
	table.WriteString("\n| --- |")
	for _, target := range targets {
		if target.pid != 0 {
			table.WriteString(" --- |")
		}
	}
	table.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(&table, "| %s |", row.name)
		for _, target := range targets {
			if target.pid != 0 {
				fmt.Fprintf(&table, " %.2f |", background[row.name][target.name].Seconds())
			}
		}
		table.WriteString("\n")
	}
	os.Stdout.Write(table.Bytes())
}
