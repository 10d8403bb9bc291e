package main

import "testing"

func TestParseSize(t *testing.T) {
	cases := []struct {
		text string
		want int64
	}{
		{"512", 512},
		{"64M", 64 << 20},
		{"64MiB", 64 << 20},
		{"64MB", 64 << 20},
		{"2G", 2 << 30},
		{"2g", 2 << 30},
		{"1T", 1 << 40},
		{"4K", 4 << 10},
	}
	for _, c := range cases {
		got, err := parseSize(c.text)
		if err != nil {
			t.Errorf("parseSize(%q): %v", c.text, err)
			continue
		}
		if got != c.want {
			t.Errorf("parseSize(%q) = %d, expected %d", c.text, got, c.want)
		}
	}
}

func TestParseSizeRejects(t *testing.T) {
	for _, text := range []string{"", "G", "0", "-1G", "2X", "1.5G", "9999999999T"} {
		if got, err := parseSize(text); err == nil {
			t.Errorf("parseSize(%q) = %d, expected an error", text, got)
		}
	}
}
