//go:build amd64 && !purego

package sha256x16

import "golang.org/x/sys/cpu"

// available reports whether the CPU has the AVX-512 instructions that
// blocks uses: the foundation (VPRORD, VPTERNLOGD, VPGATHERQD) and byte and
// word operations (VPSHUFB on 512 bits). x/sys/cpu reports them only when
// the operating system saves the opmask and 512-bit registers.
var available = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// blocks runs the compression function on n 64-byte blocks of each of the
// 16 messages that start at ptrs, updating state, which holds word w of
// lane l at state[w][l].
//
//go:noescape
func blocks(state *[8][Lanes]uint32, ptrs *[Lanes]*byte, n int)
