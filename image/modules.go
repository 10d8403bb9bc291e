package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/blocktree/blocktree/internal/kmod"
)

// LoadListName is the file under /lib/modules/<release> in the initramfs
// that lists the modules /init loads, in order. init/modules.go reads it.
const LoadListName = "blocktree.load"

// stageModules copies the modules named in modules.txt and their
// dependencies from the unpacked kernel into stageDir/lib/modules/<release>,
// runs depmod there and writes the load list. Modules built into the kernel
// are skipped. It returns the staged files relative to stageDir.
func stageModules(configDir, kernelRoot, stageDir string, pin KernelPin, progress func(string, ...any)) ([]string, error) {
	listPath := filepath.Join(configDir, "modules.txt")
	names, err := kmod.ReadLines(listPath)
	if err != nil {
		return nil, err
	}
	srcDir := filepath.Join(kernelRoot, "lib", "modules", pin.Release)
	deps, err := kmod.ReadModulesDep(filepath.Join(srcDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltinNames(filepath.Join(srcDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}

	byName := map[string]string{}
	for path := range deps {
		byName[moduleName(path)] = path
	}

	var load []string
	needed := map[string]bool{}
	var add func(path string)
	add = func(path string) {
		if needed[path] {
			return
		}
		needed[path] = true
		for _, dep := range deps[path] {
			add(dep)
		}
	}
	for _, name := range names {
		key := strings.ReplaceAll(name, "-", "_")
		if path, ok := byName[key]; ok {
			add(path)
			load = append(load, name)
			continue
		}
		if builtin[key] {
			progress("module %s is built into the kernel; skipping", name)
			continue
		}
		return nil, fmt.Errorf("module %s from %s: not found in kernel %s", name, listPath, pin.Release)
	}

	dstDir := filepath.Join(stageDir, "lib", "modules", pin.Release)
	if err := os.RemoveAll(stageDir); err != nil {
		return nil, err
	}
	var files []string
	for path := range needed {
		if err := copyFile(filepath.Join(srcDir, path), filepath.Join(dstDir, path), 0o644); err != nil {
			return nil, err
		}
		files = append(files, filepath.Join("lib", "modules", pin.Release, path))
	}
	// depmod reads modules.order and modules.builtin to order its output
	// and to accept dependencies on built-in modules.
	for _, name := range []string{"modules.order", "modules.builtin"} {
		if err := copyFile(filepath.Join(srcDir, name), filepath.Join(dstDir, name), 0o644); err != nil {
			return nil, err
		}
	}
	if err := runDepmod(stageDir, pin.Release); err != nil {
		return nil, err
	}
	loadList := "# Written by btimage from kernel-config/modules.txt.\n" + strings.Join(load, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dstDir, LoadListName), []byte(loadList), 0o644); err != nil {
		return nil, err
	}
	// Of depmod's output only modules.dep ships, because /init reads nothing
	// else.
	for _, name := range []string{"modules.dep", LoadListName} {
		files = append(files, filepath.Join("lib", "modules", pin.Release, name))
	}
	sort.Strings(files)
	progress("staged %d modules (%d listed, the rest dependencies)", len(needed), len(load))
	return files, nil
}

func readBuiltinNames(path string) (map[string]bool, error) {
	lines, err := kmod.ReadLines(path)
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(lines))
	for _, line := range lines {
		names[moduleName(line)] = true
	}
	return names, nil
}

// moduleName turns a path such as kernel/drivers/char/hw_random/virtio-rng.ko
// into the module name virtio_rng.
func moduleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}
