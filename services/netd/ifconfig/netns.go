package ifconfig

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNamespace runs fn on an OS thread switched into the network namespace
// ns, or directly when ns is nil. A socket keeps the namespace it was
// created in, so fn only needs to create sockets there: later reads and
// writes work from any thread.
//
// fn runs on a goroutine of its own. If switching the thread back fails,
// that goroutine ends with its thread still locked, and the Go runtime
// then discards the thread instead of running other goroutines in the
// wrong namespace.
func inNamespace(ns *netns.NsHandle, fn func() error) error {
	if ns == nil {
		return fn()
	}

	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			result <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(*ns); err != nil {
			runtime.UnlockOSThread()
			result <- fmt.Errorf("enter network namespace %s: %w", ns, err)
			return
		}

		fnErr := fn()

		if err := netns.Set(orig); err != nil {
			result <- fmt.Errorf("return to network namespace %s: %w", orig, err)
			return
		}
		runtime.UnlockOSThread()
		result <- fnErr
	}()
	return <-result
}
