module github.com/blocktree/blocktree

go 1.26.0

require (
	github.com/google/go-tpm v0.9.8
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
	golang.org/x/term v0.48.0
)

require github.com/hanwen/go-fuse/v2 v2.12.1
