package ifconfig

import (
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzParse checks that Parse never panics, that its errors are single
// lines naming the file, and that what it accepts keeps the file format's
// rules and survives Format and Parse again unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleFile))
	f.Add([]byte("interface eth0\n dhcp\n address fd00::2/64\n mtu 1280\n"))
	f.Add([]byte("interface eth1\n  address 192.168.10.2\n"))
	f.Add([]byte("interface eth0\n address 10.0.0.2/24\n gateway 10.0.1.1\n"))
	f.Add([]byte("interface eth0\r\n down # off\r\n"))
	f.Add([]byte("interface lo\n"))
	f.Add([]byte("interface eth0\n mtu 99999999999999999999\n"))
	f.Add([]byte("interface eth0\n address ::ffff:10.0.0.1/120\n"))
	f.Add([]byte("\x00\xff interface"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz", data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "fuzz") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line starting with the file name", msg)
			}
			return
		}

		for _, in := range cfg.Interfaces {
			if in.Name == "lo" || checkInterfaceName(in.Name) != nil || in.Name == "" {
				t.Errorf("accepted interface name %q", in.Name)
			}
			if in.MTU != 0 && (in.MTU < MinMTU || in.MTU > MaxMTU) {
				t.Errorf("accepted mtu %d", in.MTU)
			}
			for _, p := range in.Addresses {
				if in.DHCP && p.Addr().Is4() {
					t.Errorf("accepted dhcp with %s on %s", p, in.Name)
				}
			}
			if in.Gateway4.IsValid() && !coveredBy(in.Gateway4, in.Addresses) {
				t.Errorf("accepted gateway %s outside the prefixes of %s", in.Gateway4, in.Name)
			}
		}

		again, err := Parse("formatted", cfg.Format())
		if err != nil {
			t.Fatalf("Parse(Format()) failed: %v\n%s", err, cfg.Format())
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("Format and Parse changed the config:\n%+v\n%+v", cfg, again)
		}
	})
}

// FuzzDecodeRecord checks that the state file decoder never panics and
// that what it accepts encodes and decodes to the same set.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"owned":[{"interface":"eth0","address":"10.0.0.2/24"},{"interface":"eth0","gateway":"10.0.0.1"}]}`))
	f.Add([]byte(`{"owned":[{"interface":"eth0","address":"10.0.0.2/24","gateway":"10.0.0.1"}]}`))
	f.Add([]byte(`{"owned":[{"interface":"lo","address":"127.0.0.2/8"}]}`))
	f.Add([]byte(`{"owned":[{"interface":"eth0","address":"fd00::2/200"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))

	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeRecord(data)
		if err != nil {
			return
		}
		set := make(map[owned]struct{})
		for _, o := range entries {
			set[o] = struct{}{}
		}
		again, err := decodeRecord(encodeRecord(set))
		if err != nil {
			t.Fatalf("decode(encode()) failed: %v", err)
		}
		if len(again) != len(set) {
			t.Fatalf("decode(encode()) has %d entries, want %d", len(again), len(set))
		}
		for _, o := range again {
			if _, ok := set[o]; !ok {
				t.Fatalf("decode(encode()) added %+v", o)
			}
		}
	})
}

// FuzzLeaseFromACK feeds DHCP messages, as the client receives them from
// the network, to leaseFromACK: it must not panic, and a lease it returns
// must have a usable address and ordered times.
func FuzzLeaseFromACK(f *testing.F) {
	ack, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 2)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 0, 0, 1)),
		dhcpv4.WithDNS(net.IPv4(10, 0, 0, 53)),
		dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, []byte{0x05, 0xdc})),
		dhcpv4.WithServerIP(net.IPv4(10, 0, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))),
	)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ack.ToBytes())
	ack.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRenewTimeValue, []byte{0, 0, 0x0f, 0xff}))
	f.Add(ack.ToBytes())
	ack.UpdateOption(dhcpv4.OptSubnetMask(net.IPMask{255, 0, 255, 0}))
	f.Add(ack.ToBytes())
	ack.YourIPAddr = net.IPv4zero
	f.Add(ack.ToBytes())

	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		lease, err := leaseFromACK(msg, now)
		if err != nil {
			return
		}
		if !lease.Address.IsValid() || !lease.Address.Addr().Is4() || checkUnicast(lease.Address.Addr()) != nil {
			t.Fatalf("lease address %s", lease.Address)
		}
		if !now.Before(lease.Expiry) || lease.Renew.After(lease.Rebind) || lease.Rebind.After(lease.Expiry) {
			t.Fatalf("lease times out of order: renew %v rebind %v expiry %v", lease.Renew, lease.Rebind, lease.Expiry)
		}
		if lease.MTU != 0 && (lease.MTU < MinMTU || lease.MTU > MaxMTU) {
			t.Fatalf("lease mtu %d", lease.MTU)
		}
		if lt := lease.lifetime(now); lt < 1 {
			t.Fatalf("lifetime %d", lt)
		}
	})
}
