package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
)

// pingKind is the bus message kind of bt ping's messages.
const pingKind uint32 = 0x70696e67 // "ping"

// pingSize is the payload size of one ping: a sequence number and filler.
const pingSize = 32

func runPing(env *environment, args []string) error {
	fs := newFlags(env, "bt ping", "bt ping ADDRESS|NODE --state DIR [--run DIR] [--count N] [--timeout DURATION] [--interval DURATION]")
	stateDir := fs.String("state", "", "state directory of the local node, whose netd and principal the ping uses (required)")
	runFlag := fs.String("run", "", "the local node's run directory, if bt node was started with --run (default: STATE/run)")
	count := fs.Int("count", 3, "number of round trips")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for opening the circuit and for each round trip")
	interval := fs.Duration("interval", 200*time.Millisecond, "pause between round trips")

	// The address may come before the options, as in ping(8).
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := parseFlagsWithArgs(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() == 1 {
		if target != "" {
			return usagef("bt ping: two addresses, %q and %q: give one", target, fs.Arg(0))
		}
		target = fs.Arg(0)
	}
	if target == "" || *stateDir == "" {
		return missingOptions(fs, "an ADDRESS (or a node principal) and --state are required")
	}
	if *count < 1 {
		return usagef("bt ping: --count %d: give at least 1", *count)
	}
	local, err := findLocalNode(*stateDir, *runFlag)
	if err != nil {
		return fmt.Errorf("bt ping: %w", err)
	}
	dest, err := local.address(target, endpoint.EchoName)
	if err != nil {
		return usagef("bt ping: %v", err)
	}
	// Of a full address only the root and the node count.
	dest = endpoint.Service(dest.Root, dest.Node, endpoint.EchoName)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	openCtx, cancel := context.WithTimeout(ctx, *timeout)
	conn, err := endpoint.Dial(openCtx, local.runDir, local.node, dest.String())
	cancel()
	if err != nil {
		return fmt.Errorf("bt ping: %s: %w", explainMsgError(err), err)
	}
	defer conn.Close()

	fmt.Fprintf(env.stdout, "PING %s\n", dest)
	sent, received := 0, 0
	answered := make(map[uint64]bool)
	var failure error
	for seq := 1; seq <= *count; seq++ {
		if seq > 1 {
			select {
			case <-time.After(*interval):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		rtt, err := pingOnce(ctx, env.stdout, conn, uint64(seq), answered, *timeout)
		if err != nil {
			fmt.Fprintf(env.stdout, "seq=%d %s: %v\n", seq, explainMsgError(err), err)
			failure = err
			if errors.Is(err, bus.ErrPeerGone) {
				break
			}
			continue
		}
		received++
		fmt.Fprintf(env.stdout, "reply from %s: seq=%d bytes=%d time=%s\n", dest.Node, seq, pingSize, rtt.Round(time.Microsecond))
	}
	fmt.Fprintf(env.stdout, "%d sent, %d received\n", sent, received)
	if failure != nil {
		return fmt.Errorf("bt ping: %s: %d of %d round trips failed, the last one %s", dest, sent-received, sent, explainMsgError(failure))
	}
	return nil
}

// pingOnce sends ping seq and waits for its echo. Echoes of earlier
// pings that timed out may arrive late, and are skipped and reported. A
// second echo of one ping, which at-most-once delivery rules out, fails
// the round trip.
func pingOnce(ctx context.Context, w io.Writer, conn *bus.Conn, seq uint64, answered map[uint64]bool, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	payload := make([]byte, pingSize)
	binary.BigEndian.PutUint64(payload, seq)
	start := time.Now()
	if err := conn.Send(ctx, pingKind, payload); err != nil {
		return 0, timedOut(ctx, err)
	}
	for {
		msg, err := conn.Recv(ctx)
		if err != nil {
			return 0, timedOut(ctx, err)
		}
		rtt := time.Since(start)
		got := append([]byte(nil), msg.Data...)
		kind := msg.Kind
		msg.Release()
		if kind != pingKind || len(got) != pingSize {
			return 0, fmt.Errorf("reply of kind %#x and %d bytes is not an echo of ping %d", kind, len(got), seq)
		}
		echoed := binary.BigEndian.Uint64(got)
		switch {
		case answered[echoed]:
			return 0, fmt.Errorf("duplicate reply to ping %d: the peer replied to it before", echoed)
		case echoed < seq:
			answered[echoed] = true
			fmt.Fprintf(w, "late reply: seq=%d\n", echoed)
			continue
		case !bytes.Equal(got, payload):
			return 0, fmt.Errorf("reply does not match ping %d", seq)
		}
		answered[seq] = true
		return rtt, nil
	}
}

func timedOut(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", endpoint.ErrTimedOut, err)
	}
	return err
}

// explainMsgError names the msg error that err wraps in the words bt ping
// prints.
func explainMsgError(err error) string {
	switch {
	case errors.Is(err, endpoint.ErrUnreachable):
		return "unreachable"
	case errors.Is(err, endpoint.ErrUnauthorized):
		return "refused (unauthorized)"
	case errors.Is(err, endpoint.ErrTimedOut):
		return "timed out"
	case errors.Is(err, endpoint.ErrNoEndpoint):
		return "no endpoint"
	case errors.Is(err, bus.ErrPeerGone):
		return "connection lost"
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	}
	return "failed"
}
