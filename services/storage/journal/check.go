package journal

import (
	"fmt"
	"os"
	"path/filepath"
)

// Problem is one damaged record, stretch of bytes or segment header that
// Check found.
type Problem struct {
	Segment string // file name of the segment, without the directory
	Offset  int64  // byte offset in the segment, 0 for the segment header
	Size    int64  // bytes the problem covers

	// HeaderValid means the record header's checksum passed, so Seq and
	// Tags come from it. Otherwise Seq is the seq expected at Offset (0 if
	// unknown) and Tags is nil.
	HeaderValid bool
	Seq         uint64
	Tags        []uint64

	// Seal means the problem is a seal that covers none of its group's
	// records. Seq is the first seq it names, and each record of its group
	// is a Problem of its own.
	Seal bool

	// TornTail means the problem lies after the last seal with good
	// checksums of the last segment: the next Open cuts it.
	TornTail bool

	Err error
}

func (p Problem) String() string {
	s := fmt.Sprintf("segment %s offset %d (%d bytes)", p.Segment, p.Offset, p.Size)
	switch {
	case p.Seal:
		s += fmt.Sprintf(" seal from seq %d", p.Seq)
	case p.Seq != 0:
		s += fmt.Sprintf(" seq %d", p.Seq)
	}
	if p.HeaderValid && !p.Seal {
		s += fmt.Sprintf(" tags %v", p.Tags)
	}
	s += ": " + p.Err.Error()
	if p.TornTail {
		s += " (torn tail: the next Open cuts it)"
	}
	return s
}

// Check reads the whole journal in opts.Dir without changing it and returns
// every problem, for fsck. It verifies every record against the seal of its
// group, as Replay does. Past a damaged header it searches for the next
// record or seal with good checksums, so one damaged header hides nothing
// after it. Check needs Dir, Key and Verifier (or Signer). It returns an
// error only when it cannot read the journal at all.
//
// Check takes no lock. While a Log has the journal open, Check may report
// a write in progress as a torn tail.
func Check(opts Options) ([]Problem, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	verifier, err := opts.verifier()
	if err != nil {
		return nil, err
	}
	segments, _, err := listSegments(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("check journal: %w", err)
	}
	if len(segments) == 0 {
		return nil, nil
	}
	if err := checkFormatVersion(opts.Dir, segments); err != nil {
		return nil, fmt.Errorf("check journal %s: %w", opts.Dir, err)
	}

	// The newest readable segment header names the journal, as in Open.
	headers := make([]*segmentHeader, len(segments))
	var problems []Problem
	var id *journalID
	for i, seg := range segments {
		header, size, err := readHeaderOf(opts.Dir, seg)
		if isReadError(err) {
			return nil, fmt.Errorf("check journal: segment %s: %w", seg.name, err)
		}
		if err != nil {
			problems = append(problems, Problem{Segment: seg.name, Size: min(segmentHeaderSize, size), Seq: seg.firstSeq, Err: err})
			continue
		}
		headers[i] = &header
		id = &headers[i].id
	}
	if id == nil {
		return problems, nil
	}
	c, err := newCodec(opts.Key, *id, nil, verifier)
	if err != nil {
		return nil, err
	}

	var expected uint64
	for i, seg := range segments {
		header := headers[i]
		if header != nil && header.id != *id {
			problems = append(problems, Problem{Segment: seg.name, Size: segmentHeaderSize, Seq: seg.firstSeq,
				Err: fmt.Errorf("journal id %s, newest segment has %s: %w", header.id, *id, ErrWrongJournal)})
			expected = 0
			continue
		}
		if header != nil && header.firstSeq != seg.firstSeq {
			problems = append(problems, Problem{Segment: seg.name, Size: segmentHeaderSize, Seq: seg.firstSeq,
				Err: fmt.Errorf("header first seq %d does not match seq %d in the file name: %w", header.firstSeq, seg.firstSeq, ErrInvalidHeader)})
		}
		if expected != 0 && seg.firstSeq != expected {
			problems = append(problems, Problem{Segment: seg.name, Seq: seg.firstSeq,
				Err: fmt.Errorf("segment starts at seq %d, expected %d: %w", seg.firstSeq, expected, ErrSequence)})
		}
		// A damaged segment header does not stop the check: the records
		// authenticate against the journal id and their own seqs.
		found, next, err := checkSegment(opts.Dir, seg, c, i == len(segments)-1)
		if err != nil {
			return nil, err
		}
		problems = append(problems, found...)
		expected = next
	}
	return problems, nil
}

// checkSegment returns the problems in one segment and the seq expected
// after its last record, or 0 if damage at its end hides that seq.
func checkSegment(dir string, seg segmentInfo, c *codec, last bool) ([]Problem, uint64, error) {
	f, err := os.Open(filepath.Join(dir, seg.name))
	if err != nil {
		return nil, 0, fmt.Errorf("check journal: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("check journal: %w", err)
	}

	gs := newGroupScanner(newScanner(newSegmentReader(f, info.Size()), c, seg.firstSeq, true), false)
	var problems []Problem
	var lastGoodEnd int64 = segmentHeaderSize
	endKnown := true
	for {
		g, ok, err := gs.next(0, checkAuth)
		if err != nil {
			return nil, 0, fmt.Errorf("check journal: segment %s: %w", seg.name, err)
		}
		if !ok {
			break
		}
		g.resolve(c)
		if g.seal != nil && g.seal.err == nil {
			lastGoodEnd = g.seal.end
		}
		for _, st := range g.steps {
			if st.damaged() {
				problems = append(problems, problemOf(seg.name, st))
			}
		}
		if g.seal != nil && g.sealErr != nil {
			p := problemOf(seg.name, *g.seal)
			if p.Err == nil {
				p.Err = g.sealErr
			}
			problems = append(problems, p)
		}
		// After a stretch without a readable header, how many records the
		// segment held is unknown.
		endKnown = g.seal != nil || g.steps[len(g.steps)-1].header != nil
	}
	if last {
		for i := range problems {
			if problems[i].Offset >= lastGoodEnd {
				problems[i].TornTail = true
			}
		}
	}
	if !endKnown {
		return problems, 0, nil
	}
	return problems, gs.sc.expected, nil
}

// problemOf describes a damaged record, seal or stretch.
func problemOf(segment string, st step) Problem {
	p := Problem{Segment: segment, Offset: st.offset, Size: st.end - st.offset, Seq: st.expected, Err: st.recordErr()}
	if st.header != nil {
		p.HeaderValid = true
		p.Seal = st.header.seal
		p.Seq = st.header.seq
		p.Tags = st.header.tags
	}
	return p
}
