package journal

import (
	"bytes"
	"fmt"
)

// group is the records of a segment between two seals, and the seal after
// them. The writer never lets a group span segments, so a reader resolves a
// segment group by group and holds one group at a time.
type group struct {
	start int64  // offset of the first step
	first uint64 // seq expected at the first record
	end   uint64 // seq expected after the last record
	steps []step // records and stretches, in file order
	seal  *step  // the seal that ends the group, nil if none does

	records int   // records in steps since the last stretch
	bytes   int64 // bytes of steps since the last stretch
	stretch bool  // steps hold a stretch without a readable header

	// overflow means the group grew past what one seal covers, so the
	// records in it have no seal.
	overflow bool

	// sealErr is the reason that no valid seal covers the group, set by
	// resolve. The records of the group wrap it in ErrUnsealed.
	sealErr error
}

// groupScanner reads a segment one group at a time.
type groupScanner struct {
	sc *scanner
	// skipAfterStretch reads only the headers of the records after a
	// stretch, for Replay, which stops at the stretch but needs the seal
	// after it to verify the records before it.
	skipAfterStretch bool
	carry            *step // the first record of the next group
}

func newGroupScanner(sc *scanner, skipAfterStretch bool) *groupScanner {
	return &groupScanner{sc: sc, skipAfterStretch: skipAfterStretch}
}

// next returns the next group, or false at the end of the segment. Records
// with seqs below from are read with skipBody, the others with check. An
// error is a failed read, never damage.
func (gs *groupScanner) next(from uint64, check bodyCheck) (group, bool, error) {
	g := group{start: gs.sc.off, first: gs.sc.expected}
	if gs.carry != nil {
		g.start, g.first = gs.carry.offset, gs.carry.expected
		g.add(*gs.carry)
		gs.carry = nil
	}
	for {
		mode := check
		if gs.sc.expected < from || (gs.skipAfterStretch && g.stretch) {
			mode = skipBody
		}
		st, ok, err := gs.sc.next(mode)
		if err != nil {
			return group{}, false, err
		}
		if !ok {
			if len(g.steps) == 0 {
				return group{}, false, nil
			}
			g.end = gs.sc.expected
			return g, true, nil
		}
		if st.isSeal() {
			// The scanner does not count seals, so the seq it expected at
			// the seal is the one after the group's last record.
			g.end = st.expected
			g.seal = &st
			return g, true, nil
		}
		if st.header != nil && g.records > 0 && (g.records == maxSealRecords || g.bytes+st.header.length > maxSealBytes) {
			// The writer seals a group before it grows this large.
			g.end = st.expected
			g.overflow = true
			gs.carry = &st
			return g, true, nil
		}
		g.add(st)
	}
}

func (g *group) add(st step) {
	g.steps = append(g.steps, st)
	if st.header == nil {
		// How many records the stretch held is unknown, so the bounds of
		// one group apply to the records after it.
		g.stretch = true
		g.records, g.bytes = 0, 0
		return
	}
	g.records++
	g.bytes += st.end - st.offset
}

// checkSeal returns why the group's seal covers none of its records, or
// nil. It verifies the signature only if verify is set.
func (g *group) checkSeal(c *codec, verify bool) error {
	if g.overflow {
		return fmt.Errorf("the records from offset %d exceed %d records or %d bytes without a seal", g.start, maxSealRecords, maxSealBytes)
	}
	if g.seal == nil {
		return fmt.Errorf("no seal follows the records from offset %d", g.start)
	}
	s := g.seal
	if s.err != nil {
		return fmt.Errorf("seal at offset %d: %w", s.offset, s.err)
	}
	h := s.header
	last := h.seq + uint64(h.count) - 1
	// After a stretch, the records before it may belong to an earlier seal
	// whose header was lost, so only the end of the range must match. The
	// seal then covers only the records whose seqs it lists.
	if h.seq+uint64(h.count) != g.end || (!g.stretch && h.seq != g.first) {
		return fmt.Errorf("seal at offset %d covers seqs %d to %d, but its group contains seqs %d to %d: %w",
			s.offset, h.seq, last, g.first, g.end-1, ErrSequence)
	}
	if verify {
		if err := c.verifySeal(*h, *s.seal); err != nil {
			return fmt.Errorf("seal at offset %d of seqs %d to %d: %w", s.offset, h.seq, last, err)
		}
	}
	return nil
}

// resolve checks the group's seal, including its signature, and each record
// whose body was read against it. A record with damage of its own, such as a
// bad CRC, keeps that as its reason. Otherwise a missing or invalid seal, a
// hash that differs from the one the seal lists, and a failed AEAD make it
// damaged, in that order. Only records that pass all of these keep a payload.
func (g *group) resolve(c *codec) {
	g.sealErr = g.checkSeal(c, true)
	for i := range g.steps {
		st := &g.steps[i]
		if st.header == nil || st.err != nil || !st.hashed {
			continue
		}
		st.err = g.checkRecord(st)
		if st.err != nil {
			st.payload = nil
		}
	}
}

func (g *group) checkRecord(st *step) error {
	if g.sealErr != nil {
		return fmt.Errorf("%w: %w", ErrUnsealed, g.sealErr)
	}
	h := g.seal.header
	want, ok := g.seal.seal.hash(*h, st.header.seq)
	if !ok {
		return fmt.Errorf("seq %d is not among seqs %d to %d of the seal at offset %d: %w",
			st.header.seq, h.seq, h.seq+uint64(h.count)-1, g.seal.offset, ErrUnsealed)
	}
	if !bytes.Equal(want, st.hash[:]) {
		return fmt.Errorf("record differs from the one the seal at offset %d lists: %w", g.seal.offset, ErrSealMismatch)
	}
	return st.openErr
}

// authenticateGroup verifies a group that Open found at checksum level: its
// seal and the hash and AEAD of its newest record whose checksums match.
// A crash never leaves a seal or a record with good checksums that fails
// these checks, so a failure means a wrong Key or Verifier, or tampering.
func authenticateGroup(r *segmentReader, c *codec, found group) error {
	sc := newScanner(r, c, found.first, true)
	sc.off = found.start
	g, ok, err := newGroupScanner(sc, false).next(0, checkAuth)
	if err != nil {
		return err
	}
	if !ok || g.seal == nil || g.seal.offset != found.seal.offset {
		return fmt.Errorf("group at offset %d changed between two reads: %w", found.start, ErrCorrupt)
	}
	g.resolve(c)
	if g.sealErr != nil {
		return g.sealErr
	}
	for i := len(g.steps) - 1; i >= 0; i-- {
		st := g.steps[i]
		if !st.hashed {
			continue
		}
		if st.err != nil {
			return fmt.Errorf("record seq %d at offset %d: %w", st.header.seq, st.offset, st.err)
		}
		break
	}
	return nil
}
