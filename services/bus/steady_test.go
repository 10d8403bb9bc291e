package bus

import (
	"context"
	"errors"
	"testing"
	"time"
)

var clockStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// feed records one message at each of the given intervals after the
// previous one, starting at clockStart, and returns the time of the last.
func feed(a *arrivalClock, intervals ...time.Duration) time.Time {
	at := clockStart
	if !a.last.IsZero() {
		at = a.last
	}
	if a.last.IsZero() {
		a.record(at, false)
	}
	for _, d := range intervals {
		at = at.Add(d)
		a.record(at, false)
	}
	return at
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestArrivalClockSteadyRate(t *testing.T) {
	a := newArrivalClock()
	feed(&a, repeat(time.Millisecond, arrivalHistory-1)...)
	if _, _, ok := a.window(); ok {
		t.Fatalf("window offered after %d intervals, expected none before %d", arrivalHistory-1, arrivalHistory)
	}

	last := feed(&a, time.Millisecond)
	from, until, ok := a.window()
	if !ok {
		t.Fatalf("no window after %d intervals of 1ms", arrivalHistory)
	}
	due := last.Add(time.Millisecond)
	if want := due.Add(-initialWake - pollMargin); !from.Equal(want) {
		t.Errorf("window starts %v before the due time, expected %v", due.Sub(from), due.Sub(want))
	}
	if want := due.Add(pollMargin); !until.Equal(want) {
		t.Errorf("window ends %v after the due time, expected %v", until.Sub(due), want.Sub(due))
	}
}

func TestArrivalClockJitterWidensWindow(t *testing.T) {
	a := newArrivalClock()
	var intervals []time.Duration
	for i := range arrivalHistory {
		intervals = append(intervals, time.Millisecond+time.Duration(i%5-2)*10*time.Microsecond)
	}
	last := feed(&a, intervals...)
	from, until, ok := a.window()
	if !ok {
		t.Fatal("no window for intervals of 1ms ± 20µs")
	}
	if earliest := last.Add(980 * time.Microsecond); from.After(earliest.Add(-initialWake)) {
		t.Errorf("window starts at last+%v, after the shortest interval less the wake-up", from.Sub(last))
	}
	if latest := last.Add(1020 * time.Microsecond); until.Before(latest) {
		t.Errorf("window ends at last+%v, before the longest interval", until.Sub(last))
	}
}

func TestArrivalClockIgnoresOutliers(t *testing.T) {
	a := newArrivalClock()
	intervals := repeat(time.Millisecond, arrivalHistory)
	// One message came 900µs late and the next right after it.
	intervals[5], intervals[6] = 1900*time.Microsecond, 100*time.Microsecond
	feed(&a, intervals...)
	if _, _, ok := a.window(); !ok {
		t.Error("one late message and its follower removed the window")
	}
}

func TestArrivalClockNoWindow(t *testing.T) {
	irregular := make([]time.Duration, arrivalHistory)
	for i := range irregular {
		irregular[i] = time.Duration(200+i*150) * time.Microsecond
	}
	cases := map[string][]time.Duration{
		"irregular":         irregular,
		"faster than 200µs": repeat(100*time.Microsecond, arrivalHistory),
		"slower than 10ms":  repeat(20*time.Millisecond, arrivalHistory),
	}
	for name, intervals := range cases {
		t.Run(name, func(t *testing.T) {
			a := newArrivalClock()
			feed(&a, intervals...)
			if from, until, ok := a.window(); ok {
				t.Errorf("window of %v offered", until.Sub(from))
			}
		})
	}
}

func TestArrivalClockWokenMessage(t *testing.T) {
	a := newArrivalClock()
	feed(&a, repeat(time.Millisecond, arrivalHistory)...)
	woken := a.last.Add(time.Millisecond + a.wake)
	a.record(woken, true)
	if got := a.last; !got.Equal(woken.Add(-initialWake)) {
		t.Errorf("message taken after a wake-up recorded at %v, expected %v", got.Sub(woken), -initialWake)
	}
}

func TestArrivalClockLearnsWakeTime(t *testing.T) {
	a := newArrivalClock()
	for range 32 {
		a.recordWake(clockStart, clockStart.Add(10*time.Microsecond))
	}
	if a.wake > 11*time.Microsecond {
		t.Errorf("wake-up estimate %v after 32 wake-ups 10µs late", a.wake)
	}
}

// steadyServer returns a pair on eventfds whose server end has learned a
// rate of one message every interval, the latest just now.
func steadyServer(t *testing.T, interval time.Duration) (client, server *Conn) {
	useEventfds(t)
	client, server = connPair(t, Dialer{}, ListenConfig{})
	server.recvClock = newArrivalClock()
	server.recvClock.record(time.Now().Add(-time.Duration(arrivalHistory)*interval), false)
	feed(&server.recvClock, repeat(interval, arrivalHistory)...)
	if _, _, ok := server.recvClock.window(); !ok {
		t.Fatalf("no window for a steady rate of %v", interval)
	}
	return client, server
}

func TestTimedSleepEndsOnEarlyMessage(t *testing.T) {
	client, server := steadyServer(t, 8*time.Millisecond)
	got := make(chan Message, 1)
	go func() {
		msg, err := server.Recv(testContext(t))
		if err != nil {
			t.Errorf("Recv: %v", err)
		}
		got <- msg
	}()
	waitUntil(t, func() bool { return server.timedSleeps.Load() == 1 }, "Recv to start a timed sleep")
	mustSend(t, client, 7, []byte("early"))

	msg := <-got
	if msg.Kind != 7 || string(msg.Data) != "early" {
		t.Errorf("Recv = kind %d %q, expected kind 7 \"early\"", msg.Kind, msg.Data)
	}
	if n := client.SignalsSent(); n != 1 {
		t.Errorf("sender signalled %d times, expected 1: the timed sleep must keep the wake-up armed", n)
	}
	if consumerArmed(server) {
		t.Error("wake-up still armed after the timed sleep")
	}
}

func TestTimedSleepEndsOnClose(t *testing.T) {
	_, server := steadyServer(t, 8*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := server.Recv(context.Background())
		done <- err
	}()
	waitUntil(t, func() bool { return server.timedSleeps.Load() == 1 }, "Recv to start a timed sleep")
	if err := server.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Recv during Close: err = %v, expected ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still in its timed sleep 5 s after Close")
	}
}

func TestTimedSleepEndsWithContext(t *testing.T) {
	_, server := steadyServer(t, 8*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := server.Recv(ctx)
		done <- err
	}()
	waitUntil(t, func() bool { return server.timedSleeps.Load() == 1 }, "Recv to start a timed sleep")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Recv after cancel: err = %v, expected context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still in its timed sleep 5 s after its context ended")
	}
}
