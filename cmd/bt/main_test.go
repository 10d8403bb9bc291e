package main

import (
	"strings"
	"testing"
)

func TestOptionErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown option", []string{"node", "--bogus"}, "bt node: unknown option --bogus: run 'bt node --help' for the options"},
		{"missing value", []string{"node", "--state"}, "bt node: option --state needs a value: run 'bt node --help' for the options"},
		{"duration without unit", []string{"node", "--checkpoint-interval", "30"}, `bt node: invalid duration "30" for --checkpoint-interval: give a number with a unit, such as 30s, 5m or 1h`},
		{"duration not a number", []string{"ping", "--timeout=soon", "btx"}, `bt ping: invalid duration "soon" for --timeout: give a number with a unit, such as 30s, 5m or 1h, of at most 2562047h`},
		{"duration too long", []string{"node", "--checkpoint-interval=10000000h"}, `bt node: invalid duration "10000000h" for --checkpoint-interval: give a number with a unit, such as 30s, 5m or 1h, of at most 2562047h`},
		{"integer not a number", []string{"ping", "--count", "x", "btx"}, `bt ping: invalid value "x" for --count: run 'bt ping --help' for the options`},
		{"value that looks like a message", []string{"ping", "--timeout", "1 for flag -count", "btx"}, `bt ping: invalid duration "1 for flag -count" for --timeout: give a number with a unit, such as 30s, 5m or 1h, of at most 2562047h`},
		{"boolean not true or false", []string{"node", "--verbose=maybe"}, `bt node: invalid value "maybe" for --verbose: give true or false, or leave the value out for true`},
		{"option with a carriage return", []string{"node", "--verbose\r"}, `bt node: unknown option "--verbose\r": run 'bt node --help' for the options`},
		{"one required option missing", []string{"node", "--state", "/tmp/s"}, "bt node: --mount is required: run 'bt node --help' for the options"},
		{"all required options missing", []string{"node"}, "bt node: --state and --mount are required: run 'bt node --help' for the options"},
		{"two of three required options missing", []string{"mount", "--socket", "/tmp/s"}, "bt mount: --mount and --principal are required: run 'bt mount --help' for the options"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runBT(t, c.args...)
			if r.code != 2 {
				t.Errorf("exit code %d, expected 2", r.code)
			}
			if got := strings.TrimSuffix(r.stderr, "\n"); got != c.want {
				t.Errorf("stderr %q\nexpected  %q", got, c.want)
			}
		})
	}
}

func TestMissingDirAdvice(t *testing.T) {
	if err := missingDir("state directory", "/tmp/no-such"); !strings.Contains(err.Error(), "mkdir -p /tmp/no-such") {
		t.Errorf("missingDir of an absolute path = %q, expected the mkdir advice", err)
	}
	err := missingDir("mount point", "~/bt/tree")
	if strings.Contains(err.Error(), "mkdir") || !strings.Contains(err.Error(), "$HOME") {
		t.Errorf("missingDir of a quoted ~ path = %q, expected advice about quotes and $HOME instead of mkdir", err)
	}
}
