package ifconfig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Defaults for the zero fields of Options.
const (
	DefaultPollInterval = 2 * time.Second
	DefaultDHCPRetryMin = 1 * time.Second
	DefaultDHCPRetryMax = 60 * time.Second
	DefaultDHCPTimeout  = 2 * time.Second
	DefaultDHCPAttempts = 3
)

// DefaultStateFile is the state file netd passes in Options.StateFile.
const DefaultStateFile = "/run/bt/ifconfig-state.json"

// Options configure a Manager.
type Options struct {
	// Path is the configuration file that Watch reads.
	Path string

	// Handle is the netlink handle the Manager configures links through.
	// Its namespace is the one configured. Required.
	Handle *netlink.Handle

	// Namespace is the network namespace of Handle, where the DHCP client
	// opens its sockets. nil means the namespace of the calling process.
	Namespace *netns.NsHandle

	// StateFile lists the addresses and default routes this Manager added,
	// so that a restarted Manager removes only those. Put it on a tmpfs
	// such as /run, which the kernel's addresses do not outlive either.
	// Empty keeps the list in memory only: a restarted Manager then leaves
	// the addresses of its predecessor alone. netd passes
	// DefaultStateFile.
	StateFile string

	// PollInterval is how often Watch reads the configuration file. 0 means
	// DefaultPollInterval.
	PollInterval time.Duration

	// DHCPRetryMin and DHCPRetryMax bound the wait between attempts to get
	// a lease when no server responds. The wait doubles from min to max. 0
	// means DefaultDHCPRetryMin and DefaultDHCPRetryMax.
	DHCPRetryMin, DHCPRetryMax time.Duration

	// DHCPTimeout is the wait for a server's response to the first
	// transmission of a DHCP message. It doubles for each of the
	// DHCPAttempts transmissions. 0 means DefaultDHCPTimeout and
	// DefaultDHCPAttempts.
	DHCPTimeout  time.Duration
	DHCPAttempts int

	// Logger receives the Manager's log lines. nil means slog.Default().
	Logger *slog.Logger
}

// Manager applies Configs to the kernel's links. Its methods may be called
// from several goroutines.
type Manager struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context // ends at Close; DHCP clients run under it
	cancel context.CancelFunc

	// applyMu serializes Apply and Close, so that a DHCP client being
	// stopped is gone before another starts on its interface.
	applyMu sync.Mutex

	mu     sync.Mutex
	closed bool
	cfg    *Config // the last good configuration
	owned  map[owned]struct{}
	ifaces map[string]*ifaceState
	saved  repeatLog // state file write errors

	watch watchState // used by Watch only
}

// ifaceState is the Manager's state of one interface that is configured
// or that still carries something the Manager added.
type ifaceState struct {
	name   string
	dhcp   *dhcpClient // running client, nil without dhcp
	lease  *Lease      // the client's current lease
	status InterfaceStatus
	errors repeatLog
}

// New returns a Manager with nothing applied yet. It reads the state file,
// so that addresses a previous Manager added are known to be its own.
func New(opts Options) (*Manager, error) {
	if opts.Handle == nil {
		return nil, errors.New("ifconfig: Options.Handle is nil: pass netlink.NewHandle() or netlink.NewHandleAt(ns)")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.DHCPRetryMin <= 0 {
		opts.DHCPRetryMin = DefaultDHCPRetryMin
	}
	if opts.DHCPRetryMax <= 0 {
		opts.DHCPRetryMax = DefaultDHCPRetryMax
	}
	opts.DHCPRetryMax = max(opts.DHCPRetryMax, opts.DHCPRetryMin)
	if opts.DHCPTimeout <= 0 {
		opts.DHCPTimeout = DefaultDHCPTimeout
	}
	if opts.DHCPAttempts <= 0 {
		opts.DHCPAttempts = DefaultDHCPAttempts
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}

	set, err := loadRecord(opts.StateFile)
	if err != nil {
		return nil, fmt.Errorf("ifconfig: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		opts:   opts,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		cfg:    &Config{},
		owned:  set,
		ifaces: make(map[string]*ifaceState),
	}, nil
}

// Apply makes the kernel match cfg: interfaces in cfg get its settings,
// and interfaces that earlier configurations named lose what this Manager
// added to them. It starts and stops DHCP clients as needed. The returned
// error joins the errors of each interface, which also stay in Status
// until a later Apply succeeds for that interface. A cfg that Parse would
// reject for an interface name (lo, say) changes nothing.
func (m *Manager) Apply(cfg *Config) error {
	for _, in := range cfg.Interfaces {
		if err := checkInterfaceName(in.Name); err != nil || in.Name == "" {
			return fmt.Errorf("ifconfig: interface %q: invalid name, nothing applied", in.Name)
		}
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("ifconfig: Apply after Close")
	}
	m.cfg = cfg
	stopping := m.detachDHCP(func(name string) bool {
		in := cfg.Interface(name)
		return in == nil || !in.DHCP
	})
	m.mu.Unlock()

	// A client's last step takes the Manager's lock, so it is stopped
	// without holding it.
	for _, c := range stopping {
		c.stop()
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("ifconfig: Apply after Close")
	}
	var errs []error
	for _, name := range m.names() {
		if err := m.reconcile(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops the DHCP clients, which release their leases and remove
// their addresses and routes. Static addresses, routes, MTUs and link
// states stay as they are, so that restarting netd does not cut the
// device off.
func (m *Manager) Close() error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.cancel()
	stopping := m.detachDHCP(func(string) bool { return true })
	m.mu.Unlock()

	for _, c := range stopping {
		c.stop()
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, c := range stopping {
		if err := m.reconcile(c.name); err != nil {
			errs = append(errs, err)
		}
	}
	m.log.Info("interface manager stopped", "path", m.opts.Path)
	return errors.Join(errs...)
}

// detachDHCP removes the DHCP clients of the matching interfaces from
// their interfaces, and drops their leases. The caller holds m.mu and stops the
// clients after releasing it.
func (m *Manager) detachDHCP(match func(name string) bool) []*dhcpClient {
	var stopping []*dhcpClient
	for name, st := range m.ifaces {
		if st.dhcp != nil && match(name) {
			stopping = append(stopping, st.dhcp)
			st.dhcp = nil
			st.lease = nil
		}
	}
	return stopping
}

// names returns the interfaces to reconcile: those configured and those
// that still carry something this Manager added, sorted.
func (m *Manager) names() []string {
	var names []string
	for _, in := range m.cfg.Interfaces {
		names = append(names, in.Name)
	}
	for o := range m.owned {
		names = append(names, o.Interface)
	}
	for name, st := range m.ifaces {
		if st.dhcp != nil || st.status.LastError != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func (m *Manager) state(name string) *ifaceState {
	st := m.ifaces[name]
	if st == nil {
		st = &ifaceState{name: name}
		st.status.Name = name
		m.ifaces[name] = st
	}
	return st
}

// Status is a snapshot of what a Manager has applied.
type Status struct {
	Path string
	// ConfigError is the error of the configuration file in place when it
	// is invalid and so not applied; empty otherwise.
	ConfigError string
	Interfaces  []InterfaceStatus
}

// InterfaceStatus is the state a Manager applied to one interface.
type InterfaceStatus struct {
	Name       string
	Configured bool // named in the configuration applied
	Down       bool
	MTU        int // the MTU set, 0 when left as it was
	// Addresses and Gateways are those this Manager applied at its last
	// change, static and from DHCP alike.
	Addresses []netip.Prefix
	Gateways  []netip.Addr
	DHCP      bool
	Lease     *Lease // nil without a lease
	// DHCPError is the DHCP client's last failure to get a lease, empty
	// once it has one.
	DHCPError string
	// LastError is the interface's current problem, empty when its
	// configuration is fully applied. ErrorCount counts its repeats.
	LastError  string
	ErrorTime  time.Time
	ErrorCount int
}

// Status returns a snapshot of every interface the Manager configures or
// configured, sorted by name.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()

	s := Status{Path: m.opts.Path, ConfigError: m.watch.configError}
	names := make([]string, 0, len(m.ifaces))
	for name := range m.ifaces {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		st := m.ifaces[name]
		is := st.status
		is.Addresses = slices.Clone(is.Addresses)
		is.Gateways = slices.Clone(is.Gateways)
		is.Lease = st.lease.clone()
		is.ErrorCount = st.errors.count
		s.Interfaces = append(s.Interfaces, is)
	}
	return s
}

// repeatLog decides which occurrences of a repeated error are logged: the
// first, and then the 10th, 100th, 1000th and so on, so that an error
// met at every poll does not flood the console.
type repeatLog struct {
	last  string
	count int
}

// note records err and reports whether to log it. A nil err resets the
// count and reports whether an error had been logged before, so that the
// caller can log the recovery.
func (r *repeatLog) note(err error) bool {
	if err == nil {
		had := r.last != ""
		r.last, r.count = "", 0
		return had
	}
	msg := err.Error()
	if msg != r.last {
		r.last, r.count = msg, 1
		return true
	}
	r.count++
	for n := 10; n <= r.count; n *= 10 {
		if n == r.count {
			return true
		}
	}
	return false
}
