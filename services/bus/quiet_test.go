package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus/ring"
)

func TestLocalLinkSameOnBothEnds(t *testing.T) {
	client, server := connPair(t, Dialer{}, ListenConfig{})
	if client.LocalLink() == nil || client.LocalLink() != server.LocalLink() {
		t.Errorf("LocalLink = %v and %v, expected one value on both ends", client.LocalLink(), server.LocalLink())
	}
	other, _ := connPair(t, Dialer{}, ListenConfig{})
	if other.LocalLink() == client.LocalLink() {
		t.Error("two connections share a LocalLink")
	}

	useEventfds(t)
	client, server = connPair(t, Dialer{}, ListenConfig{})
	if client.LocalLink() != nil || server.LocalLink() != nil {
		t.Error("LocalLink is set on a connection that uses eventfds")
	}
}

func TestSendQuietLeavesReceiverAsleep(t *testing.T) {
	ctx := testContext(t)
	client, server := connPair(t, Dialer{}, ListenConfig{})

	woken := make(chan error, 1)
	go func() { woken <- server.WaitMessage(ctx) }()
	time.Sleep(20 * time.Millisecond) // let WaitMessage go to sleep

	if err := client.SendQuiet(ctx, 7, []byte("quiet")); err != nil {
		t.Fatalf("SendQuiet: %v", err)
	}
	if !server.Waiting() {
		t.Fatal("Waiting = false after SendQuiet")
	}
	select {
	case err := <-woken:
		t.Fatalf("WaitMessage returned %v after SendQuiet, expected it to sleep on", err)
	case <-time.After(50 * time.Millisecond):
	}

	msg, err := server.TryRecv()
	if err != nil || msg.Kind != 7 || string(msg.Data) != "quiet" {
		t.Fatalf("TryRecv = kind %d %q, %v, expected kind 7 \"quiet\"", msg.Kind, msg.Data, err)
	}
	msg.Release()
	if _, err := server.TryRecv(); !errors.Is(err, ring.ErrEmpty) {
		t.Errorf("TryRecv on an empty ring = %v, expected ring.ErrEmpty", err)
	}
	if server.Waiting() {
		t.Error("Waiting = true on an empty ring")
	}

	// A later Send wakes the sleeper, which then finds its message.
	mustSend(t, client, 8, []byte("loud"))
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("WaitMessage: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitMessage still asleep 5 s after a Send")
	}
	if msg := mustRecv(t, server); msg.Kind != 8 {
		t.Errorf("received kind %d, expected 8", msg.Kind)
	}
}

func TestWaitMessageDoesNotTakeMessage(t *testing.T) {
	ctx := testContext(t)
	client, server := connPair(t, Dialer{}, ListenConfig{})
	mustSend(t, client, 1, []byte("a"))
	for range 2 {
		if err := server.WaitMessage(ctx); err != nil {
			t.Fatalf("WaitMessage with a message waiting: %v", err)
		}
	}
	if msg := mustRecv(t, server); msg.Kind != 1 {
		t.Errorf("received kind %d, expected 1", msg.Kind)
	}

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := server.WaitMessage(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitMessage on an empty ring = %v, expected the context's deadline", err)
	}
}

func TestWaitMessageAfterPeerGone(t *testing.T) {
	ctx := testContext(t)
	client, server := connPair(t, Dialer{}, ListenConfig{})
	mustSend(t, client, 1, []byte("last"))
	client.Close()

	if err := server.WaitMessage(ctx); err != nil {
		t.Fatalf("WaitMessage with the peer's last message waiting: %v", err)
	}
	mustRecv(t, server)
	stop := time.AfterFunc(5*time.Second, func() { server.Close() })
	defer stop.Stop()
	if err := server.WaitMessage(ctx); !errors.Is(err, ErrPeerGone) {
		t.Errorf("WaitMessage after the peer left = %v, expected ErrPeerGone", err)
	}
	if _, err := server.TryRecv(); !errors.Is(err, ErrPeerGone) {
		t.Errorf("TryRecv after the peer left = %v, expected ErrPeerGone", err)
	}
}

// A sender that waits for space must wake a receiver that slept through
// its quiet messages, or both would wait forever.
func TestFullRingWakesReceiverOfQuietMessages(t *testing.T) {
	const ringSize = 4096
	ctx := testContext(t)
	client, server := connPair(t, Dialer{RingSize: ringSize}, ListenConfig{})

	received := make(chan uint32, 4)
	go func() {
		for {
			if err := server.WaitMessage(ctx); err != nil {
				return
			}
			for {
				msg, err := server.TryRecv()
				if err != nil {
					break
				}
				received <- msg.Kind
				msg.Release()
			}
		}
	}()
	time.Sleep(20 * time.Millisecond) // let WaitMessage go to sleep

	payload := make([]byte, ringSize/2-ring.RecordHeaderSize)
	for kind := range uint32(3) {
		if err := client.SendQuiet(ctx, kind, payload); err != nil {
			t.Fatalf("SendQuiet %d: %v", kind, err)
		}
	}
	// The third send had to wait, so it woke the receiver for the first
	// two. Nothing wakes it for the third, which a Send brings along.
	expectKinds := func(kinds ...uint32) {
		t.Helper()
		for _, want := range kinds {
			select {
			case kind := <-received:
				if kind != want {
					t.Errorf("received kind %d, expected %d", kind, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("message %d not received within 5 s", want)
			}
		}
	}
	expectKinds(0, 1)
	mustSend(t, client, 3, nil)
	expectKinds(2, 3)
}
