package fsys

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSectorMapMatchesMap runs random sets and deletes, some during each,
// on a sectorMap and on a plain map, and compares everything it reports.
func TestSectorMapMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	m := newSectorMap()
	model := map[uint64]*sector{}
	data := new(sector)
	randomIndex := func() uint64 {
		// A few chunks, dense and sparse, and one far away.
		switch rng.IntN(4) {
		case 0:
			return 1<<40 + uint64(rng.IntN(3))
		default:
			return uint64(rng.IntN(3 * ChunkSectors))
		}
	}
	for step := range 20000 {
		index := randomIndex()
		switch rng.IntN(5) {
		case 0, 1:
			m.set(index, data)
			model[index] = data
		case 2:
			m.set(index, nil)
			model[index] = nil
		case 3:
			m.delete(index)
			delete(model, index)
		case 4:
			// Delete every other sector while iterating.
			seen := 0
			m.each(func(i uint64, _ *sector) bool {
				if seen%2 == 0 {
					m.delete(i)
					delete(model, i)
				}
				seen++
				return true
			})
		}

		got, stored := m.get(index)
		want, wantStored := model[index]
		if got != want || stored != wantStored {
			t.Fatalf("step %d: get(%d) = %p, %v; the map has %p, %v", step, index, got, stored, want, wantStored)
		}
		if m.len() != len(model) {
			t.Fatalf("step %d: len = %d; the map has %d", step, m.len(), len(model))
		}
	}

	var visited []uint64
	m.each(func(i uint64, sec *sector) bool {
		if model[i] != sec {
			t.Errorf("each yields sector %d with %p; the map has %p", i, sec, model[i])
		}
		visited = append(visited, i)
		return true
	})
	slices.Sort(visited)
	if want := slices.Sorted(maps.Keys(model)); !slices.Equal(visited, want) {
		t.Errorf("each visits %d sectors; the map has %d", len(visited), len(want))
	}
	for _, c := range m.sortedChunks() {
		if m.chunks[c].count == 0 {
			t.Errorf("chunk %d is kept with no stored sector", c)
		}
	}
}
