package bus

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

var clockStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// feed records one message at each of the given intervals after the
// previous one, or after a first message at clockStart when the clock has
// none, and returns the time of the last.
func feed(a *arrivalClock, intervals ...time.Duration) time.Time {
	at := a.last
	if at.IsZero() {
		at = clockStart
		a.record(at, false)
	}
	for _, d := range intervals {
		at = at.Add(d)
		a.record(at, false)
	}
	return at
}

// repeat returns n copies of d.
func repeat(d time.Duration, n int) []time.Duration {
	return slices.Repeat([]time.Duration{d}, n)
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
		"irregular":   irregular,
		"every 100µs": repeat(100*time.Microsecond, arrivalHistory),
		"every 20ms":  repeat(20*time.Millisecond, arrivalHistory),
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

// startTimedSleep runs server.sleepUntil until an hour from now in a new
// goroutine, with the wake-up armed as Recv arms it, and returns the
// channel of its result. The sleep ends only through the path under test.
func startTimedSleep(t *testing.T, ctx context.Context, server *Conn) <-chan sleepResult {
	server.consumerMu.Lock()
	server.consumer.ArmWakeup()
	server.consumerMu.Unlock()
	done := make(chan sleepResult, 1)
	go func() {
		woken, err := server.sleepUntil(ctx, time.Now().Add(time.Hour))
		done <- sleepResult{woken, err}
	}()
	return done
}

type sleepResult struct {
	woken bool
	err   error
}

// sleepEnded returns the result of a timed sleep, failing the test if it
// has not ended within 10 s.
func sleepEnded(t *testing.T, done <-chan sleepResult, cause string) sleepResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("timed sleep of an hour still running 10 s after %s", cause)
		return sleepResult{}
	}
}

func TestTimedSleepEndsOnMessage(t *testing.T) {
	useEventfds(t)
	client, server := connPair(t, Dialer{}, ListenConfig{})
	done := startTimedSleep(t, testContext(t), server)
	mustSend(t, client, 7, []byte("early"))

	r := sleepEnded(t, done, "a message")
	if r.err != nil || !r.woken {
		t.Errorf("sleepUntil = %v, %v; expected woken, nil", r.woken, r.err)
	}
	if consumerArmed(server) {
		t.Error("wake-up still armed after the timed sleep")
	}
	if msg := mustRecv(t, server); msg.Kind != 7 || string(msg.Data) != "early" {
		t.Errorf("Recv = kind %d %q, expected kind 7 \"early\"", msg.Kind, msg.Data)
	}
}

func TestTimedSleepEndsOnClose(t *testing.T) {
	useEventfds(t)
	_, server := connPair(t, Dialer{}, ListenConfig{})
	done := startTimedSleep(t, context.Background(), server)
	time.Sleep(5 * time.Millisecond) // into the sleep
	server.fail(ErrPeerGone)

	if r := sleepEnded(t, done, "the connection stopped"); r.err != nil || r.woken {
		t.Errorf("sleepUntil = %v, %v; expected not woken, nil", r.woken, r.err)
	}
}

func TestTimedSleepEndsWithContext(t *testing.T) {
	useEventfds(t)
	_, server := connPair(t, Dialer{}, ListenConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := startTimedSleep(t, ctx, server)
	time.Sleep(5 * time.Millisecond) // into the sleep
	cancel()

	if r := sleepEnded(t, done, "cancel"); !errors.Is(r.err, context.Canceled) {
		t.Errorf("sleepUntil error = %v, expected context.Canceled", r.err)
	}
}

// deadlineOnly is a context with a deadline whose timer never fires, as a
// context's timer may fire late.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

func TestTimedSleepStopsAtContextDeadline(t *testing.T) {
	useEventfds(t)
	_, server := connPair(t, Dialer{}, ListenConfig{})
	ctx := deadlineOnly{context.Background(), time.Now().Add(5 * time.Millisecond)}
	done := startTimedSleep(t, ctx, server)

	if r := sleepEnded(t, done, "the context's deadline"); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("sleepUntil error = %v, expected context.DeadlineExceeded", r.err)
	}
	if consumerArmed(server) {
		t.Error("wake-up still armed after a timed sleep that no message ended")
	}
}

// recvInBackground runs server.Recv in a new goroutine and returns the
// channel of the message it returns.
func recvInBackground(t *testing.T, server *Conn) <-chan Message {
	got := make(chan Message, 1)
	go func() {
		msg, err := server.Recv(testContext(t))
		if err != nil {
			t.Errorf("Recv: %v", err)
		}
		got <- msg
	}()
	return got
}

func TestRecvSleepsAgainAfterStraySignal(t *testing.T) {
	client, server := steadyServer(t, 8*time.Millisecond)
	// A signal that no message follows, such as one left from an earlier
	// wake-up.
	if err := signalEventfd(client.dataFd); err != nil {
		t.Fatal(err)
	}
	got := recvInBackground(t, server)
	waitUntil(t, func() bool { return server.timedSleeps.Load() >= 2 }, "Recv to sleep with a timer again")
	mustSend(t, client, 7, []byte("due"))

	if msg := <-got; msg.Kind != 7 || string(msg.Data) != "due" {
		t.Errorf("Recv = kind %d %q, expected kind 7 \"due\"", msg.Kind, msg.Data)
	}
}

func TestRecvWithoutFreeSlotSleepsOnEventfd(t *testing.T) {
	client, server := steadyServer(t, 8*time.Millisecond)
	for range maxTimedSleepers {
		if !acquireTimedSleep() {
			t.Fatal("a timed-sleep slot was taken before the test")
		}
	}
	defer func() {
		for range maxTimedSleepers {
			releaseTimedSleep()
		}
	}()
	got := recvInBackground(t, server)
	waitUntil(t, func() bool { return consumerArmed(server) }, "Recv to arm its wake-up")
	time.Sleep(20 * time.Millisecond) // past the window
	mustSend(t, client, 7, []byte("late"))

	if msg := <-got; msg.Kind != 7 || string(msg.Data) != "late" {
		t.Errorf("Recv = kind %d %q, expected kind 7 \"late\"", msg.Kind, msg.Data)
	}
	if n := server.timedSleeps.Load(); n != 0 {
		t.Errorf("%d timed sleeps with every slot taken, expected 0", n)
	}
}
