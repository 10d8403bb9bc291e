//go:build linux

package main

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// setupLoopback brings lo up. The kernel assigns 127.0.0.1/8 and ::1 when
// the link goes up.
func setupLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}
