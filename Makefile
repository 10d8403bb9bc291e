# Blocktree build and test entry points. `make test` is the one test command.
GO ?= go
OUT ?= out
TEST_TIMEOUT ?= 20m

.PHONY: all build deps image kernel run test bench fuzz vet clean

all: build

build:
	$(GO) build -o $(OUT)/bt ./cmd/bt

# Installs the missing Debian packages the build and the tests use (apt-get,
# through sudo when not root); does nothing when all are there.
deps:
	scripts/install-deps.sh

# The appliance image: kernel, modules and a u-root initramfs with our
# PID 1, in $(OUT). The kernel package is pinned in kernel-config/kernel.conf.
# KERNEL_DIR=$(OUT)/kernel-custom builds it with the kernel from `make kernel`.
KERNEL_DIR ?=
BTIMAGE := $(GO) run ./image/cmd/btimage --out $(OUT) $(if $(KERNEL_DIR),--kernel-dir $(KERNEL_DIR))
image:
	$(BTIMAGE)

# The image is rebuilt by `make run` only when a source file changed.
IMAGE_SOURCES := go.mod go.sum $(shell find cmd init image services kernel-config -type f -not -name '*_test.go' 2>/dev/null)
# One btimage run writes both files (grouped target, GNU make 4.3).
$(OUT)/initramfs.cpio $(OUT)/disk.img &: $(IMAGE_SOURCES)
	$(BTIMAGE)

# Optional and not part of CI: builds a kernel from Debian's linux-source
# package with kernel-config/options.config into $(OUT)/kernel-custom.
# Then: make image KERNEL_DIR=$(OUT)/kernel-custom
kernel:
	scripts/build-kernel.sh $(OUT)

# Boots the image in QEMU with a software TPM and a persistent data disk,
# with the serial console in this terminal. See docs/appliance.md.
run: deps $(OUT)/initramfs.cpio
	scripts/image-run.sh $(OUT)

# Boots $(OUT)/disk.img the way a device boots: OVMF UEFI firmware loads
# the UKI from the EFI System Partition, with a software TPM. Firmware
# variables ($(OUT)/efi-vars.fd) and TPM state ($(OUT)/efi-tpm) persist, and
# a rebuilt image keeps the data partition of an existing disk.img.
.PHONY: run-efi data-disk
run-efi: deps $(OUT)/initramfs.cpio $(OUT)/disk.img
	scripts/run-efi.sh $(OUT)

# Creates the standalone data disk $(OUT)/data.img once; an existing one is
# kept unchanged.
DATA_SIZE ?= 2G
data-disk:
	$(GO) run ./image/cmd/btimage --data-disk $(OUT)/data.img --data-size $(DATA_SIZE)

vet:
	$(GO) vet ./...

# Unit, integration and fuzz-seed tests. Tests that need swtpm, root or FUSE
# skip outside CI when the part is missing and fail when CI=true.
test: deps vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# Benchmarks; results and the machine they ran on go into docs/benchmarks.md.
# The host-mode benchmarks mount a node and need root and /dev/fuse; the
# benchmark between nodes (tests/netns) also creates two network
# namespaces, and takes about 20 s; the bus benchmark about 30 s; the
# appliance boot benchmark builds the image and boots it in QEMU.
bench:
	BT_IMAGE_TEST=1 $(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

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
