package tpm

import (
	"testing"
)

func TestCounterIncrementsAndSurvivesReboot(t *testing.T) {
	d := newDevice(t)
	tpm := d.open()
	c, err := tpm.OpenCounter(DefaultCounterIndex)
	if err != nil {
		t.Fatalf("OpenCounter: %v", err)
	}
	first, err := c.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	next, err := c.Increment()
	if err != nil {
		t.Fatalf("Increment: %v", err)
	}
	if next != first+1 {
		t.Errorf("Increment returned %d after %d, expected %d", next, first, first+1)
	}

	tpm = d.reboot(tpm)
	c, err = tpm.OpenCounter(DefaultCounterIndex)
	if err != nil {
		t.Fatalf("OpenCounter after reboot: %v", err)
	}
	after, err := c.Read()
	if err != nil {
		t.Fatalf("Read after reboot: %v", err)
	}
	if after < next {
		t.Errorf("counter went back from %d to %d across a reboot", next, after)
	}
}

func TestCounterSurvivesPowerCut(t *testing.T) {
	d := newDevice(t)
	tpm := d.open()
	c, err := tpm.OpenCounter(DefaultCounterIndex)
	if err != nil {
		t.Fatalf("OpenCounter: %v", err)
	}
	value, err := c.Increment()
	if err != nil {
		t.Fatalf("Increment: %v", err)
	}

	tpm = d.powerCut(tpm)
	c, err = tpm.OpenCounter(DefaultCounterIndex)
	if err != nil {
		t.Fatalf("OpenCounter after power cut: %v", err)
	}
	after, err := c.Read()
	if err != nil {
		t.Fatalf("Read after power cut: %v", err)
	}
	if after < value {
		t.Errorf("counter went back from %d to %d across a power cut", value, after)
	}
}

func TestOpenCounterRejectsOutOfRange(t *testing.T) {
	d := newDevice(t)
	tpm := d.open()
	for _, index := range []uint32{0, 0x00FFFFFF, 0x01C00000, 0x81000001} {
		if _, err := tpm.OpenCounter(index); err == nil {
			t.Errorf("OpenCounter(%#x) succeeded, expected an out-of-range error", index)
		}
	}
}

func TestCounterLeavesNoHandles(t *testing.T) {
	d := newDevice(t)
	tpm := d.open()
	c, err := tpm.OpenCounter(DefaultCounterIndex)
	if err != nil {
		t.Fatalf("OpenCounter: %v", err)
	}
	if _, err := c.Increment(); err != nil {
		t.Fatalf("Increment: %v", err)
	}
	if handles := openHandles(t, tpm); len(handles) != 0 {
		t.Errorf("handles left open: %v", handles)
	}
}
