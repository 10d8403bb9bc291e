// Package netns tests message routing between host-mode nodes as a user
// runs it. Each `bt node` runs in its own network namespace, and the nodes
// reach each other over veth pairs. `bt ping` exchanges messages with
// another node's echo service through both nodes' netd. The tests issue
// the writecap chains with `bt keys issue --state`, check that a node
// without a covering chain is refused, and cut a link to check what the
// callers of docs/msg.md see. BenchmarkBetweenNodes measures netd
// against plain TCP and TLS 1.3 over one veth pair (docs/benchmarks.md).
//
// The tests need root, the ip and iptables commands, /dev/fuse, fusermount3
// and swtpm. Without them they skip, unless CI=true, where they fail. They
// cut links with iptables DROP rules inside a namespace, rather than tc's
// netem, because the kernels this project tests on may lack netem.
//
// The package has no code of its own: everything is in the _test.go files.
package netns
