//go:build linux

package main

import (
	"os"
	"strings"
)

// cmdlineParam returns the value of the first key=value field on the kernel
// command line, and false when there is none or /proc/cmdline is
// unreadable. Quoted values that contain spaces are not supported.
func cmdlineParam(key string) (string, bool) {
	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return "", false
	}
	for _, field := range strings.Fields(string(data)) {
		if k, v, ok := strings.Cut(field, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
