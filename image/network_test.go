package image

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	principalLine = regexp.MustCompile(`\b(bt[a-z2-7]{52})\b`)
	// The line end is part of the match, so that a line that the console
	// has delivered only in part does not match.
	chainText = regexp.MustCompile(`(blocktree-chain:[A-Za-z0-9+/=]+)\r?\n`)
)

// TestShellBetweenDevices boots two devices whose network cards QEMU joins
// over a loopback TCP connection, configures their addresses through the
// interfaces file in each tree, and has the second device grant the first
// its shell. Before the grant the first device is refused; after it, bt
// shell on the first device runs a command on the second.
func TestShellBetweenDevices(t *testing.T) {
	requireImageTest(t, "apt-get", "dpkg-deb", "depmod", "qemu-system-x86_64", "swtpm", "mkfs.ext4")
	art := buildImage(t)
	port := freeLoopbackPort(t)
	nic := func(mode string) []string {
		return []string{
			"-netdev", fmt.Sprintf("socket,id=peer,%s=127.0.0.1:%d", mode, port),
			"-device", "virtio-net-pci,netdev=peer",
		}
	}
	// QEMU's connecting side gives up at once, without an error, when
	// nothing listens yet, and its card then stays unplugged. So the
	// second device starts only once the first one's QEMU listens.
	a := newAppliance(t).boot(t, art, defaultCmdline, nic("listen")...)
	waitListening(t, port)
	b := newAppliance(t).boot(t, art, defaultCmdline, nic("connect")...)
	a.waitReady()
	b.waitReady()

	nodeA := a.output("cat /run/bt/bus/node", principalLine)[1]
	nodeB := b.output("cat /run/bt/bus/node", principalLine)[1]
	for _, d := range []struct {
		v       *vm
		node    string
		address string
	}{{a, nodeA, "10.77.0.1/24"}, {b, nodeB, "10.77.0.2/24"}} {
		config := "/bt/dev/" + d.node + "/net"
		d.v.exec("echo 'interface eth0' > " + config + "/interfaces")
		d.v.exec("echo '    address " + d.address + "' >> " + config + "/interfaces")
	}
	a.exec(fmt.Sprintf("echo '%s 10.77.0.2:7420' >> /bt/dev/%s/net/peers", nodeB, nodeA))

	// netd applies the interfaces file within a few seconds. Until the
	// grant, device A holds no chain for B's tree and is refused.
	shell := fmt.Sprintf("/%s/dev/%s/svc/shell", nodeB, nodeB)
	a.run("bt shell "+nodeB+" -- cat /run/bt/bus/node", "refused")

	issue := fmt.Sprintf("bt keys issue --run /run/bt/bus --subject %s --prefix %s --out -", nodeA, shell)
	chain := b.output(issue, chainText)[1]
	chainFile := fmt.Sprintf("/bt/dev/%s/net/chains/%s.chain", nodeA, nodeB)
	// The chain goes in short lines, which the base64 decoder joins, so
	// that no typed line is longer than the console's width.
	a.exec("echo " + chain[:len("blocktree-chain:")] + " > " + chainFile)
	for rest := chain[len("blocktree-chain:"):]; rest != ""; {
		n := min(len(rest), 60)
		a.exec("echo " + rest[:n] + " >> " + chainFile)
		rest = rest[n:]
	}

	// The remote command's output is a line of its own; log lines of the
	// services name principals too, after "node=".
	out := a.output("bt shell "+nodeB+" -- cat /run/bt/bus/node", regexp.MustCompile(`(?m)^(bt[a-z2-7]{52})\r?$`))
	if out[1] != nodeB {
		t.Errorf("the shell on device B printed node %s, expected %s", out[1], nodeB)
	}
	// A command that starts sh by name, with its exit status passed back.
	a.output("bt shell "+nodeB+" -- sh -c 'echo sh-ran; exit 5'; echo status=$?", regexp.MustCompile(`(?m)^status=5\r?$`))
	a.output("bt shell "+nodeB+" -- no-such-command; echo status=$?", regexp.MustCompile(`(?m)^status=127\r?$`))
	if strings.Contains(b.console.text(0), "panic") {
		t.Errorf("device B's console shows a panic")
	}
	a.poweroff()
	b.poweroff()
}

// waitListening waits until a socket listens on TCP port of 127.0.0.1. It
// reads /proc/net/tcp rather than connecting, because QEMU's socket
// network backend accepts one connection only.
func waitListening(t *testing.T, port int) {
	t.Helper()
	// /proc/net/tcp lists the local address as hex IPv4:port and the
	// state 0A for LISTEN.
	want := fmt.Sprintf("0100007F:%04X", port)
	deadline := time.Now().Add(commandTimeout)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 3 && fields[1] == want && fields[3] == "0A" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on 127.0.0.1:%d within %s", port, commandTimeout)
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
