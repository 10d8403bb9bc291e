package hostmode

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// run runs a program in dir with extra environment and returns its
// standard output. It fails the test when the program fails.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s in %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), dir, err, tail(stdout.String(), 20), tail(stderr.String(), 20))
	}
	return stdout.String()
}

// TestGoSourcesSurviveRestart unpacks the Go standard library's sources
// into the mount with tar and compares every file's bytes, mode, owner and
// mtime, before and after a restart of the node. -short uses src/crypto
// only.
func TestGoSourcesSurviveRestart(t *testing.T) {
	requireHost(t)
	requireTools(t, "tar", "go")
	goroot := strings.TrimSpace(run(t, "", nil, "go", "env", "GOROOT"))
	src := filepath.Join(goroot, "src")
	if testing.Short() {
		src = filepath.Join(src, "crypto")
	}
	want := scanTree(t, src)
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	dst := n.path("go")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	run(t, "", nil, "bash", "-c", `set -o pipefail; tar -C "$1" -c . | tar -C "$2" -x`, "tar", src, dst)
	t.Logf("unpacked %d entries of %s in %s", len(want), src, time.Since(start).Round(time.Millisecond))
	opts := compareOptions{owner: true, mtime: true}
	compareTrees(t, "after tar", want, scanTree(t, dst), opts)

	n.stop()
	n = startNode(t, state, mount)
	start = time.Now()
	compareTrees(t, "after restart", want, scanTree(t, dst), opts)
	t.Logf("compared after the restart in %s; %d system calls repeated after EINTR so far", time.Since(start).Round(time.Millisecond), eintrRetries.Load())
	n.stop()
}

// TestGitInMount runs a repository's life in the mount: init, add, commit,
// branches with different contents, checkout back and forth, log, gc and
// fsck, then again after a restart of the node.
func TestGitInMount(t *testing.T) {
	requireHost(t)
	requireTools(t, "git")
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	repo := n.path("repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=" + t.TempDir(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Blocktree Test", "GIT_AUTHOR_EMAIL=test@blocktree.invalid",
		"GIT_COMMITTER_NAME=Blocktree Test", "GIT_COMMITTER_EMAIL=test@blocktree.invalid",
		"LC_ALL=C",
	}
	git := func(args ...string) string {
		t.Helper()
		return run(t, repo, env, "git", args...)
	}
	write := func(rel string, data []byte, mode os.FileMode) {
		t.Helper()
		path := filepath.Join(repo, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}

	mainReadme := []byte("# Demo\n\nThe main branch.\n")
	featureReadme := []byte("# Demo\n\nThe feature branch rewrote this file.\n")
	data := randomBytes(t, 300<<10)
	git("init", "-q", "-b", "main")
	write("README.md", mainReadme, 0o644)
	write("src/app.txt", []byte("only on main\n"), 0o644)
	write("data.bin", data, 0o644)
	write("run.sh", []byte("#!/bin/sh\necho run\n"), 0o755)
	git("add", "-A")
	git("commit", "-q", "-m", "first commit")
	if status := git("status", "--porcelain"); status != "" {
		t.Errorf("git status after the first commit lists changes:\n%s", status)
	}

	git("checkout", "-q", "-b", "feature")
	write("README.md", featureReadme, 0o644)
	git("rm", "-q", "src/app.txt")
	write("new/feature.txt", []byte("only on feature\n"), 0o644)
	if err := os.Chmod(filepath.Join(repo, "run.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "second commit")

	checkMain := func(label string) {
		t.Helper()
		requireContents(t, filepath.Join(repo, "README.md"), mainReadme)
		requireContents(t, filepath.Join(repo, "src/app.txt"), []byte("only on main\n"))
		requireContents(t, filepath.Join(repo, "data.bin"), data)
		if _, err := os.Stat(filepath.Join(repo, "new/feature.txt")); err == nil {
			t.Errorf("%s: new/feature.txt exists on main", label)
		}
		requireMode(t, label, filepath.Join(repo, "run.sh"), 0o755)
	}
	checkFeature := func(label string) {
		t.Helper()
		requireContents(t, filepath.Join(repo, "README.md"), featureReadme)
		requireContents(t, filepath.Join(repo, "new/feature.txt"), []byte("only on feature\n"))
		if _, err := os.Stat(filepath.Join(repo, "src/app.txt")); err == nil {
			t.Errorf("%s: src/app.txt exists on feature", label)
		}
		requireMode(t, label, filepath.Join(repo, "run.sh"), 0o644)
	}

	git("checkout", "-q", "main")
	checkMain("first checkout of main")
	git("checkout", "-q", "feature")
	checkFeature("first checkout of feature")
	git("checkout", "-q", "main")
	checkMain("second checkout of main")
	if status := git("status", "--porcelain"); status != "" {
		t.Errorf("git status on main lists changes:\n%s", status)
	}
	if log := git("log", "--format=%s", "feature"); log != "second commit\nfirst commit\n" {
		t.Errorf("git log feature printed %q, expected the two commits, newest first", log)
	}
	if log := git("log", "--format=%s"); log != "first commit\n" {
		t.Errorf("git log on main printed %q, expected the first commit only", log)
	}
	git("gc", "-q")
	git("fsck", "--full", "--no-progress")

	n.stop()
	n = startNode(t, state, mount)
	if status := git("status", "--porcelain"); status != "" {
		t.Errorf("git status after the restart lists changes:\n%s", status)
	}
	git("fsck", "--full", "--no-progress")
	git("checkout", "-q", "feature")
	checkFeature("checkout of feature after the restart")
	if log := git("log", "--format=%s"); log != "second commit\nfirst commit\n" {
		t.Errorf("git log after the restart printed %q, expected the two commits", log)
	}
	n.stop()
}

// requireMode checks the permission bits of path.
func requireMode(t *testing.T, label, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", label, err)
	} else if info.Mode().Perm() != want {
		t.Errorf("%s: %s has mode %v, expected %v", label, path, info.Mode().Perm(), want)
	}
}

// TestGoBuildInMount builds a Go module whose sources, build temporaries
// and output binary are in the mount, runs its tests and runs the binary
// from the mount, before and after a restart.
func TestGoBuildInMount(t *testing.T) {
	requireHost(t)
	requireTools(t, "go")
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	module := n.path("hello")
	greeting := "greetings from the block tree"
	files := map[string]string{
		"go.mod":       "module example.com/hello\n\ngo 1.26\n",
		"greeting.txt": greeting,
		"main.go": `package main

import (
	"crypto/sha256"
	_ "embed"
	"fmt"
	"os"

	"example.com/hello/words"
)

//go:embed greeting.txt
var greeting string

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s: %x\n", greeting, words.Join(os.Args[2:]), sha256.Sum256(data))
}
`,
		"words/words.go": `// Package words joins words.
package words

import "strings"

// Join joins words with plus signs.
func Join(words []string) string { return strings.Join(words, "+") }
`,
		"words/words_test.go": `package words

import "testing"

func TestJoin(t *testing.T) {
	if got := Join([]string{"a", "b"}); got != "a+b" {
		t.Fatalf("Join = %q", got)
	}
}
`,
	}
	for rel, text := range files {
		writeFileSync(t, filepath.Join(module, rel), []byte(text))
	}
	tmp := n.path("gotmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"GOCACHE=" + t.TempDir(),
		"GOPATH=" + t.TempDir(),
		"GOTMPDIR=" + tmp,
		"GOFLAGS=", "GOTOOLCHAIN=local", "GOPROXY=off", "GOWORK=off", "CGO_ENABLED=0",
	}

	start := time.Now()
	run(t, module, env, "go", "build", "-o", "bin/hello", ".")
	t.Logf("go build took %s", time.Since(start).Round(time.Millisecond))
	if out := run(t, module, env, "go", "test", "./..."); !strings.Contains(out, "ok  \texample.com/hello/words") {
		t.Errorf("go test in the mount did not pass the words package:\n%s", out)
	}
	run(t, module, env, "go", "vet", "./...")

	binary := filepath.Join(module, "bin", "hello")
	input := filepath.Join(module, "main.go")
	source, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s: a+b+c: %x\n", greeting, sha256.Sum256(source))
	if out := run(t, module, nil, binary, input, "a", "b", "c"); out != want {
		t.Errorf("%s printed %q, expected %q", binary, out, want)
	}
	built, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}

	n.stop()
	n = startNode(t, state, mount)
	requireContents(t, binary, built)
	if out := run(t, module, nil, binary, input, "a", "b", "c"); out != want {
		t.Errorf("after the restart %s printed %q, expected %q", binary, out, want)
	}
	n.stop()
}

// makeSourceTree builds a tree that shows what cp -a and rsync -aHX must
// keep: permission bits with setuid, setgid and sticky, owners, mtimes
// with nanoseconds, symlinks (relative, absolute, dangling, to a
// directory), hard links across directories, user xattrs and odd names.
func makeSourceTree(t *testing.T, root string) {
	t.Helper()
	dirs := []struct {
		rel  string
		mode os.FileMode
	}{
		{"shared", 0o775 | os.ModeSetgid},
		{"private", 0o700},
		{"sticky", 0o777 | os.ModeSticky},
		{"bin", 0o755},
		{"hard", 0o755},
		{"deep/er/est", 0o750},
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		path := filepath.Join(root, d.rel)
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	chown(t, filepath.Join(root, "shared"), 0, 1234)

	files := []struct {
		rel      string
		data     []byte
		mode     os.FileMode
		uid, gid int
	}{
		{"readonly.txt", []byte("read only\n"), 0o444, 0, 0},
		{"empty", nil, 0o644, 0, 0},
		{"big.bin", randomBytes(t, 3<<20+17), 0o640, 0, 0},
		{"shared/team.txt", []byte("team file\n"), 0o664, 1000, 1234},
		{"private/key", []byte("not for others\n"), 0o600, 1000, 1000},
		{"sticky/tmpfile", []byte("in a sticky directory\n"), 0o666, 1001, 1001},
		{"bin/tool", []byte("#!/bin/sh\necho tool\n"), 0o755, 0, 0},
		{"bin/setuid", []byte("#!/bin/sh\necho setuid\n"), 0o755 | os.ModeSetuid, 0, 0},
		{"hard/a", []byte("one inode, three names\n"), 0o644, 0, 0},
		{"deep/er/est/file", []byte("deep\n"), 0o644, 0, 0},
		{"naïve café.txt", []byte("unicode name\n"), 0o644, 0, 0},
		{strings.Repeat("n", 255), []byte("longest name\n"), 0o644, 0, 0},
	}
	for _, f := range files {
		path := filepath.Join(root, f.rel)
		if err := os.WriteFile(path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		chown(t, path, f.uid, f.gid)
		if err := os.Chmod(path, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, link := range []string{"hard/b", "shared/c"} {
		if err := os.Link(filepath.Join(root, "hard/a"), filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	symlinks := map[string]string{
		"link-relative":   "readonly.txt",
		"bin/link-up":     "../big.bin",
		"link-absolute":   "/etc/hostname",
		"link-dangling":   "does/not/exist",
		"link-to-dir":     "shared",
		"deep/link-space": "../naïve café.txt",
	}
	for rel, target := range symlinks {
		if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	xattrs := []struct{ rel, name, value string }{
		{"readonly.txt", "user.comment", "read me first"},
		{"big.bin", "user.binary", "\x00\x01\x02\xff binary value"},
		{"big.bin", "user.long", strings.Repeat("x", 2000)},
		{"shared", "user.dir", "a directory attribute"},
		{"hard/a", "user.linked", "shared by three names"},
		{"empty", "user.empty", ""},
	}
	for _, x := range xattrs {
		path := filepath.Join(root, x.rel)
		if err := unix.Lsetxattr(path, x.name, []byte(x.value), 0); err != nil {
			t.Fatalf("setxattr %s on %s: %v (the temporary directory's file system must support user xattrs)", x.name, path, err)
		}
	}

	// Times last, deepest first, so that creating entries does not change
	// a directory's mtime after it is set.
	var paths []string
	filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
		paths = append(paths, path)
		return err
	})
	for i := len(paths) - 1; i >= 0; i-- {
		mtime := unix.NsecToTimespec(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano() + int64(i)*86_400_000_000_123)
		times := []unix.Timespec{mtime, mtime}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("set times of %s: %v", paths[i], err)
		}
	}
}

func chown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// TestCopyRoundTrips copies a prepared tree into the mount and back out,
// with cp -a and with rsync -aHX, and compares both copies with the
// original, then the copies in the mount again after a restart.
func TestCopyRoundTrips(t *testing.T) {
	requireHost(t)
	requireTools(t, "cp", "rsync")
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeSourceTree(t, src)
	want := scanTree(t, src)
	opts := compareOptions{owner: true, mtime: true, mtimeNsec: true, xattrs: true, hardLinks: true}

	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	inMount := map[string]string{"cp": n.path("cp"), "rsync": n.path("rsync")}

	t.Run("cp", func(t *testing.T) {
		back := filepath.Join(base, "cp-back")
		run(t, "", nil, "cp", "-a", src, inMount["cp"])
		compareTrees(t, "in the mount", want, scanTree(t, inMount["cp"]), opts)
		run(t, "", nil, "cp", "-a", inMount["cp"], back)
		compareTrees(t, "copied back out", want, scanTree(t, back), opts)
	})
	t.Run("rsync", func(t *testing.T) {
		back := filepath.Join(base, "rsync-back")
		run(t, "", nil, "rsync", "-aHX", src+"/", inMount["rsync"]+"/")
		compareTrees(t, "in the mount", want, scanTree(t, inMount["rsync"]), opts)
		run(t, "", nil, "rsync", "-aHX", inMount["rsync"]+"/", back+"/")
		compareTrees(t, "copied back out", want, scanTree(t, back), opts)
	})

	n.stop()
	n = startNode(t, state, mount)
	for tool, dir := range inMount {
		compareTrees(t, tool+" copy after a restart", want, scanTree(t, dir), opts)
	}
	n.stop()
}

// TestSignalsDoNotFailFileCalls creates, closes, renames and removes files
// on the mount in a loop while another goroutine keeps the garbage
// collector busy, as in any Go program that allocates. The runtime then
// sends preemption signals to its threads, and the kernel turns a signal
// that arrives during a FUSE request into an interrupt of that request.
// The call must then succeed, or fail with EINTR and have no effect.
// os.File.Close cannot repeat close(2), so it fails with EINTR. The os
// package repeats the other calls, so a call that took effect but returned
// EINTR fails on the second try with EEXIST or ENOENT. Local file systems
// do neither.
func TestSignalsDoNotFailFileCalls(t *testing.T) {
	requireHost(t)
	duration := 10 * time.Second
	if testing.Short() {
		duration = 3 * time.Second
	}
	state, mount := newNodeDirs(t)
	n := startNode(t, state, mount)
	dir := n.path("signals")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	allocated := make(chan struct{})
	go func() {
		defer close(allocated)
		var garbage [][]byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			garbage = append(garbage, make([]byte, 1<<20))
			if len(garbage) > 64 {
				garbage = nil
			}
		}
	}()

	// Each failure kind keeps its count and first error.
	type failures struct {
		count int
		first error
	}
	var closeEINTR, createEEXIST, renameENOENT, removeENOENT failures
	note := func(f *failures, err error) {
		if f.count == 0 {
			f.first = err
		}
		f.count++
	}
	data := randomBytes(t, 64<<10)
	rounds := 0
	for deadline := time.Now().Add(duration); time.Now().Before(deadline); rounds++ {
		created := filepath.Join(dir, fmt.Sprintf("new-%d", rounds))
		renamed := filepath.Join(dir, fmt.Sprintf("renamed-%d", rounds))
		f, err := os.OpenFile(created, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			note(&createEEXIST, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); errors.Is(err, syscall.EINTR) {
			note(&closeEINTR, err)
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(created, renamed); errors.Is(err, os.ErrNotExist) {
			note(&renameENOENT, err)
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(renamed); errors.Is(err, os.ErrNotExist) {
			note(&removeENOENT, err)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-allocated
	t.Logf("%d rounds of create, close, rename and remove in %s", rounds, duration)

	if closeEINTR.count > 0 {
		t.Errorf("close failed with EINTR %d times, first: %v", closeEINTR.count, closeEINTR.first)
	}
	if createEEXIST.count > 0 {
		t.Errorf("O_EXCL create of a new name failed with EEXIST %d times, first: %v", createEEXIST.count, createEEXIST.first)
	}
	if renameENOENT.count > 0 {
		t.Errorf("rename of an existing file failed with ENOENT %d times, first: %v", renameENOENT.count, renameENOENT.first)
	}
	if removeENOENT.count > 0 {
		t.Errorf("remove of an existing file failed with ENOENT %d times, first: %v", removeENOENT.count, removeENOENT.first)
	}
	n.stop()
}
