package image

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/mkuimage/uimage/builder"
	"github.com/u-root/uio/llog"
)

// InitPackage is Blocktree's PID 1, linked to /init.
const InitPackage = "github.com/blocktree/blocktree/init"

// ShellCommands are the busybox-mode commands in the initramfs: bt, sh
// (which runs gosh) and u-root's core tools for the console. tools.go must import each u-root
// command so that go.mod requires them.
var ShellCommands = []string{
	"github.com/blocktree/blocktree/cmd/bt",
	"github.com/blocktree/blocktree/image/cmds/sh",
	"github.com/u-root/u-root/cmds/core/cat",
	"github.com/u-root/u-root/cmds/core/cp",
	"github.com/u-root/u-root/cmds/core/dd",
	"github.com/u-root/u-root/cmds/core/df",
	"github.com/u-root/u-root/cmds/core/dmesg",
	"github.com/u-root/u-root/cmds/core/echo",
	"github.com/u-root/u-root/cmds/core/grep",
	"github.com/u-root/u-root/cmds/core/gosh",
	"github.com/u-root/u-root/cmds/core/head",
	"github.com/u-root/u-root/cmds/core/hexdump",
	"github.com/u-root/u-root/cmds/core/kill",
	"github.com/u-root/u-root/cmds/core/ln",
	"github.com/u-root/u-root/cmds/core/ls",
	"github.com/u-root/u-root/cmds/core/mkdir",
	"github.com/u-root/u-root/cmds/core/mount",
	"github.com/u-root/u-root/cmds/core/mv",
	"github.com/u-root/u-root/cmds/core/ps",
	"github.com/u-root/u-root/cmds/core/rm",
	"github.com/u-root/u-root/cmds/core/sleep",
	"github.com/u-root/u-root/cmds/core/sync",
	"github.com/u-root/u-root/cmds/core/tail",
	"github.com/u-root/u-root/cmds/core/touch",
	"github.com/u-root/u-root/cmds/core/umount",
	"github.com/u-root/u-root/cmds/core/uname",
	"github.com/u-root/u-root/cmds/core/wc",
}

// Options configure Build.
type Options struct {
	ConfigDir string // directory with kernel.conf, options.config and modules.txt
	OutDir    string // receives vmlinuz, initramfs.cpio and the cache/ directory
	// KernelDir, when set, is a kernel tree from scripts/build-kernel.sh
	// (boot/vmlinuz-RELEASE, boot/config-RELEASE, lib/modules/RELEASE) used
	// in place of the Debian package pinned in kernel.conf.
	KernelDir string
	Log       io.Writer // progress lines; nil discards them
}

// Artifacts are the files Build writes.
type Artifacts struct {
	Kernel    string
	Initramfs string
	Modules   int
	Release   string // kernel release, the directory name under /lib/modules
}

// Build writes OutDir/vmlinuz and OutDir/initramfs.cpio. It must run with
// the repository root as working directory, because the u-root builder
// compiles the commands from this module.
func Build(opts Options) (Artifacts, error) {
	progress := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "btimage: "+format+"\n", args...)
		}
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return Artifacts{}, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Artifacts{}, err
	}

	pin, err := ReadKernelPin(opts.ConfigDir)
	if err != nil {
		return Artifacts{}, err
	}
	start := time.Now()
	var kernelRoot string
	if opts.KernelDir != "" {
		kernelRoot = opts.KernelDir
		if pin.Release, err = customRelease(kernelRoot); err != nil {
			return Artifacts{}, err
		}
		pin.Package, pin.Version = "", ""
	} else if kernelRoot, err = fetchKernel(pin, filepath.Join(outDir, "cache"), progress); err != nil {
		return Artifacts{}, err
	}
	if err := checkKernelOptions(opts.ConfigDir, kernelRoot, pin); err != nil {
		return Artifacts{}, err
	}
	progress("kernel %s ready in %s", pin.Release, time.Since(start).Round(time.Millisecond))

	art := Artifacts{
		Kernel:    filepath.Join(outDir, "vmlinuz"),
		Initramfs: filepath.Join(outDir, "initramfs.cpio"),
		Release:   pin.Release,
	}
	if err := copyFile(filepath.Join(kernelRoot, "boot", "vmlinuz-"+pin.Release), art.Kernel, 0o644); err != nil {
		return Artifacts{}, err
	}

	stageDir := filepath.Join(outDir, "modules-stage")
	moduleFiles, err := stageModules(opts.ConfigDir, kernelRoot, stageDir, pin, progress)
	if err != nil {
		return Artifacts{}, err
	}
	for _, f := range moduleFiles {
		if filepath.Ext(f) == ".ko" {
			art.Modules++
		}
	}

	start = time.Now()
	progress("building initramfs with u-root (init, %d commands)", len(ShellCommands))
	if err := buildInitramfs(art.Initramfs, outDir, stageDir, moduleFiles, opts.Log); err != nil {
		return Artifacts{}, err
	}
	progress("initramfs built in %s", time.Since(start).Round(time.Millisecond))
	return art, nil
}

// buildInitramfs runs the u-root builder through its Go API. The base
// archive is Blocktree's own, because u-root's default one adds
// etc/resolv.conf with a public name server and other files we do not use.
func buildInitramfs(output, outDir, stageDir string, moduleFiles []string, logw io.Writer) error {
	tmp, err := os.MkdirTemp(outDir, "uroot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var extra []string
	for _, f := range moduleFiles {
		extra = append(extra, filepath.Join(stageDir, f)+":"+f)
	}

	printf := llog.Printf(func(string, ...any) {})
	if logw != nil {
		printf = llog.WritePrintf(logw)
	}
	l := llog.New(slog.LevelWarn, printf)

	// goshsmall builds gosh without its full-screen line editor, which
	// queries the terminal (a 5 s wait per unanswered query on a serial
	// console) and drops or swallows input typed while a command runs. The
	// plain reader leaves line editing to the kernel's terminal driver, so
	// typing ahead works and programs the shell starts read their own input.
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"), golang.WithBuildTag("goshsmall"))
	return uimage.Create(l,
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(tmp),
		uimage.WithBaseArchive(baseArchive()),
		uimage.WithCommands(nil, builder.Binary, InitPackage),
		uimage.WithCommands(nil, builder.Busybox, ShellCommands...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithFiles(extra...),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(output),
	)
}

// baseArchive returns the directories and device nodes the initramfs
// starts with. /dev/console must exist before devtmpfs is mounted, because
// the kernel opens it for PID 1's standard streams.
func baseArchive() *cpio.Archive {
	a, err := cpio.ArchiveFromRecords([]cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.Directory("etc", 0o755),
		cpio.Directory("proc", 0o755),
		cpio.Directory("run", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		// PID 1's binary signals PID 1 to shut down when run under these
		// names, so that the services stop and the journal is flushed.
		cpio.Symlink("bbin/poweroff", "../bin/init"),
		cpio.Symlink("bbin/reboot", "../bin/init"),
	})
	if err != nil {
		// The records above are fixed, so an error is a programming error.
		panic(err)
	}
	return a
}

// customRelease returns the release of the one kernel in a tree from
// scripts/build-kernel.sh: the single directory under lib/modules.
func customRelease(kernelDir string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(kernelDir, "lib", "modules"))
	if err != nil {
		return "", fmt.Errorf("kernel directory %s: %w; build one with make kernel", kernelDir, err)
	}
	var releases []string
	for _, e := range entries {
		if e.IsDir() {
			releases = append(releases, e.Name())
		}
	}
	if len(releases) != 1 {
		return "", fmt.Errorf("kernel directory %s has %d releases under lib/modules (%v), expected exactly one; rebuild it with make kernel", kernelDir, len(releases), releases)
	}
	return releases[0], nil
}
