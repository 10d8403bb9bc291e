package ifconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// dhcpClient runs the DHCPv4 client of one interface on a goroutine of its
// own. It hands each lease, and the end of each lease, to its Manager.
type dhcpClient struct {
	m      *Manager
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	errors repeatLog // used by the client's goroutine only
}

// requestedOptions are asked for on top of nclient4's list (subnet mask,
// router, domain name, name servers).
var requestedOptions = dhcpv4.WithRequestedOptions(dhcpv4.OptionInterfaceMTU)

// startDHCP starts a client for interface name. The caller holds m.mu.
func (m *Manager) startDHCP(name string) *dhcpClient {
	ctx, cancel := context.WithCancel(m.ctx)
	c := &dhcpClient{m: m, name: name, cancel: cancel, done: make(chan struct{})}
	m.log.Info("dhcp client started", "interface", name)
	go c.run(ctx)
	return c
}

// stop ends the client, which releases its lease first, and waits for it.
// The caller must not hold m.mu.
func (c *dhcpClient) stop() {
	c.cancel()
	<-c.done
}

// run gets leases until ctx ends, waiting with exponential backoff after
// each attempt that got none.
func (c *dhcpClient) run(ctx context.Context) {
	defer close(c.done)
	opts := &c.m.opts

	wait := opts.DHCPRetryMin
	for ctx.Err() == nil {
		err := c.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			wait = opts.DHCPRetryMin
			continue
		}

		c.report(err, wait)
		sleepUntil(ctx, time.Now().Add(wait))
		wait = min(2*wait, opts.DHCPRetryMax)
	}
	c.m.log.Info("dhcp client stopped", "interface", c.name)
}

// report logs a failed attempt to get a lease, limiting repeats, and shows
// it in the interface's status.
func (c *dhcpClient) report(err error, retry time.Duration) {
	if c.errors.note(err) && err != nil {
		c.m.log.Warn("dhcp failed", "interface", c.name, "error", err, "retry", retry, "repeats", c.errors.count)
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if st := c.m.ifaces[c.name]; st != nil && st.dhcp == c {
		st.status.DHCPError = ""
		if err != nil {
			st.status.DHCPError = err.Error()
		}
	}
}

// session gets one lease and keeps it until it ends. It returns nil when a
// lease ended (expired, rejected by the server, or released because ctx
// ended) and an error when it got no lease.
func (c *dhcpClient) session(ctx context.Context) error {
	client, err := c.open()
	if err != nil {
		return err
	}
	defer client.Close()

	raw, err := client.Request(ctx, requestedOptions)
	if err != nil {
		return fmt.Errorf("no lease: %w", err)
	}
	lease, err := leaseFromACK(raw.ACK, time.Now())
	if err != nil {
		// A DHCPDECLINE would report the address as in use, which is not
		// the problem here. The next attempt starts afresh.
		return fmt.Errorf("unusable lease: %w", err)
	}

	c.report(nil, 0)
	c.m.log.Info("dhcp lease obtained", "interface", c.name, "address", lease.Address,
		"server", lease.Server, "router", lease.Router, "dns", lease.DNS, "expiry", lease.Expiry.Format(time.RFC3339))
	c.m.setLease(c, lease)
	return c.keep(ctx, client, raw, lease)
}

// open makes an nclient4 client whose raw socket lives in the Manager's
// namespace.
func (c *dhcpClient) open() (*nclient4.Client, error) {
	var client *nclient4.Client
	err := inNamespace(c.m.opts.Namespace, func() error {
		var err error
		client, err = nclient4.New(c.name,
			nclient4.WithTimeout(c.m.opts.DHCPTimeout),
			nclient4.WithRetry(c.m.opts.DHCPAttempts))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open dhcp socket: %w", err)
	}
	return client, nil
}

// keep renews the lease from T1 with its server, rebinds from T2 with any
// server, and drops it at expiry (RFC 2131, section 4.4.5). When ctx ends
// it releases the lease.
func (c *dhcpClient) keep(ctx context.Context, client *nclient4.Client, raw *nclient4.Lease, lease *Lease) error {
	for {
		now := time.Now()
		var deadline time.Time
		rebinding := false
		switch {
		case now.Before(lease.Renew):
			sleepUntil(ctx, lease.Renew)
			if ctx.Err() != nil {
				return c.release(client, raw, lease)
			}
			continue
		case now.Before(lease.Rebind):
			deadline = lease.Rebind
		case now.Before(lease.Expiry):
			deadline, rebinding = lease.Expiry, true
		default:
			c.m.log.Warn("dhcp lease expired", "interface", c.name, "address", lease.Address)
			c.m.setLease(c, nil)
			return nil
		}

		attempt, cancel := context.WithDeadline(ctx, deadline)
		next, err := c.extend(attempt, client, raw, rebinding)
		cancel()
		if ctx.Err() != nil {
			return c.release(client, raw, lease)
		}
		var nak *nclient4.ErrNak
		if errors.As(err, &nak) {
			c.m.log.Warn("dhcp server rejected the lease (NAK)", "interface", c.name, "address", lease.Address)
			c.m.setLease(c, nil)
			return nil
		}
		var extended *Lease
		if err == nil {
			extended, err = leaseFromACK(next.ACK, time.Now())
		}
		if err != nil {
			// RFC 2131 waits half the time left before the next try,
			// and at least 60 s. The minimum here is DHCPRetryMin, so
			// that short leases get more than one try.
			wait := max(time.Until(deadline)/2, c.m.opts.DHCPRetryMin)
			c.m.log.Warn("dhcp renewal failed", "interface", c.name, "address", lease.Address,
				"rebinding", rebinding, "error", err, "retry", wait)
			sleepUntil(ctx, time.Now().Add(wait))
			continue
		}

		raw, lease = next, extended
		c.m.log.Info("dhcp lease renewed", "interface", c.name, "address", lease.Address,
			"server", lease.Server, "rebinding", rebinding, "expiry", lease.Expiry.Format(time.RFC3339))
		c.m.setLease(c, lease)
	}
}

// extend sends a REQUEST for the lease's address. While renewing, only
// the server that granted the lease may respond. While rebinding, any may.
func (c *dhcpClient) extend(ctx context.Context, client *nclient4.Client, raw *nclient4.Lease, rebinding bool) (*nclient4.Lease, error) {
	// NOTE: nclient4 sends every message as an Ethernet broadcast from
	// 0.0.0.0, renewals too, which RFC 2131 sends unicast from the leased
	// address. Only the tests' server4 server has been run against it.
	if !rebinding {
		return client.Renew(ctx, raw, requestedOptions)
	}

	req, err := dhcpv4.NewRenewFromAck(raw.ACK, requestedOptions,
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))
	if err != nil {
		return nil, fmt.Errorf("build rebinding request: %w", err)
	}
	ack, err := client.SendAndRead(ctx, client.RemoteAddr(), req,
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err != nil {
		return nil, err
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return nil, &nclient4.ErrNak{Offer: raw.Offer, Nak: ack}
	}
	return &nclient4.Lease{Offer: raw.Offer, ACK: ack, CreationTime: time.Now()}, nil
}

// release sends the server a DHCPRELEASE for the lease, and then drops
// the lease. The Manager removes the address once the client has stopped.
func (c *dhcpClient) release(client *nclient4.Client, raw *nclient4.Lease, lease *Lease) error {
	if err := c.sendRelease(client, raw, lease); err != nil {
		c.m.log.Warn("dhcp release not sent", "interface", c.name, "address", lease.Address, "error", err)
	} else {
		c.m.log.Info("dhcp lease released", "interface", c.name, "address", lease.Address)
	}
	c.m.setLease(c, nil)
	return nil
}

// sendRelease sends the DHCPRELEASE from the leased address to the server
// (RFC 2131, section 4.4.6). nclient4's Release sends it from 0.0.0.0
// through its packet socket, and a server's kernel drops a unicast packet
// from 0.0.0.0 as a martian, so it is the fallback only.
func (c *dhcpClient) sendRelease(client *nclient4.Client, raw *nclient4.Lease, lease *Lease) error {
	msg, err := dhcpv4.NewReleaseFromACK(raw.ACK)
	if err != nil {
		return fmt.Errorf("build release: %w", err)
	}
	if !lease.Server.IsValid() {
		return client.Release(raw)
	}

	var conn *net.UDPConn
	err = inNamespace(c.m.opts.Namespace, func() error {
		var err error
		conn, err = net.DialUDP("udp4",
			&net.UDPAddr{IP: lease.Address.Addr().AsSlice(), Port: nclient4.ClientPort},
			&net.UDPAddr{IP: lease.Server.AsSlice(), Port: nclient4.ServerPort})
		return err
	})
	if err != nil {
		if rerr := client.Release(raw); rerr != nil {
			return errors.Join(err, rerr)
		}
		return nil
	}
	defer conn.Close()
	_, err = conn.Write(msg.ToBytes())
	return err
}

// setLease applies a client's new lease, or the end of its lease when
// lease is nil. It ignores clients that the Manager has already detached.
func (m *Manager) setLease(c *dhcpClient, lease *Lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.ifaces[c.name]
	if st == nil || st.dhcp != c {
		return
	}
	st.lease = lease
	// reconcile records and logs its own errors.
	_ = m.reconcile(c.name)
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}
