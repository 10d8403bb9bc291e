//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/internal/kmod"
)

// loadListName is the file under /lib/modules/<release> that btimage writes
// with the modules to load, one name a line, in load order.
const loadListName = "blocktree.load"

// loadModules loads every module in the load list together with its
// dependencies from modules.dep. It tries every module and returns the
// joined errors.
func loadModules() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))

	names, err := kmod.ReadLines(filepath.Join(dir, loadListName))
	if err != nil {
		return err
	}
	deps, err := kmod.ReadModulesDep(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return err
	}

	l := &loader{dir: dir, deps: deps, done: map[string]bool{}}
	var errs []error
	for _, name := range names {
		path, ok := l.pathOf(name)
		if !ok {
			errs = append(errs, fmt.Errorf("module %s: not found in %s/modules.dep", name, dir))
			continue
		}
		if err := l.load(path); err != nil {
			errs = append(errs, err)
		}
	}
	logf("loaded %d module files", l.loaded)
	return errors.Join(errs...)
}

type loader struct {
	dir    string
	deps   map[string][]string // module path relative to dir -> dependency paths
	done   map[string]bool
	loaded int
}

// pathOf finds a module by name, treating "-" and "_" alike as modprobe does.
func (l *loader) pathOf(name string) (string, bool) {
	want := normalizeModuleName(name)
	for path := range l.deps {
		base := strings.TrimSuffix(filepath.Base(path), ".ko")
		if normalizeModuleName(base) == want {
			return path, true
		}
	}
	return "", false
}

// load loads the dependencies of path and then path itself. depmod lists a
// module's dependencies with the one to load first at the end, so they load
// in reverse.
func (l *loader) load(path string) error {
	if l.done[path] {
		return nil
	}
	l.done[path] = true
	deps := l.deps[path]
	for i := len(deps) - 1; i >= 0; i-- {
		if err := l.load(deps[i]); err != nil {
			return err
		}
	}

	f, err := os.Open(filepath.Join(l.dir, path))
	if err != nil {
		return fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	l.loaded++
	return nil
}

func normalizeModuleName(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}
