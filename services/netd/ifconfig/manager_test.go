package ifconfig

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const staticConfig = `interface bt0
    address 10.98.0.2/24
    address fd00:98::2/64
    gateway 10.98.0.1
    gateway fd00:98::1
    mtu 1400
`

func TestStaticApplied(t *testing.T) {
	n := newTestNet(t)
	path := configPath(t)
	writeConfig(t, path, staticConfig)
	m := n.newManager(t, path, "")

	m.Poll()

	for _, want := range []string{"10.98.0.2/24", "fd00:98::2/64"} {
		if !hasAddress(t, n.h, deviceLink, want) {
			t.Errorf("address %s missing; kernel has %v", want, addresses(t, n.h, deviceLink))
		}
	}
	attrs := linkAttrs(t, n.h, deviceLink)
	if attrs.MTU != 1400 {
		t.Errorf("mtu = %d, want 1400", attrs.MTU)
	}
	if attrs.Flags&net.FlagUp == 0 {
		t.Errorf("link is down, want up")
	}
	gws := defaultGateways(t, n.h, deviceLink)
	for _, want := range []string{"10.98.0.1", "fd00:98::1"} {
		if !slices.Contains(gws, netip.MustParseAddr(want)) {
			t.Errorf("default route via %s missing; kernel has default routes via %v", want, gws)
		}
	}

	st := m.Status()
	if len(st.Interfaces) != 1 || st.Interfaces[0].Name != deviceLink {
		t.Fatalf("Status().Interfaces = %+v, want bt0 only", st.Interfaces)
	}
	if is := st.Interfaces[0]; is.LastError != "" || len(is.Addresses) != 2 || len(is.Gateways) != 2 || is.MTU != 1400 {
		t.Errorf("status of bt0 = %+v, want 2 addresses, 2 gateways, mtu 1400, no error", is)
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	n := newTestNet(t)
	m := n.newManager(t, configPath(t), "")
	cfg, err := Parse("interfaces", []byte(staticConfig))
	if err != nil {
		t.Fatal(err)
	}

	for i := range 3 {
		if err := m.Apply(cfg); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	if got := addresses(t, n.h, deviceLink); len(got) != 2 {
		t.Errorf("addresses = %v, want the 2 configured", got)
	}
	if got := defaultGateways(t, n.h, deviceLink); len(got) != 2 {
		t.Errorf("default routes via %v, want 2", got)
	}
}

func TestChangedConfigReplacesAddress(t *testing.T) {
	n, m, path := startManager(t, "interface bt0\n address 10.98.0.2/24\n gateway 10.98.0.1\n")
	if !hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Fatalf("first address missing; kernel has %v", addresses(t, n.h, deviceLink))
	}

	writeConfig(t, path, "interface bt0\n address 10.97.0.3/24\n gateway 10.97.0.1\n")
	m.Poll()

	if hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Errorf("old address 10.98.0.2/24 still there")
	}
	if !hasAddress(t, n.h, deviceLink, "10.97.0.3/24") {
		t.Errorf("new address 10.97.0.3/24 missing; kernel has %v", addresses(t, n.h, deviceLink))
	}
	gws := defaultGateways(t, n.h, deviceLink)
	if !slices.Equal(gws, []netip.Addr{netip.MustParseAddr("10.97.0.1")}) {
		t.Errorf("default routes via %v, want 10.97.0.1 only", gws)
	}
}

func TestForeignAddressKept(t *testing.T) {
	n := newTestNet(t)
	addForeignAddress(t, n.h, deviceLink, "10.98.0.50/24")
	path := configPath(t)
	// The file lists the foreign address too, which must not make it the
	// Manager's.
	writeConfig(t, path, "interface bt0\n address 10.98.0.2/24\n address 10.98.0.50/24\n")
	m := n.newManager(t, path, "")
	m.Poll()

	writeConfig(t, path, "# bt0 no longer configured\n")
	m.Poll()

	if hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Errorf("the Manager's address 10.98.0.2/24 still there after the stanza went")
	}
	if !hasAddress(t, n.h, deviceLink, "10.98.0.50/24") {
		t.Errorf("foreign address 10.98.0.50/24 removed; kernel has %v", addresses(t, n.h, deviceLink))
	}
}

func TestInvalidConfigKeepsState(t *testing.T) {
	n, m, path := startManager(t, staticConfig)
	before := addresses(t, n.h, deviceLink)

	writeConfig(t, path, "interface bt0\n    address 10.97.0.3\n")
	m.Poll()

	after := addresses(t, n.h, deviceLink)
	if !slices.Equal(before, after) {
		t.Errorf("addresses changed from %v to %v by an invalid file", before, after)
	}
	if mtu := linkAttrs(t, n.h, deviceLink).MTU; mtu != 1400 {
		t.Errorf("mtu = %d, want 1400 kept", mtu)
	}
	want := path + `:2: "10.97.0.3": missing prefix length: write it as 10.97.0.3/24`
	if got := m.Status().ConfigError; got != want {
		t.Errorf("Status().ConfigError = %q, want %q", got, want)
	}

	// Fixing the file clears the error and applies it.
	writeConfig(t, path, "interface bt0\n    address 10.97.0.3/24\n")
	m.Poll()
	if got := m.Status().ConfigError; got != "" {
		t.Errorf("Status().ConfigError = %q after the fix, want empty", got)
	}
	if !hasAddress(t, n.h, deviceLink, "10.97.0.3/24") {
		t.Errorf("fixed file not applied; kernel has %v", addresses(t, n.h, deviceLink))
	}
}

func TestMissingFileRemovesOwnAddresses(t *testing.T) {
	n := newTestNet(t)
	path := configPath(t)
	m := n.newManager(t, path, "")
	m.Poll()
	if st := m.Status(); len(st.Interfaces) != 0 || st.ConfigError != "" {
		t.Errorf("Status() with no file = %+v, want nothing configured", st)
	}

	writeConfig(t, path, "interface bt0\n address 10.98.0.2/24\n")
	m.Poll()
	if !hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Fatalf("address missing; kernel has %v", addresses(t, n.h, deviceLink))
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	m.Poll()
	if hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Errorf("address still there after the file was removed")
	}
}

func TestDownSetsLinkDown(t *testing.T) {
	n, m, path := startManager(t, "interface bt0\n address 10.98.0.2/24\n")
	if linkAttrs(t, n.h, deviceLink).Flags&net.FlagUp == 0 {
		t.Fatalf("link down after the first file, want up")
	}

	writeConfig(t, path, "interface bt0\n down\n")
	m.Poll()
	if linkAttrs(t, n.h, deviceLink).Flags&net.FlagUp != 0 {
		t.Errorf("link up, want down")
	}
	if hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Errorf("address kept on a link configured down")
	}
}

func TestMissingInterfaceRetried(t *testing.T) {
	n, m, _ := startManager(t, "interface bt7\n address 10.96.0.2/24\n")

	st := m.Status()
	if len(st.Interfaces) != 1 || !strings.Contains(st.Interfaces[0].LastError, "bt7: not found") {
		t.Fatalf("Status().Interfaces = %+v, want bt7 with a not found error", st.Interfaces)
	}

	// The link appears later, as a USB adapter would; the next poll
	// applies the unchanged file to it.
	addVethPair(t, n.h, "bt7", "bt7p")
	m.Poll()
	if !hasAddress(t, n.h, "bt7", "10.96.0.2/24") {
		t.Errorf("address missing on bt7 after it appeared; kernel has %v", addresses(t, n.h, "bt7"))
	}
	if got := m.Status().Interfaces[0].LastError; got != "" {
		t.Errorf("LastError = %q after the link appeared, want empty", got)
	}
}

func TestRestartRemovesOnlyRecorded(t *testing.T) {
	n := newTestNet(t)
	path := configPath(t)
	stateFile := filepath.Join(t.TempDir(), "run", "state.json")
	writeConfig(t, path, "interface bt0\n address 10.98.0.2/24\n gateway 10.98.0.1\n")

	first := n.newManager(t, path, stateFile)
	first.Poll()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if !hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Fatalf("Close removed the static address")
	}
	addForeignAddress(t, n.h, deviceLink, "10.98.0.60/24")

	// A new Manager, as after a netd restart, with bt0 gone from the file.
	writeConfig(t, path, "")
	second := n.newManager(t, path, stateFile)
	second.Poll()

	if hasAddress(t, n.h, deviceLink, "10.98.0.2/24") {
		t.Errorf("address recorded by the first Manager still there")
	}
	if got := defaultGateways(t, n.h, deviceLink); len(got) != 0 {
		t.Errorf("default routes via %v still there, want none", got)
	}
	if !hasAddress(t, n.h, deviceLink, "10.98.0.60/24") {
		t.Errorf("foreign address removed; kernel has %v", addresses(t, n.h, deviceLink))
	}
	data, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if entries, err := decodeRecord(data); err != nil || len(entries) != 0 {
		t.Errorf("state file = %s (%v), want no entries", data, err)
	}
}

func TestWatchAppliesChanges(t *testing.T) {
	n := newTestNet(t)
	path := configPath(t)
	m := n.newManager(t, path, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx) }()

	writeConfig(t, path, "interface bt0\n address 10.98.0.2/24\n")
	waitFor(t, "Watch applies the new file", func() bool {
		return hasAddress(t, n.h, deviceLink, "10.98.0.2/24")
	})
	writeConfig(t, path, "interface bt0\n address 10.98.0.3/24\n")
	waitFor(t, "Watch applies the changed file", func() bool {
		return hasAddress(t, n.h, deviceLink, "10.98.0.3/24") && !hasAddress(t, n.h, deviceLink, "10.98.0.2/24")
	})

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v, want context.Canceled", err)
	}
}

func TestApplyRejectsLoopback(t *testing.T) {
	n := newTestNet(t)
	m := n.newManager(t, configPath(t), "")
	before := addresses(t, n.h, "lo")

	err := m.Apply(&Config{Interfaces: []Interface{{Name: "lo", Addresses: []netip.Prefix{netip.MustParsePrefix("10.95.0.1/24")}}}})
	if err == nil {
		t.Fatal("Apply accepted a Config naming lo")
	}
	if after := addresses(t, n.h, "lo"); !slices.Equal(before, after) {
		t.Errorf("addresses of lo changed from %v to %v", before, after)
	}
}

func TestRepeatLogThinsRepeats(t *testing.T) {
	var r repeatLog
	failure := errors.New("link not found")
	var logged []int
	for i := 1; i <= 1000; i++ {
		if r.note(failure) {
			logged = append(logged, i)
		}
	}
	if want := []int{1, 10, 100, 1000}; !slices.Equal(logged, want) {
		t.Errorf("logged repeats %v, want %v", logged, want)
	}
	if r.note(errors.New("another error")) != true || r.count != 1 {
		t.Errorf("a new error was not logged or did not restart the count (count %d)", r.count)
	}
	if r.note(nil) != true {
		t.Errorf("recovery after an error not reported")
	}
	if r.note(nil) != false {
		t.Errorf("second success reported as a recovery")
	}
}
