package ifconfig

import (
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const exampleFile = `# interfaces of the kitchen device
interface eth0
    dhcp
interface eth1
    address 192.168.10.2/24   # the lab network
    address fd00::2/64
    gateway 192.168.10.1
    gateway fd00::1
    mtu 1400
interface eth2
    down
interface wlan0
	dhcp
	address fd01::5/64
`

func TestParseExample(t *testing.T) {
	cfg, err := Parse("interfaces", []byte(exampleFile))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{Interfaces: []Interface{
		{Name: "eth0", DHCP: true},
		{
			Name:      "eth1",
			Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.10.2/24"), netip.MustParsePrefix("fd00::2/64")},
			Gateway4:  netip.MustParseAddr("192.168.10.1"),
			Gateway6:  netip.MustParseAddr("fd00::1"),
			MTU:       1400,
		},
		{Name: "eth2", Down: true},
		{
			Name:      "wlan0",
			DHCP:      true,
			Addresses: []netip.Prefix{netip.MustParsePrefix("fd01::5/64")},
		},
	}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse = %+v\nwant %+v", cfg, want)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, data := range []string{"", "\n\n", "# nothing yet\n   \n\t# indented comment\n"} {
		cfg, err := Parse("interfaces", []byte(data))
		if err != nil {
			t.Errorf("Parse(%q): %v", data, err)
			continue
		}
		if len(cfg.Interfaces) != 0 {
			t.Errorf("Parse(%q) = %d interfaces, want 0", data, len(cfg.Interfaces))
		}
	}
}

func TestParseCRLF(t *testing.T) {
	cfg, err := Parse("interfaces", []byte("interface eth0\r\n  dhcp\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Interfaces) != 1 || !cfg.Interfaces[0].DHCP {
		t.Errorf("Parse = %+v, want eth0 with dhcp", cfg)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string // the whole message
	}{
		{"missing prefix", "interface eth1\n\n\n  address 192.168.10.2\n",
			`interfaces:4: "192.168.10.2": missing prefix length: write it as 192.168.10.2/24`},
		{"missing prefix IPv6", "interface eth1\n  address fd00::2\n",
			`interfaces:2: "fd00::2": missing prefix length: write it as fd00::2/64`},
		{"invalid address", "interface eth1\n  address 300.1.1.1/24\n",
			`interfaces:2: "300.1.1.1/24": invalid address: write it as 192.168.1.2/24 or fd00::2/64`},
		{"unknown keyword", "interface eth1\n  adress 10.0.0.2/24\n",
			`interfaces:2: adress: unknown keyword: use interface, dhcp, address, gateway, mtu or down`},
		{"keyword before interface", "dhcp\n",
			`interfaces:1: dhcp: keyword before the first interface line: start the stanza with "interface NAME"`},
		{"duplicate interface", "interface eth0\n dhcp\ninterface eth0\n",
			`interfaces:3: "eth0": interface named twice: merge the two stanzas`},
		{"duplicate address", "interface eth0\n address 10.0.0.2/24\ninterface eth1\n address 10.0.0.2/16\n",
			`interfaces:4: "10.0.0.2/16": address given twice (first at line 2): keep one`},
		{"duplicate mtu", "interface eth0\n mtu 1500\n mtu 1400\n",
			`interfaces:3: mtu: given twice for interface eth0 (first at line 2): keep one`},
		{"duplicate dhcp", "interface eth0\n dhcp\n dhcp\n",
			`interfaces:3: dhcp: given twice for interface eth0 (first at line 2): keep one`},
		{"duplicate gateway", "interface eth0\n address 10.0.0.2/24\n gateway 10.0.0.1\n gateway 10.0.0.3\n",
			`interfaces:4: gateway (IPv4): given twice for interface eth0 (first at line 3): keep one`},
		{"dhcp and static IPv4", "interface eth0\n dhcp\n address 10.0.0.2/24\n",
			`interfaces:2: "eth0": dhcp together with a static IPv4 address: remove dhcp or the IPv4 addresses`},
		{"dhcp and IPv4 gateway", "interface eth0\n dhcp\n address fd00::2/64\n gateway 10.0.0.1\n",
			`interfaces:2: "eth0": dhcp together with an IPv4 gateway: remove the gateway, DHCP supplies the router`},
		{"gateway outside prefixes", "interface eth0\n address 10.0.0.2/24\n gateway 10.0.1.1\n",
			`interfaces:3: "10.0.1.1": gateway is outside every address prefix of interface eth0: add an address in its subnet, or fix the gateway`},
		{"gateway without addresses", "interface eth0\n gateway fd00::1\n",
			`interfaces:2: "fd00::1": gateway is outside every address prefix of interface eth0: add an address in its subnet, or fix the gateway`},
		{"gateway with prefix", "interface eth0\n gateway 10.0.0.1/24\n",
			`interfaces:2: "10.0.0.1/24": a gateway is an address without prefix length: remove the /N`},
		{"mtu too small", "interface eth0\n mtu 67\n",
			`interfaces:2: "67": MTU out of range: use a number from 68 to 65535`},
		{"mtu too large", "interface eth0\n mtu 65536\n",
			`interfaces:2: "65536": MTU out of range: use a number from 68 to 65535`},
		{"mtu not a number", "interface eth0\n mtu big\n",
			`interfaces:2: "big": MTU out of range: use a number from 68 to 65535`},
		{"mtu below IPv6 minimum", "interface eth0\n address fd00::2/64\n mtu 1000\n",
			`interfaces:3: "1000": IPv6 needs an MTU of at least 1280: raise the MTU or remove the IPv6 addresses`},
		{"down with address", "interface eth0\n down\n address 10.0.0.2/24\n",
			`interfaces:2: "eth0": down together with dhcp, address or gateway: remove down, or remove the others`},
		{"loopback", "interface lo\n",
			`interfaces:1: "lo": the loopback interface is never configured here: remove this stanza`},
		{"long name", "interface abcdefghijklmnop\n",
			`interfaces:1: "abcdefghijklmnop": interface name is longer than 15 bytes: use the name that "ip link" shows`},
		{"name with slash", "interface eth/0\n",
			`interfaces:1: "eth/0": interface name contains '/' or ':': use the name that "ip link" shows`},
		{"interface without name", "interface\n",
			`interfaces:1: interface: takes one interface name: write it as "interface eth0"`},
		{"dhcp with argument", "interface eth0\n dhcp yes\n",
			`interfaces:2: dhcp: takes no argument, found "yes": write dhcp alone on its line`},
		{"address without value", "interface eth0\n address\n",
			`interfaces:2: address: missing value: write it as "address 192.168.1.2/24"`},
		{"two addresses on a line", "interface eth0\n address 10.0.0.2/24 10.0.0.3/24\n",
			`interfaces:2: address: takes one value, found 2: write one address per line`},
		{"network address", "interface eth0\n address 10.0.0.0/24\n",
			`interfaces:2: "10.0.0.0/24": is the network address of its prefix: use a host address such as 10.0.0.1`},
		{"broadcast address", "interface eth0\n address 10.0.0.255/24\n",
			`interfaces:2: "10.0.0.255/24": is the broadcast address of its prefix: use a host address`},
		{"multicast", "interface eth0\n address 224.0.0.1/24\n",
			`interfaces:2: "224.0.0.1/24": multicast address: use a unicast address`},
		{"loopback address", "interface eth0\n address 127.0.0.2/8\n",
			`interfaces:2: "127.0.0.2/8": loopback address: lo is configured by the system, use another address`},
		{"zone", "interface eth0\n address fe80::1%eth0/64\n",
			`interfaces:2: "fe80::1%eth0/64": zone not allowed: write the address without %eth0/64`},
		{"link-local IPv6 gateway accepted", "interface eth0\n address fd00::2/64\n gateway fe80::1\n mtu 1280\n", ""},
		{"second IPv4 gateway", "interface eth0\n address 10.0.0.2/24\n gateway 10.0.0.1\ninterface eth1\n address 10.0.1.2/24\n gateway 10.0.1.1\n",
			`interfaces:4: "eth1": second IPv4 default gateway (interface eth0 has one): keep one gateway`},
		{"control character", "interface eth0\n dhcp\x00\n",
			`interfaces:2: control character '\x00': remove it`},
		{"long line", "interface eth0\n#" + strings.Repeat("x", MaxLineLength) + "\n",
			`interfaces:2: line is 257 bytes, more than the maximum of 256: shorten it`},
		{"long file", strings.Repeat("#\n", MaxFileSize/2+1),
			`interfaces: file is larger than the maximum of 65536 bytes: remove unused stanzas and comments`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("interfaces", []byte(tt.data))
			if tt.want == "" {
				if err != nil {
					t.Errorf("Parse rejected it: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", cfg)
			}
			if _, ok := err.(*ParseError); !ok {
				t.Errorf("error is %T, want *ParseError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	var b strings.Builder
	for i := range MaxInterfaces + 1 {
		b.WriteString("interface e" + strconv.Itoa(i) + "\n")
	}
	_, err := Parse("interfaces", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "more than 64 interfaces") {
		t.Errorf("%d interfaces: error %v, want the interface limit", MaxInterfaces+1, err)
	}

	b.Reset()
	b.WriteString("interface eth0\n")
	for i := range MaxAddresses + 1 {
		b.WriteString("address 10.0." + strconv.Itoa(i) + ".2/24\n")
	}
	_, err = Parse("interfaces", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "more than 32 addresses") {
		t.Errorf("%d addresses: error %v, want the address limit", MaxAddresses+1, err)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	cfg, err := Parse("interfaces", []byte(exampleFile))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("formatted", cfg.Format())
	if err != nil {
		t.Fatalf("Parse(Format()): %v\n%s", err, cfg.Format())
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("round trip changed the config:\n%+v\n%+v", cfg, again)
	}
}
