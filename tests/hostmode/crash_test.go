package hostmode

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of the workload child process.
const (
	workloadEnv      = "BT_HOSTMODE_WORKLOAD" // directory in the mount to work in
	workloadLogEnv   = "BT_HOSTMODE_WORKLOAD_LOG"
	workloadSeedEnv  = "BT_HOSTMODE_WORKLOAD_SEED"
	workloadRoundEnv = "BT_HOSTMODE_WORKLOAD_ROUND"

	// seedEnv sets the crash test's seed, to repeat a failing run.
	seedEnv = "BT_HOSTMODE_SEED"
)

// The workload log has one line per event. The child writes "file" and
// "deleted" lines after the event and the other lines (intents) before it.
// The test writes "file" and "deleted" lines for the intents that a crash
// interrupted, once it has seen their outcome.
//
//	file PATH HASH           PATH contains HASH, durably (after fsync)
//	replace PATH OLD NEW     a rename of a file with NEW over PATH starts
//	modify PATH OLD MID NEW OFFSET SAVED
//	                         ftruncate (giving MID), then pwrite (giving NEW)
//	                         at OFFSET; SAVED holds MID's and the written bytes
//	delete PATH OLD          an unlink of PATH starts
//	deleted PATH             PATH is gone, durably (after fsync of its directory)
//
// PATH is relative to the workload directory, and HASH is the SHA-256 of
// the contents in hex.

// expectation is what a crash may leave at one path.
type expectation struct {
	allowed []string // hashes the file may hold
	absent  bool     // the file may be missing
	present bool     // the file must exist (allowed is not empty)
	intent  string   // the interrupted operation, or "" when none
	// write, for an interrupted modify, is the pwrite that the kernel may
	// have split into several FUSE requests, so a prefix of it may have
	// landed on MID.
	write *partialWrite
}

// partialWrite is a pwrite of data at offset into a file holding mid.
type partialWrite struct {
	offset int
	saved  string // len(mid) on the first line, then mid, then data
}

// landedPrefix reports whether content is mid with data[:k] written at
// offset, for some k. The kernel sends a write(2) to the FUSE server in
// pieces when it cannot copy the whole buffer at once. The server applies
// each piece atomically, so a crash between two pieces leaves a prefix.
func (w *partialWrite) landedPrefix(content []byte) (bool, error) {
	raw, err := os.ReadFile(w.saved)
	if err != nil {
		return false, err
	}
	head, tail, ok := bytes.Cut(raw, []byte("\n"))
	if !ok {
		return false, fmt.Errorf("%s: no length line", w.saved)
	}
	midLen, err := strconv.Atoi(string(head))
	if err != nil || midLen > len(tail) {
		return false, fmt.Errorf("%s: invalid length line %q", w.saved, head)
	}
	mid, data := tail[:midLen], tail[midLen:]

	// modify picks the offset within MID.
	off := w.offset
	if off > len(mid) || len(content) < off || !bytes.Equal(content[:off], mid[:off]) {
		return false, nil
	}
	if len(content) > len(mid) {
		// The landed prefix reaches past MID's end, so it is all of
		// content from the offset on.
		k := len(content) - off
		return k <= len(data) && bytes.Equal(content[off:], data[:k]), nil
	}
	if len(content) != len(mid) {
		return false, nil
	}

	// content[off:off+k] is data[:k] for some k, and from off+k on the
	// file still holds MID: j is the longest such prefix, start the first
	// byte of the unchanged tail.
	j := 0
	for j < len(data) && off+j < len(content) && content[off+j] == data[j] {
		j++
	}
	start := len(content)
	for start > off && content[start-1] == mid[start-1] {
		start--
	}
	return start-off <= j, nil
}

// landed reports whether content is a prefix of the interrupted write w,
// and fails the test when w's saved bytes cannot be read.
func landed(t *testing.T, w *partialWrite, content []byte) bool {
	t.Helper()
	ok, err := w.landedPrefix(content)
	if err != nil {
		t.Errorf("check interrupted write: %v", err)
	}
	return ok
}

// readWorkloadLog returns the expectation for every path in the log. A
// line without its newline (a write cut short) is ignored.
func readWorkloadLog(path string) (map[string]expectation, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]expectation{}, nil
	}
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	expect := map[string]expectation{}
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		bad := fmt.Errorf("workload log line %d %q is malformed", i+1, line)
		if len(f) < 2 {
			return nil, bad
		}
		p := f[1]
		switch {
		case f[0] == "file" && len(f) == 3:
			expect[p] = expectation{allowed: []string{f[2]}, present: true}
		case f[0] == "replace" && len(f) == 4:
			expect[p] = expectation{allowed: []string{f[2], f[3]}, present: true, intent: line}
		case f[0] == "modify" && len(f) == 7:
			offset, err := strconv.Atoi(f[5])
			if err != nil {
				return nil, bad
			}
			expect[p] = expectation{allowed: []string{f[2], f[3], f[4]}, present: true, intent: line,
				write: &partialWrite{offset: offset, saved: f[6]}}
		case f[0] == "delete" && len(f) == 3:
			expect[p] = expectation{allowed: []string{f[2]}, absent: true, intent: line}
		case f[0] == "deleted" && len(f) == 2:
			expect[p] = expectation{absent: true}
		default:
			return nil, bad
		}
	}
	return expect, nil
}

func hashHex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestCrashKeepsSyncedFiles kills the node with SIGKILL at random points
// while a child process writes, renames, truncates, deletes and fsyncs
// files, or while the node writes its final checkpoint. After each crash
// bt fsck must find no damage and every file that the child fsynced must
// hold what it wrote.
func TestCrashKeepsSyncedFiles(t *testing.T) {
	requireHost(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(seedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q is not an unsigned integer", seedEnv, s)
		}
	}
	t.Logf("seed %d (set %s=%d to repeat this run)", seed, seedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6372617368))

	rounds := 10
	if testing.Short() {
		rounds = 4
	}
	state, mount := newNodeDirs(t)
	logPath := filepath.Join(t.TempDir(), "workload.log")
	synced := 0

	for round := 1; round <= rounds; round++ {
		started := time.Now()
		n := startNode(t, state, mount)
		startTime := time.Since(started)
		if round > 1 {
			synced = checkWorkloadFiles(t, n, logPath, round)
		}
		checkTime := time.Since(started) - startTime

		// Most crashes hit the node while the child works. The others hit
		// it during a clean stop, which writes a checkpoint.
		duringStop := rng.IntN(3) == 0
		delay := time.Duration(200+rng.IntN(2300)) * time.Millisecond
		child := startWorkload(t, n.path("crash"), logPath, seed+uint64(round), round)
		time.Sleep(delay)
		if duringStop {
			child.stop()
			stopDelay := time.Duration(rng.IntN(1500)) * time.Millisecond
			killed := crashDuringStop(t, n, stopDelay)
			t.Logf("round %d: SIGTERM after %s of work, SIGKILL %s later (node killed: %v); %d paths checked before", round, delay, stopDelay, killed, synced)
		} else {
			// The child must see the dead mount (ENOTCONN) before it is
			// detached.
			n.crash()
			child.wait()
			n.detachDead()
			t.Logf("round %d: SIGKILL after %s of work; %d paths checked before", round, delay, synced)
		}
		if t.Failed() {
			t.FailNow()
		}

		started = time.Now()
		res := runBT(t, "fsck", "--state", state)
		t.Logf("round %d: start %s, check %s, fsck %s", round, startTime.Round(time.Millisecond), checkTime.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
		if res.code != 0 {
			t.Fatalf("round %d: bt fsck exited with %d after the crash, expected 0\nstdout:\n%s\nstderr:\n%s", round, res.code, res.stdout, tail(res.stderr, 20))
		}
		if !strings.Contains(res.stdout, "clean:") {
			t.Errorf("round %d: bt fsck printed no clean: line\nstdout:\n%s", round, res.stdout)
		}
	}

	n := startNode(t, state, mount)
	synced = checkWorkloadFiles(t, n, logPath, rounds+1)
	n.stop()
	res := runBT(t, "fsck", "--state", state)
	if res.code != 0 {
		t.Fatalf("bt fsck exited with %d after the last clean stop, expected 0\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, tail(res.stderr, 20))
	}
	if !strings.Contains(res.stdout, "clean:") {
		t.Errorf("bt fsck printed no clean: line after the last clean stop\nstdout:\n%s", res.stdout)
	}
	if synced == 0 {
		t.Errorf("the workload fsynced no file in %d rounds: the test checked nothing", rounds)
	}
	t.Logf("%d paths of the workload log checked after the last crash", synced)
}

// crashDuringStop sends SIGTERM and then, after delay, SIGKILL, unless the
// node has stopped by then. It reports whether SIGKILL was sent.
func crashDuringStop(t *testing.T, n *node, delay time.Duration) bool {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("send SIGTERM to bt node: %v", err)
	}
	select {
	case <-n.exited:
		n.done = true
		if code := n.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("bt node exited with %d after SIGTERM, expected 0\nstderr:\n%s", code, tail(n.log(), 20))
		}
		n.waitCrashed()
		return false
	case <-time.After(delay):
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.done = true
	n.waitCrashed()
	if isMounted(n.mount) {
		lazyUnmount(t, n.mount)
	}
	return true
}

// checkWorkloadFiles compares every path in the workload log with the
// mount, then appends a resolution for each interrupted operation so the
// next round starts from known contents. It also reads every other file
// under the workload directory, which must not fail. It returns how many
// paths it checked.
func checkWorkloadFiles(t *testing.T, n *node, logPath string, round int) int {
	t.Helper()
	expect, err := readWorkloadLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := n.path("crash")
	var resolved strings.Builder
	for _, p := range slices.Sorted(maps.Keys(expect)) {
		e := expect[p]
		data, err := os.ReadFile(filepath.Join(dir, p))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !e.absent {
				t.Errorf("before round %d: %s is missing, but the workload fsynced it (log: %v)", round, p, e.allowed)
			}
			if e.intent != "" {
				fmt.Fprintf(&resolved, "deleted %s\n", p)
			}
		case err != nil:
			t.Errorf("before round %d: read %s: %v", round, p, err)
		case !e.present && len(e.allowed) == 0:
			t.Errorf("before round %d: %s exists, but the workload deleted it durably", round, p)
		case !slices.Contains(e.allowed, hashHex(data)) && e.intent == "":
			t.Errorf("before round %d: %s holds %d bytes with hash %s, expected the fsynced %s", round, p, len(data), hashHex(data), e.allowed[0])
		case !slices.Contains(e.allowed, hashHex(data)) && e.write != nil && landed(t, e.write, data):
			t.Logf("before round %d: %s holds a prefix of its interrupted write (%q)", round, p, e.intent)
			fmt.Fprintf(&resolved, "file %s %s\n", p, hashHex(data))
		case !slices.Contains(e.allowed, hashHex(data)):
			t.Errorf("before round %d: %s holds %d bytes with hash %s, expected one of %v (the crash interrupted %q)", round, p, len(data), hashHex(data), e.allowed, e.intent)
		case e.intent != "":
			fmt.Fprintf(&resolved, "file %s %s\n", p, hashHex(data))
		}
	}

	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			_, err = os.ReadFile(path)
		}
		return err
	})
	// The directory is missing only if the first crash came before the
	// workload created it.
	if err != nil && !(errors.Is(err, fs.ErrNotExist) && len(expect) == 0) {
		t.Errorf("before round %d: reading every file under %s: %v", round, dir, err)
	}
	if t.Failed() {
		t.FailNow()
	}

	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(resolved.String()); err != nil {
		t.Fatal(err)
	}
	return len(expect)
}

// workload is the running child process.
type workload struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
}

func startWorkload(t *testing.T, dir, logPath string, seed uint64, round int) *workload {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(),
		workloadEnv+"="+dir,
		workloadLogEnv+"="+logPath,
		workloadSeedEnv+"="+strconv.FormatUint(seed, 10),
		workloadRoundEnv+"="+strconv.Itoa(round),
	)
	w := &workload{t: t, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the workload: %v", err)
	}
	go func() {
		cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-w.exited
	})
	return w
}

// wait waits for the child to give up after the node died. It must have
// failed on the dead mount, not on something else.
func (w *workload) wait() {
	w.t.Helper()
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-w.exited
		w.t.Fatalf("the workload did not exit within 30 seconds of the node's death")
	}
	w.logIgnored()
	failure := logLines(w.stderr.String(), failurePrefix)
	if code := w.cmd.ProcessState.ExitCode(); code != 1 {
		w.t.Errorf("the workload exited with %d, expected 1 after a failed operation\nstderr:\n%s", code, w.stderr)
	}
	if len(failure) != 1 {
		w.t.Errorf("the workload reported %d failures, expected one\nstderr:\n%s", len(failure), w.stderr)
		return
	}
	if !strings.Contains(failure[0], "transport endpoint is not connected") && !strings.Contains(failure[0], "software caused connection abort") {
		w.t.Errorf("the workload failed with %q, expected ENOTCONN or ECONNABORTED from the dead mount", failure[0])
	}
}

// logIgnored logs the errors that the workload reported and ignored.
func (w *workload) logIgnored() {
	w.t.Helper()
	for _, line := range logLines(w.stderr.String(), ignoredPrefix) {
		w.t.Logf("%s", line)
	}
}

// stop kills the child, as a user ends a program before stopping the node.
func (w *workload) stop() {
	w.t.Helper()
	w.cmd.Process.Kill()
	<-w.exited
	w.logIgnored()
	if failure := logLines(w.stderr.String(), failurePrefix); len(failure) > 0 {
		w.t.Errorf("the workload failed before it was stopped: %s", failure[0])
	}
}

// runWorkload is the child's main: it changes files under the directory in
// workloadEnv until an operation fails, and returns the exit status.
func runWorkload() int {
	w, err := newWorkloadState()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %v\n", failurePrefix, err)
		return 2
	}
	for {
		if err := w.step(); err != nil {
			fmt.Fprintf(os.Stderr, "%s %v\n", failurePrefix, err)
			return 1
		}
	}
}

// workloadState is the child's view: the files it may change and the log.
type workloadState struct {
	dir   string
	log   *os.File
	rng   *rand.Rand
	round int
	count int               // names handed out in this round
	files map[string]string // path to hash of every durable file
}

func newWorkloadState() (*workloadState, error) {
	dir := os.Getenv(workloadEnv)
	seed, err := strconv.ParseUint(os.Getenv(workloadSeedEnv), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", workloadSeedEnv, err)
	}
	round, err := strconv.Atoi(os.Getenv(workloadRoundEnv))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", workloadRoundEnv, err)
	}

	logPath := os.Getenv(workloadLogEnv)
	expect, err := readWorkloadLog(logPath)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for p, e := range expect {
		if e.intent != "" {
			return nil, fmt.Errorf("%s: unresolved intent %q", logPath, e.intent)
		}
		if e.present {
			files[p] = e.allowed[0]
		}
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}

	for _, sub := range []string{"d0", "d1", "d2", "d3", "scratch"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	return &workloadState{dir: dir, log: log, rng: rand.New(rand.NewPCG(seed, 0x776f726b)), round: round, files: files}, nil
}

func (w *workloadState) record(format string, args ...any) error {
	_, err := fmt.Fprintf(w.log, format+"\n", args...)
	return err
}

// newName returns a path never used before: the round and a counter.
func (w *workloadState) newName(kind string) string {
	w.count++
	return fmt.Sprintf("d%d/r%d-%s%d", w.count%4, w.round, kind, w.count)
}

// randomData returns size random bytes, or a run of one repeated byte a
// quarter of the time, so some 4 KiB sectors are all zeros (holes).
func (w *workloadState) randomData(size int) []byte {
	data := make([]byte, size)
	if w.rng.IntN(4) == 0 {
		if b := byte(w.rng.IntN(2)); b != 0 {
			for i := range data {
				data[i] = b
			}
		}
		return data
	}
	for i := 0; i+8 <= size; i += 8 {
		v := w.rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	for i := size - size%8; i < size; i++ {
		data[i] = byte(w.rng.Uint32())
	}
	return data
}

// randomSize is mostly small, sometimes past one 1 MiB FUSE request.
func (w *workloadState) randomSize() int {
	if w.rng.IntN(20) == 0 {
		return 1<<20 + w.rng.IntN(1<<20)
	}
	return w.rng.IntN(128 << 10)
}

func (w *workloadState) pickFile() (string, bool) {
	if len(w.files) == 0 {
		return "", false
	}
	paths := make([]string, 0, len(w.files))
	for p := range w.files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths[w.rng.IntN(len(paths))], true
}

func (w *workloadState) step() error {
	op := w.rng.IntN(100)
	switch {
	case op < 35:
		return w.create()
	case op < 50:
		if p, ok := w.pickFile(); ok {
			return w.replace(p)
		}
	case op < 65:
		if p, ok := w.pickFile(); ok {
			return w.modify(p)
		}
	case op < 75:
		if p, ok := w.pickFile(); ok {
			return w.delete(p)
		}
	default:
		return w.scribble()
	}
	return w.create()
}

// create writes a new file in several writes, sometimes truncating it on
// the way and sometimes under a temporary name renamed into place, then
// fsyncs and records it.
func (w *workloadState) create() error {
	final := w.newName("f")
	name := final
	if w.rng.IntN(2) == 0 {
		name = w.newName("tmp")
	}
	f, err := w.createNew(filepath.Join(w.dir, name), os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer w.close(f)

	var contents []byte
	for range 1 + w.rng.IntN(4) {
		chunk := w.randomData(w.randomSize() / 2)
		if _, err := f.Write(chunk); err != nil {
			return err
		}
		contents = append(contents, chunk...)
		if len(contents) > 0 && w.rng.IntN(4) == 0 {
			size := w.rng.IntN(len(contents))
			if err := f.Truncate(int64(size)); err != nil {
				return err
			}
			if _, err := f.Seek(int64(size), 0); err != nil {
				return err
			}
			contents = contents[:size]
		}
	}

	if name != final {
		if err := w.rename(filepath.Join(w.dir, name), filepath.Join(w.dir, final)); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	w.files[final] = hashHex(contents)
	return w.record("file %s %s", final, w.files[final])
}

// replace renames a new, fsynced file over p and fsyncs the directory.
func (w *workloadState) replace(p string) error {
	tmp := w.newName("tmp")
	data := w.randomData(w.randomSize())
	f, err := w.createNew(filepath.Join(w.dir, tmp), os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := w.close(f); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	sum := hashHex(data)
	if err := w.record("replace %s %s %s", p, w.files[p], sum); err != nil {
		return err
	}
	if err := w.rename(filepath.Join(w.dir, tmp), filepath.Join(w.dir, p)); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(filepath.Join(w.dir, p))); err != nil {
		return err
	}
	w.files[p] = sum
	return w.record("file %s %s", p, sum)
}

// modify truncates p in place and writes up to 64 KiB into it, then
// fsyncs it. It saves MID and the written bytes first, because a crash may
// leave a prefix of the write (see partialWrite).
func (w *workloadState) modify(p string) error {
	path := filepath.Join(w.dir, p)
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if hashHex(old) != w.files[p] {
		return fmt.Errorf("%s has hash %s before modify, expected %s from the log", p, hashHex(old), w.files[p])
	}
	size := w.rng.IntN(len(old) + 8192)
	mid := make([]byte, size)
	copy(mid, old)
	offset := w.rng.IntN(size + 1)
	data := w.randomData(1 + w.rng.IntN(64<<10))
	next := slices.Clone(mid)
	if end := offset + len(data); end > len(next) {
		next = append(next, make([]byte, end-len(next))...)
	}
	copy(next[offset:], data)

	saved := fmt.Sprintf("%s.write-%d-%s", w.log.Name(), w.round, hashHex(next)[:16])
	record := append([]byte(strconv.Itoa(len(mid))+"\n"), mid...)
	if err := os.WriteFile(saved, append(record, data...), 0o644); err != nil {
		return err
	}
	if err := w.record("modify %s %s %s %s %d %s", p, w.files[p], hashHex(mid), hashHex(next), offset, saved); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer w.close(f)
	if err := f.Truncate(int64(size)); err != nil {
		return err
	}
	if _, err := f.WriteAt(data, int64(offset)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	w.files[p] = hashHex(next)
	return w.record("file %s %s", p, w.files[p])
}

func (w *workloadState) delete(p string) error {
	if err := w.record("delete %s %s", p, w.files[p]); err != nil {
		return err
	}
	path := filepath.Join(w.dir, p)
	if err := w.remove(path); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	delete(w.files, p)
	return w.record("deleted %s", p)
}

// scribble appends to, truncates or renames files under scratch/ without
// fsync. The test never checks them, because they only put unsynced
// entries between the synced ones.
func (w *workloadState) scribble() error {
	dir := filepath.Join(w.dir, "scratch")
	name := filepath.Join(dir, fmt.Sprintf("s%d", w.rng.IntN(8)))
	switch w.rng.IntN(3) {
	case 0:
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(w.randomData(w.rng.IntN(100 << 10)))
		if closeErr := w.close(f); err == nil {
			err = closeErr
		}
		return err
	case 1:
		err := os.Truncate(name, int64(w.rng.IntN(50<<10)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	default:
		err := os.Rename(name, filepath.Join(dir, fmt.Sprintf("s%d", w.rng.IntN(8))))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
}

// The methods below change files that only this workload uses. When a
// call fails only because an earlier attempt of it took effect, they report
// that on stderr and go on. The cause is that services/fuse returns EINTR
// for a request that a signal interrupted, even after the daemon applied
// it, and the os package repeats the call. TestSignalsDoNotFailFileCalls
// covers that failure on its own.

// close closes f and ignores EINTR: Linux has released the descriptor
// anyway, and every write reached the daemon before, since the mount has
// no writeback cache.
func (w *workloadState) close(f *os.File) error {
	err := f.Close()
	if errors.Is(err, syscall.EINTR) {
		fmt.Fprintf(os.Stderr, "%s %v\n", ignoredPrefix, err)
		return nil
	}
	return err
}

// createNew creates a file under a name never used before, so EEXIST
// means that an interrupted attempt created it.
func (w *workloadState) createNew(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		fmt.Fprintf(os.Stderr, "%s %v\n", ignoredPrefix, err)
		return os.OpenFile(path, flag|os.O_TRUNC, perm)
	}
	return f, err
}

// rename renames a file that the workload just created or fsynced, so
// ENOENT means that an interrupted attempt renamed it.
func (w *workloadState) rename(from, to string) error {
	err := os.Rename(from, to)
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat(to); statErr == nil {
			fmt.Fprintf(os.Stderr, "%s %v\n", ignoredPrefix, err)
			return nil
		}
	}
	return err
}

// remove removes a file of the workload, so ENOENT means that an
// interrupted attempt removed it.
func (w *workloadState) remove(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "%s %v\n", ignoredPrefix, err)
		return nil
	}
	return err
}

// Prefixes of the workload's lines on stderr.
const (
	ignoredPrefix = "workload: ignored:"
	failurePrefix = "workload: failed:"
)

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func TestLandedPrefixOfWrite(t *testing.T) {
	mid := []byte("0123456789")
	data := []byte("abcdefgh")
	saved := filepath.Join(t.TempDir(), "saved")
	if err := os.WriteFile(saved, append([]byte("10\n"), append(slices.Clone(mid), data...)...), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &partialWrite{offset: 6, saved: saved}
	for _, tc := range []struct {
		content string
		want    bool
	}{
		{"0123456789", true},   // nothing landed
		{"012345ab89", true},   // two bytes landed
		{"012345abcd", true},   // four bytes, up to MID's end
		{"012345abcdef", true}, // six bytes, past MID's end
		{"012345abcdefgh", true},
		{"012345xb89", false},     // not the written bytes
		{"012345ab8", false},      // shorter than MID
		{"012345abcdefgX", false}, // past MID's end, wrong byte
		{"X12345ab89", false},     // changed before the offset
		{"012345a789", true},      // one byte landed
		{"0123456a89", false},     // a byte written after the offset
	} {
		got, err := w.landedPrefix([]byte(tc.content))
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("landedPrefix(%q) = %v, expected %v", tc.content, got, tc.want)
		}
	}
}
