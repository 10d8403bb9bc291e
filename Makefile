# Blocktree build and test entry points. `make test` is the one test command.
GO ?= go
OUT ?= out
TEST_TIMEOUT ?= 20m

.PHONY: all build image run test bench fuzz vet clean

all: build

build:
	$(GO) build -o $(OUT)/bt ./cmd/bt

# The appliance image: kernel, modules and a u-root initramfs with our
# PID 1, in $(OUT). The kernel package is pinned in kernel-config/kernel.conf.
image:
	$(GO) run ./image/cmd/btimage --out $(OUT)

# Boots the image in QEMU with the serial console in this terminal.
run: image
	scripts/image-run.sh $(OUT)

vet:
	$(GO) vet ./...

# Unit, integration and fuzz-seed tests. Tests that need swtpm, root or FUSE
# skip outside CI when the part is missing and fail when CI=true.
test: vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# Benchmarks; results and the machine they ran on go into docs/benchmarks.md.
# The host-mode benchmarks mount a node and need root and /dev/fuse.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Runs each fuzz target for FUZZTIME beyond its seed corpus.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf $(OUT)
