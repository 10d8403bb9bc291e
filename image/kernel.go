// Package image builds the Blocktree appliance image: a pinned Debian
// kernel and a u-root initramfs with Blocktree's /init.
package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/blocktree/blocktree/internal/kmod"
)

// KernelPin is the Debian kernel package named in kernel-config/kernel.conf.
type KernelPin struct {
	Package string // binary package, e.g. linux-image-6.1.0-57-cloud-amd64
	Version string // Debian package version
	Release string // kernel release, the directory name under /lib/modules
}

// ReadKernelPin parses kernel.conf in configDir.
func ReadKernelPin(configDir string) (KernelPin, error) {
	path := filepath.Join(configDir, "kernel.conf")
	lines, err := kmod.ReadLines(path)
	if err != nil {
		return KernelPin{}, err
	}
	var pin KernelPin
	for _, line := range lines {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return KernelPin{}, fmt.Errorf("%s: invalid line %q, expected key=value", path, line)
		}
		switch key {
		case "package":
			pin.Package = value
		case "version":
			pin.Version = value
		case "release":
			pin.Release = value
		default:
			return KernelPin{}, fmt.Errorf("%s: unknown key %q", path, key)
		}
	}
	if pin.Package == "" || pin.Version == "" || pin.Release == "" {
		return KernelPin{}, fmt.Errorf("%s: package, version and release are all required", path)
	}
	return pin, nil
}

// fetchKernel downloads the pinned package into cacheDir, unless it is
// already there, and unpacks it. It returns the unpacked root directory.
func fetchKernel(pin KernelPin, cacheDir string, progress func(string, ...any)) (string, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	deb := filepath.Join(cacheDir, fmt.Sprintf("%s_%s_amd64.deb", pin.Package, pin.Version))
	if _, err := os.Stat(deb); errors.Is(err, os.ErrNotExist) {
		progress("downloading %s=%s with apt-get", pin.Package, pin.Version)
		cmd := exec.Command("apt-get", "download", pin.Package+"="+pin.Version)
		cmd.Dir = cacheDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get download %s=%s failed (run apt-get update if the version is unknown): %w\n%s", pin.Package, pin.Version, err, out)
		}
	} else if err != nil {
		return "", err
	} else {
		progress("using cached %s", deb)
	}

	root := filepath.Join(cacheDir, pin.Package+"_"+pin.Version)
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	// Unpack into a temporary directory and rename it, so an interrupted
	// run never leaves a half-unpacked tree that looks complete.
	tmp, err := os.MkdirTemp(cacheDir, "unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	progress("unpacking %s", filepath.Base(deb))
	if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s failed: %w\n%s", deb, err, out)
	}
	// depmod writes modules.dep next to the modules, once per unpacked tree.
	if err := runDepmod(tmp, pin.Release); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, root); err != nil {
		return "", err
	}
	return root, nil
}

// checkKernelOptions compares options.config in configDir with the
// package's /boot/config-<release>. An option required as "=y" must be
// built in, and one listed as "=m" may be built in or a module.
func checkKernelOptions(configDir, kernelRoot string, pin KernelPin) error {
	wantPath := filepath.Join(configDir, "options.config")
	want, err := kmod.ReadLines(wantPath)
	if err != nil {
		return err
	}
	havePath := filepath.Join(kernelRoot, "boot", "config-"+pin.Release)
	haveLines, err := kmod.ReadLines(havePath)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for _, line := range haveLines {
		if key, value, ok := strings.Cut(line, "="); ok {
			have[key] = value
		}
	}

	var missing []string
	for _, line := range want {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s: invalid line %q, expected CONFIG_X=y or =m", wantPath, line)
		}
		got := have[key]
		if got == value || (value == "m" && got == "y") {
			continue
		}
		missing = append(missing, fmt.Sprintf("%s=%s (kernel has %q)", key, value, got))
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel %s lacks options from %s: %s", pin.Release, wantPath, strings.Join(missing, ", "))
	}
	return nil
}

func runDepmod(root, release string) error {
	depmod, err := findDepmod()
	if err != nil {
		return err
	}
	if out, err := exec.Command(depmod, "-b", root, release).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod -b %s %s failed: %w\n%s", root, release, err, out)
	}
	return nil
}

// findDepmod looks in PATH and then in /usr/sbin and /sbin, which a
// non-root PATH often lacks.
func findDepmod() (string, error) {
	if path, err := exec.LookPath("depmod"); err == nil {
		return path, nil
	}
	for _, path := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", errors.New("depmod not found: install the Debian package kmod")
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
