package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Owner-hierarchy NV indexes run from 0x01000000 to 0x01FFFFFF. The range
// 0x01C00000 and up is reserved for TCG-defined indexes such as EK
// certificates, so Blocktree's indexes lie below it.
const (
	nvIndexFirst = 0x01000000
	nvIndexLast  = 0x01BFFFFF

	// DefaultCounterIndex is the NV index of the node's rollback counter.
	DefaultCounterIndex = 0x01B7C000
)

// Counter is a monotonic 64-bit counter in the TPM's non-volatile memory
// (an NV index of type TPM_NT_COUNTER). The TPM only ever increases it, and
// it survives reboots and a restored disk image, so a value written into
// signed data on disk distinguishes an old disk from the current one.
//
// The index has an empty authorization value and noDA: anyone who can send
// TPM commands may increment it, which can only make the node believe its
// disk is older than it is (a denial of service, not a rollback).
type Counter struct {
	t     *TPM
	index tpm2.TPMHandle
	name  tpm2.TPM2BName
}

// counterAttributes are the attributes an index must have to be trusted as a
// rollback counter. NoDA keeps its use out of dictionary-attack accounting.
func counterAttributes() tpm2.TPMANV {
	return tpm2.TPMANV{
		AuthWrite: true,
		AuthRead:  true,
		NT:        tpm2.TPMNTCounter,
		NoDA:      true,
	}
}

// OpenCounter returns the counter at NV index, defining it under the owner
// hierarchy if it does not exist. An existing index with other attributes
// or size is rejected rather than reused, because someone else defined it.
func (t *TPM) OpenCounter(index uint32) (*Counter, error) {
	if index < nvIndexFirst || index > nvIndexLast {
		return nil, fmt.Errorf("open counter %#x: index outside the owner range %#x..%#x", index, nvIndexFirst, nvIndexLast)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("open counter %#x: %w", index, ErrClosed)
	}

	handle := tpm2.TPMHandle(index)
	public, err := t.readNVPublic(handle)
	if errors.Is(err, tpm2.TPMRCHandle) {
		if public, err = t.defineCounter(handle); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("open counter %#x: %w", index, err)
	}

	contents, err := public.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("open counter %#x: %w", index, err)
	}
	attrs := contents.Attributes
	want := counterAttributes()
	if attrs.NT != want.NT || attrs.AuthWrite != want.AuthWrite || attrs.AuthRead != want.AuthRead || !attrs.NoDA || contents.DataSize != 8 {
		return nil, fmt.Errorf("open counter %#x: the index exists with other attributes: choose another index or undefine it", index)
	}
	c := &Counter{t: t, index: handle, name: public.NVName}

	// A counter reads only after its first increment (TPMA_NV_WRITTEN).
	if !attrs.Written {
		if err := c.incrementLocked(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (t *TPM) readNVPublic(handle tpm2.TPMHandle) (*tpm2.NVReadPublicResponse, error) {
	return tpm2.NVReadPublic{NVIndex: handle}.Execute(t.transport)
}

func (t *TPM) defineCounter(handle tpm2.TPMHandle) (*tpm2.NVReadPublicResponse, error) {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    handle,
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: counterAttributes(),
			DataSize:   8,
		}),
	}.Execute(t.transport)
	if err != nil {
		return nil, fmt.Errorf("define counter %#x: %w", uint32(handle), err)
	}
	t.logger.Info("TPM counter defined", "index", fmt.Sprintf("%#x", uint32(handle)))
	public, err := t.readNVPublic(handle)
	if err != nil {
		return nil, fmt.Errorf("define counter %#x: read back: %w", uint32(handle), err)
	}
	return public, nil
}

// authHandle returns the index as its own authorization, with the empty
// password. The name changes once the index is written, so it is read anew.
func (c *Counter) authHandle() (tpm2.AuthHandle, error) {
	public, err := c.t.readNVPublic(c.index)
	if err != nil {
		return tpm2.AuthHandle{}, err
	}
	c.name = public.NVName
	return tpm2.AuthHandle{Handle: c.index, Name: c.name, Auth: tpm2.PasswordAuth(nil)}, nil
}

// Read returns the counter's value.
func (c *Counter) Read() (uint64, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if c.t.closed {
		return 0, fmt.Errorf("read counter %#x: %w", uint32(c.index), ErrClosed)
	}
	auth, err := c.authHandle()
	if err != nil {
		return 0, fmt.Errorf("read counter %#x: %w", uint32(c.index), err)
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: auth,
		NVIndex:    tpm2.NamedHandle{Handle: c.index, Name: c.name},
		Size:       8,
	}.Execute(c.t.transport)
	if err != nil {
		return 0, fmt.Errorf("read counter %#x: %w", uint32(c.index), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("read counter %#x: TPM returned %d bytes, expected 8", uint32(c.index), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// Increment adds one to the counter and returns the new value.
func (c *Counter) Increment() (uint64, error) {
	c.t.mu.Lock()
	err := c.incrementLocked()
	c.t.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Read()
}

func (c *Counter) incrementLocked() error {
	if c.t.closed {
		return fmt.Errorf("increment counter %#x: %w", uint32(c.index), ErrClosed)
	}
	auth, err := c.authHandle()
	if err != nil {
		return fmt.Errorf("increment counter %#x: %w", uint32(c.index), err)
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: auth,
		NVIndex:    tpm2.NamedHandle{Handle: c.index, Name: c.name},
	}.Execute(c.t.transport)
	if err != nil {
		return fmt.Errorf("increment counter %#x: %w", uint32(c.index), err)
	}
	return nil
}
