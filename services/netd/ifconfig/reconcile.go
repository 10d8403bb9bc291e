package ifconfig

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route metrics. A DHCP router ranks below a static gateway on another
// interface, and the two never collide in the kernel's table.
const (
	staticMetric = 0 // the kernel's default: 0 for IPv4, 1024 for IPv6
	dhcpMetric   = 100
)

// reconcile makes interface name match the current configuration and
// lease, records the outcome in its status and logs a new error. The
// caller holds m.mu.
func (m *Manager) reconcile(name string) error {
	st := m.state(name)
	in := m.cfg.Interface(name)

	err := m.applyInterface(st, in)
	if err != nil {
		err = fmt.Errorf("interface %s: %w", name, err)
	}
	m.noteError(st, err)

	if in == nil && st.dhcp == nil && err == nil && !m.ownsAny(name) {
		delete(m.ifaces, name)
	}
	return err
}

func (m *Manager) noteError(st *ifaceState, err error) {
	if st.errors.note(err) {
		if err != nil {
			m.log.Warn("interface not fully configured", "interface", st.name, "error", err, "repeats", st.errors.count)
		} else {
			m.log.Info("interface configured after errors", "interface", st.name)
		}
	}
	if err != nil {
		st.status.LastError = err.Error()
		st.status.ErrorTime = time.Now()
	} else {
		st.status.LastError = ""
		st.status.ErrorTime = time.Time{}
	}
}

// applyInterface makes one link match in, or, when in is nil, removes
// what this Manager added to it and leaves the rest. It goes on after an
// error, so that one bad setting does not hold back the others, and
// returns the errors joined.
func (m *Manager) applyInterface(st *ifaceState, in *Interface) error {
	h := m.opts.Handle
	st.status.Configured = in != nil
	st.status.Down = in != nil && in.Down
	st.status.DHCP = in != nil && in.DHCP && !in.Down
	st.status.MTU = 0

	link, err := h.LinkByName(st.name)
	if err != nil {
		st.status.Addresses, st.status.Gateways = nil, nil
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return fmt.Errorf("find link: %w", err)
		}
		// The kernel deleted the link's addresses and routes with it.
		m.disownInterface(st.name)
		if in == nil {
			return nil
		}
		return errors.New("not found: check the name with \"ip link\"; netd retries at every poll")
	}
	attrs := link.Attrs()

	var errs []error
	var addrs []netip.Prefix
	var gateways []netip.Addr
	switch {
	case in == nil:
	case in.Down:
		if attrs.Flags&net.FlagUp != 0 {
			if err := h.LinkSetDown(link); err != nil {
				errs = append(errs, fmt.Errorf("set link down: %w", err))
			} else {
				m.log.Info("link set down", "interface", st.name)
			}
		}
	default:
		if mtu := m.wantMTU(in, st.lease); mtu != 0 {
			st.status.MTU = mtu
			if attrs.MTU != mtu {
				if err := h.LinkSetMTU(link, mtu); err != nil {
					errs = append(errs, fmt.Errorf("set mtu %d: %w", mtu, err))
				} else {
					m.log.Info("mtu set", "interface", st.name, "mtu", mtu)
				}
			}
		}
		if attrs.Flags&net.FlagUp == 0 {
			if err := h.LinkSetUp(link); err != nil {
				errs = append(errs, fmt.Errorf("set link up: %w", err))
			} else {
				m.log.Info("link set up", "interface", st.name)
			}
		}
		addrs = slices.Clone(in.Addresses)
		for _, gw := range []netip.Addr{in.Gateway4, in.Gateway6} {
			if gw.IsValid() {
				gateways = append(gateways, gw)
			}
		}
	}

	// The lease is only set while a client runs, which needs dhcp and no
	// down in the configuration.
	lease := st.lease
	if lease != nil {
		addrs = append(addrs, lease.Address)
		if lease.Router.IsValid() {
			gateways = append(gateways, lease.Router)
		}
	}

	applied, err := m.setAddresses(st.name, link, addrs, lease)
	errs = append(errs, err)
	st.status.Addresses = applied
	routed, err := m.setRoutes(st.name, link, gateways, lease)
	errs = append(errs, err)
	st.status.Gateways = routed

	if in != nil && in.DHCP && !in.Down && st.dhcp == nil && !m.closed {
		st.dhcp = m.startDHCP(st.name)
	}
	return errors.Join(errs...)
}

// wantMTU returns the MTU for the link: the configured one, else the
// lease's, else 0 to leave it alone. A lease's MTU below the IPv6 minimum
// is ignored when IPv6 addresses are configured.
func (m *Manager) wantMTU(in *Interface, lease *Lease) int {
	if in.MTU != 0 {
		return in.MTU
	}
	if lease == nil || lease.MTU == 0 {
		return 0
	}
	if lease.MTU < MinMTUWithIPv6 && slices.ContainsFunc(in.Addresses, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
		return 0
	}
	return lease.MTU
}

// setAddresses adds the addresses in want that the link lacks, and
// removes the addresses that this Manager added and that are no longer in
// want. lease, when set, gives the lifetime of its address. It returns
// the addresses of want that the link has afterwards.
func (m *Manager) setAddresses(name string, link netlink.Link, want []netip.Prefix, lease *Lease) ([]netip.Prefix, error) {
	h := m.opts.Handle
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	have := make(map[netip.Prefix]bool)
	for _, a := range list {
		if p, ok := prefixOf(a.IPNet); ok {
			have[p] = true
		}
	}

	var errs []error
	var applied []netip.Prefix
	for _, p := range want {
		o := owned{Interface: name, Address: p}
		_, ours := m.owned[o]
		isLease := lease != nil && p == lease.Address
		if have[p] && !(isLease && ours) {
			// Present already: ours from an earlier Apply, or someone
			// else's, which stays theirs.
			applied = append(applied, p)
			continue
		}

		addr := &netlink.Addr{IPNet: ipNetOf(p)}
		if isLease {
			addr.ValidLft = lease.lifetime(time.Now())
			addr.PreferedLft = addr.ValidLft
		}
		// Recorded before it is added: a crash in between leaves a
		// record of an absent address, which is harmless.
		m.own(o)
		if isLease {
			// Replace updates the lifetimes of the lease's address.
			err = h.AddrReplace(link, addr)
		} else {
			err = h.AddrAdd(link, addr)
		}
		if err != nil {
			if !have[p] {
				m.disown(o)
			}
			errs = append(errs, fmt.Errorf("add address %s: %w", p, err))
			continue
		}
		if !have[p] {
			m.log.Info("address added", "interface", name, "address", p)
		}
		applied = append(applied, p)
	}

	for o := range m.owned {
		if o.Interface != name || !o.Address.IsValid() || slices.Contains(want, o.Address) {
			continue
		}
		if have[o.Address] {
			if o.Address.Addr().Is4() {
				errs = append(errs, m.promoteSecondaries(name))
			}
			if err := h.AddrDel(link, &netlink.Addr{IPNet: ipNetOf(o.Address)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove address %s: %w", o.Address, err))
				continue
			}
			m.log.Info("address removed", "interface", name, "address", o.Address)
		}
		m.disown(o)
	}
	return applied, errors.Join(errs...)
}

// setRoutes adds a default route through each gateway in want that the
// link lacks, and removes the default routes that this Manager added and
// that are no longer in want. A route through lease's router is marked as
// learned by DHCP.
func (m *Manager) setRoutes(name string, link netlink.Link, want []netip.Addr, lease *Lease) ([]netip.Addr, error) {
	h := m.opts.Handle
	have := make(map[netip.Addr]bool)
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(family, &netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if !isDefaultRoute(r) {
				continue
			}
			if gw, ok := netip.AddrFromSlice(r.Gw); ok {
				have[gw.Unmap()] = true
			}
		}
	}

	// Stale routes go first: an IPv4 default route with the same metric
	// through another gateway would make the kernel reject the new one.
	var errs []error
	for o := range m.owned {
		if o.Interface != name || !o.Gateway.IsValid() || slices.Contains(want, o.Gateway) {
			continue
		}
		if have[o.Gateway] {
			// Priority 0 matches the route whatever its metric.
			if err := h.RouteDel(defaultRoute(link, o.Gateway)); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("remove default route via %s: %w", o.Gateway, err))
				continue
			}
			m.log.Info("default route removed", "interface", name, "address", o.Gateway)
		}
		m.disown(o)
	}

	var applied []netip.Addr
	for _, gw := range want {
		if have[gw] {
			applied = append(applied, gw)
			continue
		}
		r := defaultRoute(link, gw)
		r.Protocol, r.Priority = unix.RTPROT_STATIC, staticMetric
		if lease != nil && gw == lease.Router {
			r.Protocol, r.Priority = unix.RTPROT_DHCP, dhcpMetric
		}
		o := owned{Interface: name, Gateway: gw}
		m.own(o)
		if err := h.RouteAdd(r); err != nil {
			m.disown(o)
			errs = append(errs, fmt.Errorf("add default route via %s: %w", gw, err))
			continue
		}
		m.log.Info("default route added", "interface", name, "address", gw)
		applied = append(applied, gw)
	}

	return applied, errors.Join(errs...)
}

// promoteSecondaries sets the link's promote_secondaries sysctl. Without
// it the kernel deletes every other address of a subnet, someone else's
// too, along with the subnet's first (primary) address.
func (m *Manager) promoteSecondaries(name string) error {
	path := "/proc/sys/net/ipv4/conf/" + name + "/promote_secondaries"
	err := inNamespace(m.opts.Namespace, func() error {
		// /proc/sys/net shows the network namespace of the opening thread.
		return os.WriteFile(path, []byte("1\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("keep other addresses on removal: %w", err)
	}
	return nil
}

func defaultRoute(link netlink.Link, gw netip.Addr) *netlink.Route {
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if gw.Is6() {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw.AsSlice()}
}

// isDefaultRoute reports whether r is a default route of the main table.
// netlink leaves Dst nil or sets it to 0.0.0.0/0 or ::/0, depending on
// the version.
func isDefaultRoute(r netlink.Route) bool {
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		return false
	}
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	ones, bits := n.Mask.Size()
	if bits != addr.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(addr, ones), true
}

func ipNetOf(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// own records that this Manager added o, and saves the record.
func (m *Manager) own(o owned) {
	if _, ok := m.owned[o]; ok {
		return
	}
	m.owned[o] = struct{}{}
	m.saveRecord()
}

// disown removes o from the record, and saves the record.
func (m *Manager) disown(o owned) {
	if _, ok := m.owned[o]; !ok {
		return
	}
	delete(m.owned, o)
	m.saveRecord()
}

func (m *Manager) disownInterface(name string) {
	for o := range m.owned {
		if o.Interface == name {
			m.disown(o)
		}
	}
}

func (m *Manager) ownsAny(name string) bool {
	for o := range m.owned {
		if o.Interface == name {
			return true
		}
	}
	return false
}

// saveRecord writes the state file. On failure the file lists too little
// or too much. A restarted Manager leaves an address missing from the file
// alone, and removes an extra one only if the link has it.
func (m *Manager) saveRecord() {
	err := saveRecord(m.opts.StateFile, m.owned)
	if m.saved.note(err) {
		if err != nil {
			m.log.Error("state file not saved", "path", m.opts.StateFile, "error", err, "repeats", m.saved.count)
		} else {
			m.log.Info("state file saved after errors", "path", m.opts.StateFile)
		}
	}
}
