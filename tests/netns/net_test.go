package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ip runs the ip command with args and fails the test on error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// namespace creates a network namespace with loopback up and deletes it,
// with every interface in it, when the test ends.
func namespace(t testing.TB, name string) string {
	t.Helper()
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// prefix returns a name prefix for this test's namespaces and interfaces,
// unique among concurrent test processes and at most 8 bytes, so that
// interface names stay within 15 bytes.
func prefix() string { return fmt.Sprintf("bt%d", os.Getpid()%100000) }

// subnet is the IPv4 network of the test topologies. 10.x is private, and
// the addresses exist only inside the test's namespaces.
const subnet = "10.201.0."

// pointToPoint joins two namespaces with one veth pair and returns their
// addresses.
func pointToPoint(t testing.TB, nsA, nsB string) (addrA, addrB string) {
	t.Helper()
	p := prefix()
	ip(t, "link", "add", p+"a", "netns", nsA, "type", "veth", "peer", "name", p+"b", "netns", nsB)
	addrA, addrB = subnet+"1", subnet+"2"
	ip(t, "-n", nsA, "addr", "add", addrA+"/24", "dev", p+"a")
	ip(t, "-n", nsB, "addr", "add", addrB+"/24", "dev", p+"b")
	ip(t, "-n", nsA, "link", "set", p+"a", "up")
	ip(t, "-n", nsB, "link", "set", p+"b", "up")
	return addrA, addrB
}

// bridged joins namespaces through a bridge in a namespace of its own and
// returns their addresses, in order.
func bridged(t testing.TB, bridgeNS string, nodes ...string) []string {
	t.Helper()
	p := prefix()
	ip(t, "-n", bridgeNS, "link", "add", "br0", "type", "bridge")
	ip(t, "-n", bridgeNS, "link", "set", "br0", "up")
	var addrs []string
	for i, ns := range nodes {
		inner, outer := fmt.Sprintf("%sn%d", p, i), fmt.Sprintf("%sp%d", p, i)
		ip(t, "link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", bridgeNS)
		ip(t, "-n", bridgeNS, "link", "set", outer, "master", "br0")
		ip(t, "-n", bridgeNS, "link", "set", outer, "up")
		addr := fmt.Sprintf("%s%d", subnet, i+1)
		ip(t, "-n", ns, "addr", "add", addr+"/24", "dev", inner)
		ip(t, "-n", ns, "link", "set", inner, "up")
		addrs = append(addrs, addr)
	}
	return addrs
}

// cut makes the firewall of namespace ns drop every packet to and from
// addr (iptables DROP rules in its INPUT and OUTPUT chains), so the TCP
// connections to addr see silence, as on a cut cable, and new connections
// fail. The returned function deletes the rules again.
func cut(t testing.TB, ns, addr string) func() {
	t.Helper()
	rules := [][]string{
		{"INPUT", "-s", addr, "-j", "DROP"},
		{"OUTPUT", "-d", addr, "-j", "DROP"},
	}
	iptables := func(action string, rule []string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns, "iptables", action}, rule...)...)
	}
	for _, rule := range rules {
		if out, err := iptables("-A", rule).CombinedOutput(); err != nil {
			t.Fatalf("iptables -A %s in %s: %v: %s", strings.Join(rule, " "), ns, err, out)
		}
	}
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		for _, rule := range rules {
			if out, err := iptables("-D", rule).CombinedOutput(); err != nil {
				t.Errorf("iptables -D %s in %s: %v: %s", strings.Join(rule, " "), ns, err, out)
			}
		}
	}
	// The rules go away with the namespace; the cleanup only keeps the
	// order when a test fails between cut and restore.
	t.Cleanup(restore)
	return restore
}
