package posixsuite

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Subtests on permission checks for a user other than root.
var permTests = []subtest{
	{"non-root user", testNonRootPermissions},
}

// otherUser is the user the permission checks run as: uid and gid 1000,
// with no supplementary groups.
var otherUser = &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}

// permCheck is one operation of the helper's ops command and its errno.
type permCheck struct {
	op     string // a runOp operation
	path   string
	arg    string
	want   syscall.Errno // 0 for success
	reason string
}

func testNonRootPermissions(t *testing.T, e *env) {
	requireRoot(t, "running permission checks as uid 1000")

	e.writeFile(t, "secret", []byte("secret"), 0o600)
	e.writeFile(t, "public", []byte("public"), 0o644)
	e.writeFile(t, "shared", []byte("shared"), 0o666)
	e.mkdir(t, "nosearch", 0o755)
	e.writeFile(t, "nosearch/inner", nil, 0o644)
	wantOK(t, "chmod nosearch", unix.Chmod(e.path("nosearch"), 0o666))
	e.mkdir(t, "closed", 0o755)
	e.writeFile(t, "closed/victim", nil, 0o666)
	e.writeFile(t, "mine", nil, 0o644)
	wantOK(t, "chown mine", unix.Chown(e.path("mine"), 1000, 1000))
	e.mkdir(t, "sticky", 0o1777)
	e.writeFile(t, "sticky/rootfile", nil, 0o666)
	e.writeFile(t, "sticky/userfile", nil, 0o666)
	wantOK(t, "chown sticky/userfile", unix.Chown(e.path("sticky/userfile"), 1000, 1000))

	// A path through a directory that others may not search, below which
	// every directory is open.
	e.mkdir(t, "private", 0o700)
	e.mkdir(t, "private/open", 0o755)
	e.writeFile(t, "private/open/file", nil, 0o644)
	// Programs that others may run without reading them, and may not run.
	program := copyProgram(t)
	// Files that others may write, with set-ID bits that a write by them
	// clears.
	e.writeFile(t, "setuid-shared", nil, 0o4777)
	e.writeFile(t, "setgid-shared", nil, 0o2777)
	e.writeFile(t, "run-by-all", program, 0o711)
	e.writeFile(t, "run-by-owner", program, 0o744)

	if wait := e.opts.LookupCacheTime; wait > 0 {
		t.Logf("known difference (LookupCacheTime): names looked up during setup skip the search permission check for %v; waiting that long", wait)
		time.Sleep(wait + 100*time.Millisecond)
	}

	checks := []permCheck{
		{"read", "public", "", 0, "others may read a 0644 file"},
		{"read", "secret", "", unix.EACCES, "others may not read a 0600 file"},
		{"write", "public", "", unix.EACCES, "others may not write a 0644 file"},
		{"write", "shared", "", 0, "others may write a 0666 file"},
		{"truncate", "public", "", unix.EACCES, "O_TRUNC needs write permission"},
		{"access-w", "public", "", unix.EACCES, "access(W_OK) on a 0644 file of another user"},
		{"stat", "nosearch/inner", "", unix.EACCES, "lookup in a directory without search permission"},
		{"stat", "private/open/file", "", unix.EACCES, "a path through a 0700 directory of another user"},
		{"exec", "run-by-all", "", 0, "others may run a 0711 program without read permission"},
		{"exec", "run-by-owner", "", unix.EACCES, "others may not run a 0744 program"},
		{"append", "setuid-shared", "", 0, "others may write a 04777 file"},
		{"truncate", "setgid-shared", "", 0, "others may truncate a 02777 file"},
		{"create", "closed/new", "", unix.EACCES, "create in a 0755 directory of another user"},
		{"mkdir", "closed/newdir", "", unix.EACCES, "mkdir in a 0755 directory of another user"},
		{"unlink", "closed/victim", "", unix.EACCES, "unlink in a 0755 directory of another user"},
		{"rename", "closed/victim", "closed/moved", unix.EACCES, "rename in a 0755 directory of another user"},
		{"chown", "mine", "0", unix.EPERM, "only root gives a file away"},
		{"chown", "public", "1000", unix.EPERM, "only root takes a file over"},
		{"chmod", "public", "", unix.EPERM, "only the owner changes the mode"},
		{"chmod", "mine", "", 0, "the owner changes the mode"},
		{"utimes", "shared", "", unix.EPERM, "only the owner sets explicit times, write permission is not enough"},
		{"utimes-now", "shared", "", 0, "write permission is enough to set the current time"},
		{"utimes-now", "public", "", unix.EACCES, "setting the current time needs write permission or ownership"},
		{"unlink", "sticky/rootfile", "", unix.EPERM, "sticky directory: only the owner of a file deletes it"},
		{"rename", "sticky/rootfile", "sticky/moved", unix.EPERM, "sticky directory: only the owner of a file renames it"},
		{"unlink", "sticky/userfile", "", 0, "sticky directory: the owner deletes their file"},
		{"create", "sticky/new", "", 0, "anyone creates in a 01777 directory"},
	}

	var script strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&script, "%s %s %s\n", c.op, c.path, c.arg)
	}
	h := e.startHelper(t, e.dir, otherUser, "ops")
	if _, err := h.stdin.Write([]byte(script.String())); err != nil {
		t.Fatalf("send the operations to the helper: %v", err)
	}
	for _, c := range checks {
		line := h.readLine(t, helperLockTimeout)
		got, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("helper output %q is not an errno", line)
		}
		call := fmt.Sprintf("uid 1000: %s %s (%s)", c.op, c.path, c.reason)
		if c.want == 0 {
			if got != 0 {
				t.Errorf("%s: errno %s, want success", call, errnoName(syscall.Errno(got)))
			}
			continue
		}
		if syscall.Errno(got) != c.want {
			gotName := "success"
			if got != 0 {
				gotName = errnoName(syscall.Errno(got))
			}
			t.Errorf("%s: %s, want %s", call, gotName, errnoName(c.want))
		}
	}
	h.release(t)

	// The refused operations changed nothing.
	var st unix.Stat_t
	wantOK(t, "stat sticky/rootfile", unix.Lstat(e.path("sticky/rootfile"), &st))
	wantOK(t, "stat closed/victim", unix.Lstat(e.path("closed/victim"), &st))
	if got := readFile(t, e.path("public")); got != "public" {
		t.Errorf("public after the refused truncate %q, want %q", got, "public")
	}
	// The write and the truncate by uid 1000 cleared the set-ID bits.
	for name, want := range map[string]uint32{"setuid-shared": 0o777, "setgid-shared": 0o777} {
		if got := lstat(t, e.path(name)).Mode & 0o7777; got != want {
			t.Errorf("mode of %s after uid 1000 changed it %#o, want %#o", name, got, want)
		}
	}
	if st := lstat(t, e.path("mine")); st.Uid != 1000 {
		t.Errorf("owner of mine %d after the refused chown, want 1000", st.Uid)
	}
	if st := lstat(t, e.path("sticky/new")); st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("file created by uid 1000 is owned by %d:%d, want 1000:1000", st.Uid, st.Gid)
	}
}

// copyProgram returns the contents of true(1), a program that the
// permission subtest copies into the directory under test to run it there.
func copyProgram(t *testing.T) []byte {
	t.Helper()
	path, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("find true(1): %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return data
}
