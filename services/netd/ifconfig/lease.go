package ifconfig

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Lease is a DHCPv4 lease as the Manager applies it.
type Lease struct {
	Address netip.Prefix
	Router  netip.Addr   // zero when the server sent no router
	DNS     []netip.Addr // recorded for display; resolv.conf is not written
	MTU     int          // 0 when the server sent no usable MTU
	Server  netip.Addr

	Obtained time.Time
	Renew    time.Time // T1: a renewal REQUEST goes to the server
	Rebind   time.Time // T2: a REQUEST goes to any server
	Expiry   time.Time // the address is removed
}

// Fallbacks of RFC 2131, section 4.4.5, for a server that omits T1 or T2:
// T1 = 0.5 and T2 = 0.875 times the lease time.
const (
	renewFraction  = 0.5
	rebindFraction = 0.875
)

// leaseFromACK takes a lease out of a DHCPACK received at now. It rejects
// an ACK whose address or lease time is missing or unusable.
func leaseFromACK(ack *dhcpv4.DHCPv4, now time.Time) (*Lease, error) {
	yiaddr, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok {
		return nil, fmt.Errorf("ACK without an IPv4 address (yiaddr %q)", ack.YourIPAddr)
	}
	if err := checkUnicast(yiaddr); err != nil {
		return nil, fmt.Errorf("ACK address %s: %w", yiaddr, err)
	}

	bits := 32
	if mask := ack.SubnetMask(); mask != nil {
		ones, size := net.IPMask(mask).Size()
		if size != 32 || ones == 0 {
			return nil, fmt.Errorf("ACK subnet mask %s is invalid", net.IP(mask))
		}
		bits = ones
	}

	leaseTime := ack.IPAddressLeaseTime(0)
	if leaseTime <= 0 {
		return nil, fmt.Errorf("ACK for %s without a lease time", yiaddr)
	}
	t1 := ack.IPAddressRenewalTime(0)
	t2 := ack.IPAddressRebindingTime(0)
	if t2 <= 0 || t2 > leaseTime {
		t2 = time.Duration(float64(leaseTime) * rebindFraction)
	}
	if t1 <= 0 || t1 > t2 {
		t1 = time.Duration(float64(leaseTime) * renewFraction)
		t1 = min(t1, t2)
	}

	l := &Lease{
		Address:  netip.PrefixFrom(yiaddr, bits),
		Obtained: now,
		Renew:    now.Add(t1),
		Rebind:   now.Add(t2),
		Expiry:   now.Add(leaseTime),
	}
	if routers := ack.Router(); len(routers) > 0 {
		if r, ok := netip.AddrFromSlice(routers[0].To4()); ok && checkUnicast(r) == nil {
			l.Router = r
		}
	}
	for _, ip := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(ip.To4()); ok && checkUnicast(a) == nil {
			l.DNS = append(l.DNS, a)
		}
	}
	if v := ack.Options.Get(dhcpv4.OptionInterfaceMTU); len(v) == 2 {
		if mtu := int(binary.BigEndian.Uint16(v)); mtu >= MinMTU {
			l.MTU = mtu
		}
	}
	if s, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok {
		l.Server = s
	}
	return l, nil
}

// lifetime returns the seconds left of the lease at now, for the kernel's
// valid and preferred lifetimes of the address. The kernel then removes
// the address at expiry by itself, even when netd is not running.
func (l *Lease) lifetime(now time.Time) int {
	secs := int64(l.Expiry.Sub(now) / time.Second)
	const forever = 0xffffffff // the kernel's INFINITY_LIFE_TIME
	switch {
	case secs < 1:
		return 1
	case secs >= forever:
		return forever
	}
	return int(secs)
}

func (l *Lease) clone() *Lease {
	if l == nil {
		return nil
	}
	c := *l
	c.DNS = append([]netip.Addr(nil), l.DNS...)
	return &c
}
