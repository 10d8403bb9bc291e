// Package kmod reads the text files that describe kernel modules: depmod's
// modules.dep and Blocktree's own lists in kernel-config/. The image
// builder uses it to stage modules, and PID 1 to load them.
package kmod

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadLines returns the non-empty lines of path that do not start with
// "#", trimmed of surrounding spaces.
func ReadLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lines, err := parseLines(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return lines, nil
}

func parseLines(r io.Reader) ([]string, error) {
	var lines []string
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return lines, s.Err()
}

// ReadModulesDep parses depmod's modules.dep ("path.ko: dep.ko dep.ko")
// into a map from each module's path to its dependencies, the one to load
// first last.
func ReadModulesDep(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	deps, err := ParseModulesDep(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return deps, nil
}

// ParseModulesDep parses the contents of a modules.dep file.
func ParseModulesDep(data []byte) (map[string][]string, error) {
	lines, err := parseLines(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	deps := make(map[string][]string, len(lines))
	for _, line := range lines {
		module, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(module) == "" {
			return nil, fmt.Errorf("invalid line %q, expected \"module.ko: dependency.ko ...\"", line)
		}
		deps[module] = strings.Fields(rest)
	}
	return deps, nil
}
