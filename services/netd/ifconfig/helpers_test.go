package ifconfig

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root to make network namespaces,
// unless CI=true, where every test must run.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("network namespace test needs root, and CI=true requires every test to run")
	}
	t.Skip("network namespace test needs root; skipped outside CI")
}

// testNet is a veth pair between two network namespaces made for one test:
// the device side, which the Manager configures, and the LAN side, where
// a test DHCP server runs.
type testNet struct {
	ns, lanNS netns.NsHandle
	h, lanH   *netlink.Handle
	link, lan string // the veth ends' names
}

const (
	deviceLink = "bt0"
	lanLink    = "bt1"
)

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireRoot(t)

	n := &testNet{ns: newNamespace(t), lanNS: newNamespace(t), link: deviceLink, lan: lanLink}
	n.h = newHandle(t, n.ns)
	n.lanH = newHandle(t, n.lanNS)

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: deviceLink},
		PeerName:      lanLink,
		PeerNamespace: netlink.NsFd(n.lanNS),
	}
	if err := n.h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair %s/%s: %v", deviceLink, lanLink, err)
	}
	t.Cleanup(func() {
		// Deleting one end deletes both; closing the namespaces would
		// too, this only makes it explicit.
		if l, err := n.h.LinkByName(deviceLink); err == nil {
			if err := n.h.LinkDel(l); err != nil {
				t.Errorf("delete veth %s: %v", deviceLink, err)
			}
		}
	})

	lan, err := n.lanH.LinkByName(lanLink)
	if err != nil {
		t.Fatalf("find %s in the LAN namespace: %v", lanLink, err)
	}
	if err := n.lanH.LinkSetUp(lan); err != nil {
		t.Fatalf("set %s up: %v", lanLink, err)
	}
	return n
}

// newNamespace makes an unnamed network namespace. It ends when its
// handle and every socket in it are closed, which t.Cleanup does.
func newNamespace(t *testing.T) netns.NsHandle {
	t.Helper()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("get the test's network namespace: %v", err)
	}
	defer orig.Close()

	var ns netns.NsHandle
	// inNamespace returns the thread to orig after netns.New moved it.
	err = inNamespace(&orig, func() error {
		var err error
		ns, err = netns.New()
		return err
	})
	if err != nil {
		t.Fatalf("make a network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func newHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", ns, err)
	}
	t.Cleanup(h.Close)
	return h
}

// newManager returns a Manager of the device side of n that reads the
// configuration file path, closed at the end of the test.
func (n *testNet) newManager(t *testing.T, path, stateFile string) *Manager {
	t.Helper()
	m, err := New(Options{
		Path:         path,
		Handle:       n.h,
		Namespace:    &n.ns,
		StateFile:    stateFile,
		DHCPRetryMin: 200 * time.Millisecond,
		DHCPRetryMax: time.Second,
		DHCPTimeout:  500 * time.Millisecond,
		Logger:       testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// startManager makes a testNet and a Manager of its device side, writes
// config to the Manager's configuration file and polls it once.
func startManager(t *testing.T, config string) (*testNet, *Manager, string) {
	t.Helper()
	n := newTestNet(t)
	path := configPath(t)
	writeConfig(t, path, config)
	m := n.newManager(t, path, "")
	m.Poll()
	return n, m, path
}

// addresses returns the addresses the kernel has on link, IPv6 link-local
// ones left out.
func addresses(t *testing.T, h *netlink.Handle, link string) []netip.Prefix {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("find %s: %v", link, err)
	}
	list, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses of %s: %v", link, err)
	}
	var out []netip.Prefix
	for _, a := range list {
		p, ok := prefixOf(a.IPNet)
		if ok && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p)
		}
	}
	return out
}

func hasAddress(t *testing.T, h *netlink.Handle, link, prefix string) bool {
	return slices.Contains(addresses(t, h, link), netip.MustParsePrefix(prefix))
}

// defaultGateways returns the gateways of the default routes through link.
func defaultGateways(t *testing.T, h *netlink.Handle, link string) []netip.Addr {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("find %s: %v", link, err)
	}
	var out []netip.Addr
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(family, &netlink.Route{LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			t.Fatalf("list routes of %s: %v", link, err)
		}
		for _, r := range routes {
			if gw, ok := netip.AddrFromSlice(r.Gw); ok && isDefaultRoute(r) {
				out = append(out, gw.Unmap())
			}
		}
	}
	return out
}

func linkAttrs(t *testing.T, h *netlink.Handle, link string) *netlink.LinkAttrs {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("find %s: %v", link, err)
	}
	return l.Attrs()
}

// addVethPair adds a veth pair inside the namespace of h (the kernel here
// may lack the dummy driver); the namespace's end removes it.
func addVethPair(t *testing.T, h *netlink.Handle, name, peer string) {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("add veth pair %s/%s: %v", name, peer, err)
	}
}

// addForeignAddress adds an address to link as someone other than the
// Manager would.
func addForeignAddress(t *testing.T, h *netlink.Handle, link, prefix string) {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("find %s: %v", link, err)
	}
	p := netip.MustParsePrefix(prefix)
	err = h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		t.Fatalf("add %s to %s: %v", prefix, link, err)
	}
}

// writeConfig replaces the configuration file at path.
func writeConfig(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func configPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "interfaces")
}

// waitFor polls cond until it holds or a generous timeout passes; the
// timeout only bounds a failing test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testLogger sends the Manager's log to the test log, until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
