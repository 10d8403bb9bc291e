package ifconfig

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits of the configuration file. A file beyond them is rejected whole.
const (
	MaxFileSize       = 64 << 10
	MaxLineLength     = 256
	MaxInterfaces     = 64
	MaxAddresses      = 32 // per interface
	MinMTU            = 68 // the IPv4 minimum (RFC 791)
	MinMTUWithIPv6    = 1280
	MaxMTU            = 65535
	maxInterfaceName  = 15 // IFNAMSIZ - 1
	loopbackInterface = "lo"
)

// Config is a parsed configuration file: the interfaces it names, in file
// order. Interfaces it does not name are left alone.
type Config struct {
	Interfaces []Interface
}

// Interface is one stanza of the configuration file.
type Interface struct {
	Name string

	// Down sets the link down. A down interface has no address, gateway or
	// DHCP.
	Down bool

	// DHCP runs a DHCPv4 client on the interface. It excludes static IPv4
	// addresses and an IPv4 gateway.
	DHCP bool

	// Addresses are static addresses with their prefix length.
	Addresses []netip.Prefix

	// Gateway4 and Gateway6 are the default routes' next hops. The zero
	// Addr means no default route of that family.
	Gateway4 netip.Addr
	Gateway6 netip.Addr

	// MTU is the link's MTU. 0 leaves it as it is, or takes it from the
	// DHCP lease.
	MTU int
}

// Interface returns the stanza for name, or nil.
func (c *Config) Interface(name string) *Interface {
	for i := range c.Interfaces {
		if c.Interfaces[i].Name == name {
			return &c.Interfaces[i]
		}
	}
	return nil
}

// ParseError is a problem at one line of a configuration file. Its message
// names the file, the line, the value and what to do.
type ParseError struct {
	File  string
	Line  int    // 1-based; 0 for problems of the whole file
	Value string // the offending word, empty when a line or file is at fault
	Msg   string
}

func (e *ParseError) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Value == "" {
		return where + ": " + e.Msg
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Value, e.Msg)
}

// parser holds the state of one Parse call.
type parser struct {
	file string
	line int
	cfg  Config
	cur  *Interface

	// seen records the keywords of the current stanza, for duplicates.
	seen map[string]int
	// addressLines maps each address (without prefix) to its line, across
	// all interfaces, because one address on two links is a mistake.
	addressLines map[netip.Addr]int
	// gatewayLines maps the line of each stanza's gateways, for errors found
	// at the end of the stanza.
	gatewayLines map[netip.Addr]int
}

// Parse parses a configuration file. name is used in error messages only.
// The returned error is a *ParseError.
//
// The file is line-oriented. '#' starts a comment that runs to the end of
// the line. Each non-empty line is a keyword and its arguments separated by
// spaces or tabs; indentation is optional. "interface NAME" starts a
// stanza, and the keywords dhcp, address, gateway, mtu and down that follow
// apply to it.
func Parse(name string, data []byte) (*Config, error) {
	p := &parser{
		file:         name,
		addressLines: make(map[netip.Addr]int),
		gatewayLines: make(map[netip.Addr]int),
	}
	if len(data) > MaxFileSize {
		return nil, p.fileErr(fmt.Sprintf("file is larger than the maximum of %d bytes: remove unused stanzas and comments", MaxFileSize))
	}

	for len(data) > 0 {
		p.line++
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		if len(line) > MaxLineLength {
			return nil, p.lineErr("", fmt.Sprintf("line is %d bytes, more than the maximum of %d: shorten it", len(line), MaxLineLength))
		}
		if err := p.parseLine(string(line)); err != nil {
			return nil, err
		}
	}
	if err := p.finishStanza(); err != nil {
		return nil, err
	}
	return &p.cfg, nil
}

func (p *parser) fileErr(msg string) error {
	return &ParseError{File: p.file, Msg: msg}
}

func (p *parser) lineErr(value, msg string) error {
	return &ParseError{File: p.file, Line: p.line, Value: value, Msg: msg}
}

// errAt reports a problem found later than the line it belongs to.
func (p *parser) errAt(line int, value, msg string) error {
	return &ParseError{File: p.file, Line: line, Value: value, Msg: msg}
}

func (p *parser) parseLine(line string) error {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimSuffix(line, "\r")
	for _, r := range line {
		if r != '\t' && (r < ' ' || r == 0x7f) {
			return p.lineErr("", fmt.Sprintf("control character %q: remove it", r))
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return nil
	}

	keyword, args := fields[0], fields[1:]
	if keyword == "interface" {
		if err := p.finishStanza(); err != nil {
			return err
		}
		return p.startStanza(args)
	}
	if p.cur == nil {
		return p.lineErr(keyword, "keyword before the first interface line: start the stanza with \"interface NAME\"")
	}

	switch keyword {
	case "dhcp", "down":
		if len(args) != 0 {
			return p.lineErr(keyword, fmt.Sprintf("takes no argument, found %q: write %s alone on its line", strings.Join(args, " "), keyword))
		}
		if err := p.once(keyword); err != nil {
			return err
		}
		if keyword == "dhcp" {
			p.cur.DHCP = true
		} else {
			p.cur.Down = true
		}
		return nil
	case "address":
		if err := p.oneArg(keyword, args, "address 192.168.1.2/24"); err != nil {
			return err
		}
		return p.parseAddress(args[0])
	case "gateway":
		if err := p.oneArg(keyword, args, "gateway 192.168.1.1"); err != nil {
			return err
		}
		return p.parseGateway(args[0])
	case "mtu":
		if err := p.oneArg(keyword, args, "mtu 1500"); err != nil {
			return err
		}
		if err := p.once(keyword); err != nil {
			return err
		}
		return p.parseMTU(args[0])
	}
	return p.lineErr(keyword, "unknown keyword: use interface, dhcp, address, gateway, mtu or down")
}

func (p *parser) oneArg(keyword string, args []string, example string) error {
	switch {
	case len(args) == 0:
		return p.lineErr(keyword, "missing value: write it as \""+example+"\"")
	case len(args) > 1:
		return p.lineErr(keyword, fmt.Sprintf("takes one value, found %d: write one %s per line", len(args), keyword))
	}
	return nil
}

// once rejects a keyword given twice in one stanza.
func (p *parser) once(keyword string) error {
	if first, ok := p.seen[keyword]; ok {
		return p.lineErr(keyword, fmt.Sprintf("given twice for interface %s (first at line %d): keep one", p.cur.Name, first))
	}
	p.seen[keyword] = p.line
	return nil
}

func (p *parser) startStanza(args []string) error {
	if len(args) != 1 {
		return p.lineErr("interface", "takes one interface name: write it as \"interface eth0\"")
	}
	name := args[0]
	if err := checkInterfaceName(name); err != nil {
		return p.lineErr(strconv.Quote(name), err.Error())
	}
	if p.cfg.Interface(name) != nil {
		return p.lineErr(strconv.Quote(name), "interface named twice: merge the two stanzas")
	}
	if len(p.cfg.Interfaces) == MaxInterfaces {
		return p.lineErr(strconv.Quote(name), fmt.Sprintf("more than %d interfaces: remove unused stanzas", MaxInterfaces))
	}

	p.cfg.Interfaces = append(p.cfg.Interfaces, Interface{Name: name})
	p.cur = &p.cfg.Interfaces[len(p.cfg.Interfaces)-1]
	p.seen = map[string]int{"interface": p.line}
	clear(p.gatewayLines)
	return nil
}

// checkInterfaceName applies the kernel's rules for link names
// (dev_valid_name in net/core/dev.c) and keeps lo out.
func checkInterfaceName(name string) error {
	switch {
	case name == loopbackInterface:
		return errors.New("the loopback interface is never configured here: remove this stanza")
	case len(name) > maxInterfaceName:
		return fmt.Errorf("interface name is longer than %d bytes: use the name that \"ip link\" shows", maxInterfaceName)
	case name == "." || name == "..":
		return errors.New("invalid interface name: use the name that \"ip link\" shows")
	case strings.ContainsAny(name, "/:"):
		return errors.New("interface name contains '/' or ':': use the name that \"ip link\" shows")
	}
	return nil
}

func (p *parser) parseAddress(value string) error {
	quoted := strconv.Quote(value)
	if len(p.cur.Addresses) == MaxAddresses {
		return p.lineErr(quoted, fmt.Sprintf("more than %d addresses on interface %s: remove some", MaxAddresses, p.cur.Name))
	}

	prefix, err := netip.ParsePrefix(value)
	if err != nil {
		if addr, aerr := netip.ParseAddr(value); aerr == nil {
			if addr.Zone() != "" {
				return p.lineErr(quoted, "zone not allowed: write the address without %"+addr.Zone())
			}
			bits := 24
			if addr.Is6() {
				bits = 64
			}
			return p.lineErr(quoted, fmt.Sprintf("missing prefix length: write it as %s/%d", value, bits))
		}
		return p.lineErr(quoted, "invalid address: write it as 192.168.1.2/24 or fd00::2/64")
	}
	addr := prefix.Addr()
	if err := checkUnicast(addr); err != nil {
		return p.lineErr(quoted, err.Error())
	}
	if addr.Is4() && prefix.Bits() < 31 {
		if addr == prefix.Masked().Addr() {
			return p.lineErr(quoted, "is the network address of its prefix: use a host address such as "+prefix.Masked().Addr().Next().String())
		}
		if addr == lastAddr(prefix) {
			return p.lineErr(quoted, "is the broadcast address of its prefix: use a host address")
		}
	}
	if first, ok := p.addressLines[addr]; ok {
		return p.lineErr(quoted, fmt.Sprintf("address given twice (first at line %d): keep one", first))
	}

	p.addressLines[addr] = p.line
	p.cur.Addresses = append(p.cur.Addresses, prefix)
	return nil
}

func (p *parser) parseGateway(value string) error {
	quoted := strconv.Quote(value)
	addr, err := netip.ParseAddr(value)
	if err != nil {
		if _, perr := netip.ParsePrefix(value); perr == nil {
			return p.lineErr(quoted, "a gateway is an address without prefix length: remove the /N")
		}
		return p.lineErr(quoted, "invalid gateway: write it as 192.168.1.1 or fd00::1")
	}
	if err := checkUnicast(addr); err != nil {
		return p.lineErr(quoted, err.Error())
	}

	keyword := "gateway (IPv4)"
	if addr.Is6() {
		keyword = "gateway (IPv6)"
	}
	if err := p.once(keyword); err != nil {
		return err
	}
	p.gatewayLines[addr] = p.line
	if addr.Is4() {
		p.cur.Gateway4 = addr
	} else {
		p.cur.Gateway6 = addr
	}
	return nil
}

func (p *parser) parseMTU(value string) error {
	mtu, err := strconv.Atoi(value)
	if err != nil || mtu < MinMTU || mtu > MaxMTU {
		return p.lineErr(strconv.Quote(value), fmt.Sprintf("MTU out of range: use a number from %d to %d", MinMTU, MaxMTU))
	}
	p.cur.MTU = mtu
	return nil
}

// finishStanza checks what involves more than one line of the current
// stanza.
func (p *parser) finishStanza() error {
	in := p.cur
	if in == nil {
		return nil
	}
	p.cur = nil
	start := p.seen["interface"]
	name := strconv.Quote(in.Name)

	hasIPv4, hasIPv6 := false, false
	for _, prefix := range in.Addresses {
		if prefix.Addr().Is4() {
			hasIPv4 = true
		} else {
			hasIPv6 = true
		}
	}

	if in.Down && (in.DHCP || len(in.Addresses) > 0 || in.Gateway4.IsValid() || in.Gateway6.IsValid()) {
		return p.errAt(p.seen["down"], name, "down together with dhcp, address or gateway: remove down, or remove the others")
	}
	if in.DHCP && hasIPv4 {
		return p.errAt(p.seen["dhcp"], name, "dhcp together with a static IPv4 address: remove dhcp or the IPv4 addresses")
	}
	if in.DHCP && in.Gateway4.IsValid() {
		return p.errAt(p.seen["dhcp"], name, "dhcp together with an IPv4 gateway: remove the gateway, DHCP supplies the router")
	}
	for _, gw := range []netip.Addr{in.Gateway4, in.Gateway6} {
		// An IPv6 router is often named by its link-local address, which
		// is on every IPv6 link.
		if gw.IsValid() && !(gw.Is6() && gw.IsLinkLocalUnicast()) && !coveredBy(gw, in.Addresses) {
			return p.errAt(p.gatewayLines[gw], strconv.Quote(gw.String()), fmt.Sprintf("gateway is outside every address prefix of interface %s: add an address in its subnet, or fix the gateway", in.Name))
		}
	}
	if in.MTU != 0 && in.MTU < MinMTUWithIPv6 && hasIPv6 {
		return p.errAt(p.seen["mtu"], strconv.Quote(strconv.Itoa(in.MTU)), fmt.Sprintf("IPv6 needs an MTU of at least %d: raise the MTU or remove the IPv6 addresses", MinMTUWithIPv6))
	}
	if in.Gateway4.IsValid() {
		for _, other := range p.cfg.Interfaces {
			if other.Name != in.Name && other.Gateway4.IsValid() {
				return p.errAt(start, name, fmt.Sprintf("second IPv4 default gateway (interface %s has one): keep one gateway", other.Name))
			}
		}
	}
	if in.Gateway6.IsValid() {
		for _, other := range p.cfg.Interfaces {
			if other.Name != in.Name && other.Gateway6.IsValid() {
				return p.errAt(start, name, fmt.Sprintf("second IPv6 default gateway (interface %s has one): keep one gateway", other.Name))
			}
		}
	}
	return nil
}

// checkUnicast rejects addresses that cannot be an interface's own.
func checkUnicast(addr netip.Addr) error {
	switch {
	case addr.Zone() != "":
		return fmt.Errorf("zone not allowed: remove the %%%s", addr.Zone())
	case addr.Is4In6():
		return fmt.Errorf("IPv4-mapped IPv6 address: write the IPv4 address %s", addr.Unmap())
	case addr.IsUnspecified():
		return errors.New("unspecified address: use the interface's own address")
	case addr.IsLoopback():
		return errors.New("loopback address: lo is configured by the system, use another address")
	case addr.IsMulticast():
		return errors.New("multicast address: use a unicast address")
	case addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return errors.New("broadcast address: use a unicast address")
	}
	return nil
}

func coveredBy(addr netip.Addr, prefixes []netip.Prefix) bool {
	for _, prefix := range prefixes {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// lastAddr returns the highest address of an IPv4 prefix.
func lastAddr(prefix netip.Prefix) netip.Addr {
	a := prefix.Masked().Addr().As4()
	host := uint32(1)<<(32-prefix.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Format returns c in the file format, one keyword a line, indented under
// its interface line. Parse(name, c.Format()) returns a Config equal to c.
func (c *Config) Format() []byte {
	var b strings.Builder
	for _, in := range c.Interfaces {
		fmt.Fprintf(&b, "interface %s\n", in.Name)
		if in.Down {
			b.WriteString("    down\n")
		}
		if in.DHCP {
			b.WriteString("    dhcp\n")
		}
		for _, p := range in.Addresses {
			fmt.Fprintf(&b, "    address %s\n", p)
		}
		for _, gw := range []netip.Addr{in.Gateway4, in.Gateway6} {
			if gw.IsValid() {
				fmt.Fprintf(&b, "    gateway %s\n", gw)
			}
		}
		if in.MTU != 0 {
			fmt.Fprintf(&b, "    mtu %d\n", in.MTU)
		}
	}
	return []byte(b.String())
}
