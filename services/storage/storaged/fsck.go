package storaged

import (
	"fmt"
	"os"
	"time"

	"github.com/blocktree/blocktree/services/crypto/block"
	"github.com/blocktree/blocktree/services/storage/blockstore"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/journal"
)

// Problem is one finding of Fsck.
type Problem struct {
	Kind  string // "block", "journal" or "garbage"
	Ino   fsapi.Ino
	Block string // block id in hex, when known
	Path  string // tree path, when known
	Err   error
}

func (p Problem) String() string {
	where := p.Path
	if where == "" {
		where = fmt.Sprintf("inode %d", p.Ino)
	}
	if p.Block != "" {
		return fmt.Sprintf("%s: %s (block %s): %v", p.Kind, where, p.Block, p.Err)
	}
	return fmt.Sprintf("%s: %s: %v", p.Kind, where, p.Err)
}

// FsckStats counts what Fsck checked.
type FsckStats struct {
	Inodes        int // inodes that the checkpoint names
	BlockVersions int // block files verified
	JournalBytes  int64
}

// Fsck checks every stored block version (signature, writecap chain, Merkle
// tree) and the whole journal, in addition to what Open already checked
// while loading (each inode's block opened and decrypted at the version the
// checkpoint names, every replayed record). The daemon must have been
// opened with Options.Check.
func (d *Daemon) Fsck() ([]Problem, FsckStats, error) {
	var problems []Problem
	stats := FsckStats{Inodes: len(d.versions) + len(d.kept)}
	for _, dmg := range d.damaged {
		problems = append(problems, Problem{Kind: "block", Ino: dmg.Ino, Block: fmt.Sprintf("%x", dmg.BlockID), Path: dmg.Path, Err: dmg.Err})
	}

	live := d.liveRefs()
	refs, err := d.store.List()
	if err != nil {
		return nil, stats, err
	}
	stats.BlockVersions = len(refs)
	report := func(ino fsapi.Ino, ref blockstore.Ref, err error) {
		if d.alreadyReported(ino) {
			return
		}
		path, _ := d.engine.PathOf(ino)
		problems = append(problems, Problem{Kind: "block", Ino: ino, Block: fmt.Sprintf("%x", ref.ID), Path: path, Err: err})
		d.damaged = append(d.damaged, Damage{Ino: ino, BlockID: ref.ID, Path: path, Err: err})
	}
	garbage := make(map[blockstore.Ref]bool, len(d.garbage))
	for _, ref := range d.garbage {
		garbage[ref] = true
	}
	stored := make(map[blockstore.Ref]bool, len(refs))
	for _, ref := range refs {
		stored[ref] = true
		data, err := d.store.Get(ref)
		var h *block.Header
		if err == nil {
			h, err = block.Verify(data, d.node.Tree.Root, timeOfCheck())
		}
		ino, isLive := live[ref]
		if err == nil && isLive && (h.ID != ref.ID || h.Version != ref.Version) {
			err = fmt.Errorf("rollback: the file of version %d contains version %d of block %x: %w", ref.Version, h.Version, h.ID, block.ErrRollback)
		}
		// Garbage, reported below, may have part of its data: a crash
		// before the store's Sync leaves new versions so. The versions of
		// damaged files that are kept as evidence are not garbage.
		if err != nil && !garbage[ref] {
			report(ino, ref, err)
		}
	}
	// Chunks are opened only when read, so Open has not looked for them.
	for ref, ino := range live {
		if !stored[ref] {
			report(ino, ref, fmt.Errorf("block version %d is missing: %w", ref.Version, blockstore.ErrNotFound))
		}
	}
	problems = append(problems, d.garbageProblems()...)

	journalProblems, err := journal.Check(journal.Options{
		Dir:      d.node.JournalDir(),
		Key:      d.node.Tree.JournalKey,
		Verifier: d.node.Credential.Signing.Public(),
		Logger:   d.log,
	})
	if err != nil {
		return nil, stats, fmt.Errorf("check journal: %w", err)
	}
	stats.JournalBytes = journalSize(d.node.JournalDir())
	for _, jp := range journalProblems {
		if jp.TornTail {
			continue
		}
		if len(jp.Tags) == 0 {
			problems = append(problems, Problem{Kind: "journal", Err: fmt.Errorf("%s", jp)})
		}
		for _, tag := range jp.Tags {
			ino := fsapi.Ino(tag)
			if d.alreadyReported(ino) {
				continue
			}
			path, _ := d.engine.PathOf(ino)
			blockID, _ := d.engine.BlockID(ino)
			problems = append(problems, Problem{Kind: "journal", Ino: ino, Block: fmt.Sprintf("%x", blockID), Path: path, Err: fmt.Errorf("%s", jp)})
		}
	}
	return problems, stats, nil
}

func journalSize(dir string) int64 {
	var total int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !e.IsDir() {
			total += info.Size()
		}
	}
	return total
}

func (d *Daemon) alreadyReported(ino fsapi.Ino) bool {
	for _, dmg := range d.damaged {
		if dmg.Ino == ino {
			return true
		}
	}
	return false
}

// timeOfCheck is the time at which writecap chains are checked.
func timeOfCheck() time.Time { return time.Now() }

// garbageProblems reports the unused block versions, one line per file: a
// file's blocks share the first half of their ids (see chunkID).
func (d *Daemon) garbageProblems() []Problem {
	inodeOf := make(map[[16]byte]fsapi.Ino, len(d.versions))
	for ino, ref := range d.versions {
		inodeOf[fileOf(ref.ID)] = ino
	}
	counts := make(map[[16]byte]int)
	var order [][16]byte
	for _, ref := range d.garbage {
		file := fileOf(ref.ID)
		if counts[file] == 0 {
			order = append(order, file)
		}
		counts[file]++
	}
	const cause = "a crash interrupted a checkpoint, or the removal of the versions it replaced; the next start removes them"
	var problems []Problem
	// Files that the checkpoint does not name, such as files created after
	// it, have no path to show, so they share one line.
	otherFiles, otherVersions := 0, 0
	for _, file := range order {
		ino, known := inodeOf[file]
		if !known {
			otherFiles++
			otherVersions += counts[file]
			continue
		}
		path, _ := d.engine.PathOf(ino)
		problems = append(problems, Problem{Kind: "garbage", Ino: ino, Block: fmt.Sprintf("%x…", file[:]), Path: path, Err: fmt.Errorf("%s named by no checkpoint: %s", versions(counts[file]), cause)})
	}
	if otherFiles > 0 {
		problems = append(problems, Problem{Kind: "garbage", Path: plural(otherFiles, "file") + " that the checkpoint does not name", Err: fmt.Errorf("%s named by no checkpoint: %s", versions(otherVersions), cause)})
	}
	return problems
}

// versions returns "1 block version is" or "n block versions are".
func versions(n int) string {
	if n == 1 {
		return "1 block version is"
	}
	return plural(n, "block version") + " are"
}

// plural returns n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
