package ifconfig

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
)

// The test DHCP server's network, on the LAN side of the veth pair.
var (
	serverIP  = net.IPv4(10, 99, 0, 1)
	server2IP = net.IPv4(10, 99, 0, 2)
	leasedIP  = net.IPv4(10, 99, 0, 10)
	dnsIP     = net.IPv4(10, 99, 0, 53)
	leaseMTU  = 1400
	leaseSecs = 4 // short, so that a test observes renewals and expiry
	// T1 and T2 leave 2 s between rebinding and expiry, ample for a
	// response on a veth.
	renewSecs  = 1
	rebindSecs = 2

	leasedPrefix = netip.PrefixFrom(netip.AddrFrom4([4]byte(leasedIP.To4())), 24)
	leased       = leasedPrefix.String()
)

// testServer is a DHCPv4 server that hands out leasedIP and counts the
// messages it receives.
type testServer struct {
	t      *testing.T
	id     net.IP // its address, server identifier and router
	server *server4.Server
	done   chan struct{}

	mu        sync.Mutex
	discovers int
	acks      int
	renewals  int // REQUESTs with ciaddr set that arrived after the first ACK
	releases  int
}

// startServer runs a testServer with address id on the LAN end of n until
// the test ends or stop is called.
func startServer(t *testing.T, n *testNet, id net.IP) *testServer {
	t.Helper()
	lan, err := n.lanH.LinkByName(n.lan)
	if err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: id, Mask: net.CIDRMask(24, 32)}}
	if err := n.lanH.AddrAdd(lan, addr); err != nil {
		t.Fatalf("add %s to %s: %v", addr, n.lan, err)
	}

	s := &testServer{t: t, id: id, done: make(chan struct{})}
	err = inNamespace(&n.lanNS, func() error {
		var err error
		s.server, err = server4.NewServer(n.lan, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, s.handle)
		return err
	})
	if err != nil {
		t.Fatalf("start DHCP server on %s: %v", n.lan, err)
	}
	go func() {
		defer close(s.done)
		// Serve returns an error once stop closes its socket.
		_ = s.server.Serve()
	}()
	t.Cleanup(s.stop)
	return s
}

// stop closes the server's socket, after which it responds to nothing.
func (s *testServer) stop() {
	s.server.Close()
	<-s.done
}

func (s *testServer) handle(conn net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
	var reply dhcpv4.MessageType
	s.mu.Lock()
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		s.discovers++
		reply = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if s.acks > 0 && m.ClientIPAddr.Equal(leasedIP) {
			s.renewals++
		}
		s.acks++
		reply = dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeRelease:
		s.releases++
	}
	s.mu.Unlock()
	if reply == dhcpv4.MessageTypeNone {
		return
	}

	resp, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(reply),
		dhcpv4.WithYourIP(leasedIP),
		dhcpv4.WithServerIP(s.id),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(s.id),
		dhcpv4.WithDNS(dnsIP),
		dhcpv4.WithLeaseTime(uint32(leaseSecs)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.id)),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRenewTimeValue, Value: dhcpv4.Duration(time.Duration(renewSecs) * time.Second)}),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRebindingTimeValue, Value: dhcpv4.Duration(time.Duration(rebindSecs) * time.Second)}),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(leaseMTU >> 8), byte(leaseMTU)})),
	)
	if err != nil {
		s.t.Errorf("build DHCP reply: %v", err)
		return
	}
	// The client has no address yet, or takes replies on its packet
	// socket anyway, so every reply is a broadcast.
	if _, err := conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}); err != nil {
		s.t.Logf("send DHCP %s: %v", reply, err)
	}
}

func (s *testServer) discoverCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.discovers
}

func (s *testServer) counts() (acks, renewals, releases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks, s.renewals, s.releases
}

// validLifetime returns the kernel's valid lifetime of an address in
// seconds.
func validLifetime(t *testing.T, h *netlink.Handle, link string, p netip.Prefix) int {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if got, ok := prefixOf(a.IPNet); ok && got == p {
			return a.ValidLft
		}
	}
	t.Fatalf("address %s not on %s", p, link)
	return 0
}

const dhcpConfig = "interface bt0\n    dhcp\n"

// startLeased runs a DHCP server and a Manager with dhcp on bt0, and waits
// until bt0 has the lease's address.
func startLeased(t *testing.T) (*testNet, *testServer, *Manager, string) {
	t.Helper()
	n := newTestNet(t)
	server := startServer(t, n, serverIP)
	path := configPath(t)
	writeConfig(t, path, dhcpConfig)
	m := n.newManager(t, path, "")
	m.Poll()

	waitFor(t, "the leased address is on bt0", func() bool {
		return hasAddress(t, n.h, deviceLink, leased)
	})
	return n, server, m, path
}

func TestDHCPLeaseRenewAndExpiry(t *testing.T) {
	n, server, m, _ := startLeased(t)

	gws := defaultGateways(t, n.h, deviceLink)
	if !slices.Contains(gws, netip.AddrFrom4([4]byte(serverIP.To4()))) {
		t.Errorf("default routes via %v, want the lease's router %s", gws, serverIP)
	}
	if mtu := linkAttrs(t, n.h, deviceLink).MTU; mtu != leaseMTU {
		t.Errorf("mtu = %d, want the lease's %d", mtu, leaseMTU)
	}
	st := m.Status()
	if len(st.Interfaces) != 1 || st.Interfaces[0].Lease == nil {
		t.Fatalf("Status().Interfaces = %+v, want bt0 with a lease", st.Interfaces)
	}
	lease := st.Interfaces[0].Lease
	if want := []netip.Addr{netip.AddrFrom4([4]byte(dnsIP.To4()))}; !slices.Equal(lease.DNS, want) {
		t.Errorf("lease DNS = %v, want %v", lease.DNS, want)
	}
	if lease.Address != leasedPrefix || lease.Expiry.IsZero() {
		t.Errorf("lease = %+v, want address %s and an expiry", lease, leased)
	}
	if lft := validLifetime(t, n.h, deviceLink, leasedPrefix); lft <= 0 || lft > leaseSecs {
		t.Errorf("valid lifetime of %s = %d s, want 1 to %d (the lease's)", leased, lft, leaseSecs)
	}

	waitFor(t, "the server sees a renewal REQUEST after the first ACK", func() bool {
		_, renewals, _ := server.counts()
		return renewals > 0
	})
	if !hasAddress(t, n.h, deviceLink, leased) {
		t.Errorf("leased address gone after a renewal")
	}

	server.stop()
	waitFor(t, "the leased address leaves bt0 after the lease expired", func() bool {
		return !hasAddress(t, n.h, deviceLink, leased)
	})
	waitFor(t, "the lease leaves the status", func() bool {
		st := m.Status()
		return len(st.Interfaces) == 1 && st.Interfaces[0].Lease == nil
	})
	if gws := defaultGateways(t, n.h, deviceLink); len(gws) != 0 {
		t.Errorf("default routes via %v after expiry, want none", gws)
	}
}

func TestDHCPRebindsWithAnotherServer(t *testing.T) {
	n, first, m, _ := startLeased(t)
	first.stop()

	// The second server responds to REQUESTs from the start, but while
	// renewing the client takes an ACK only from the first server.
	second := startServer(t, n, server2IP)
	waitFor(t, "the lease comes from the second server", func() bool {
		st := m.Status()
		return len(st.Interfaces) == 1 && st.Interfaces[0].Lease != nil &&
			st.Interfaces[0].Lease.Server == netip.AddrFrom4([4]byte(server2IP.To4()))
	})
	if discovers := second.discoverCount(); discovers != 0 {
		t.Errorf("second server saw %d DISCOVERs, want 0: the lease was new, not rebound", discovers)
	}
}

func TestDHCPReleasedOnClose(t *testing.T) {
	n, server, m, _ := startLeased(t)

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if hasAddress(t, n.h, deviceLink, leased) {
		t.Errorf("leased address still on bt0 after Close")
	}
	waitFor(t, "the server receives a RELEASE", func() bool {
		_, _, releases := server.counts()
		return releases > 0
	})
}

func TestDHCPRemovedFromConfig(t *testing.T) {
	n, _, m, path := startLeased(t)

	writeConfig(t, path, "interface bt0\n    address 10.99.0.20/24\n")
	m.Poll()
	if hasAddress(t, n.h, deviceLink, leased) {
		t.Errorf("leased address still on bt0 after dhcp left the file")
	}
	if !hasAddress(t, n.h, deviceLink, "10.99.0.20/24") {
		t.Errorf("static address missing; kernel has %v", addresses(t, n.h, deviceLink))
	}
	if st := m.Status(); st.Interfaces[0].DHCP || st.Interfaces[0].Lease != nil {
		t.Errorf("status of bt0 = %+v, want no DHCP and no lease", st.Interfaces[0])
	}
}

func TestDHCPRetriesWithoutServer(t *testing.T) {
	n, m, _ := startManager(t, dhcpConfig)

	waitFor(t, "the status shows the DHCP failure", func() bool {
		st := m.Status()
		return len(st.Interfaces) == 1 && st.Interfaces[0].DHCPError != ""
	})

	// A server that starts late is found by a later attempt.
	startServer(t, n, serverIP)
	waitFor(t, "the leased address is on bt0", func() bool {
		return hasAddress(t, n.h, deviceLink, leased)
	})
	if st := m.Status(); st.Interfaces[0].DHCPError != "" {
		t.Errorf("DHCPError = %q after a lease, want empty", st.Interfaces[0].DHCPError)
	}
}
