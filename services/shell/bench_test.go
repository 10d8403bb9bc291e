package shell

import (
	"io"
	"strconv"
	"testing"
)

// BenchmarkOutput measures the throughput of a command's stdout through a
// session on a local bus connection with the default ring size, including
// the start and end of the command.
func BenchmarkOutput(b *testing.B) {
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		client, _ := startServer(b, ServerOptions{})
		req := Request{Argv: []string{"head", "-c", strconv.Itoa(size), "/dev/zero"}}
		status, err := Run(testContext(b), client, req, nil, io.Discard, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		if status != (ExitStatus{}) {
			b.Fatalf("status = %+v, want exit 0", status)
		}
	}
}
