//go:build !amd64 || purego

package sha256x16

const available = false

func blocks(state *[8][Lanes]uint32, ptrs *[Lanes]*byte, n int) {
	panic("sha256x16: no vector code on this platform")
}
