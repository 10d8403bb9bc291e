package logbuf

import (
	"fmt"
	"sync"
	"testing"
)

func TestLinesFiltersByEveryWord(t *testing.T) {
	var b Buffer
	fmt.Fprintln(&b, "level=WARN msg=rejected peer=a")
	fmt.Fprintln(&b, "level=INFO msg=accepted peer=a")
	fmt.Fprintln(&b, "level=WARN msg=rejected peer=b")
	if got := b.Lines("rejected", "peer=a"); len(got) != 1 || got[0] != "level=WARN msg=rejected peer=a\n" {
		t.Errorf("Lines(rejected, peer=a) = %q, expected the first line only", got)
	}
	if got := b.Lines(); len(got) != 3 {
		t.Errorf("Lines() = %d lines, expected all 3", len(got))
	}
}

func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				fmt.Fprintf(&b, "writer=%d line=%d\n", i, j)
			}
		}()
	}
	wg.Wait()
	if got := len(b.Lines("writer=")); got != 800 {
		t.Errorf("%d lines, expected 800", got)
	}
}
