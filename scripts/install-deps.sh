#!/usr/bin/env bash
# Installs the Debian packages that Blocktree's build and tests use. It
# installs only the missing ones. On systems without apt-get it prints them
# and fails.
set -euo pipefail

packages=(
	swtpm swtpm-tools tpm2-tools # software TPM for the crypto tests and host-mode nodes
	fuse3 git rsync              # host-mode tests: the FUSE mount and real tools run on it
	iproute2 iptables            # routing tests: ip netns, veth pairs, routes and cut links
	qemu-system-x86 kmod         # image builds (depmod) and boot tests (QEMU)
	systemd-boot-efi             # UEFI stub for the unified kernel image
	dosfstools mtools e2fsprogs  # EFI System Partition (FAT) and data partition (ext4) without mounting
	gdisk                        # sgdisk -v checks the GPT in the image tests
	ovmf                         # UEFI firmware for make run-efi and the UEFI boot test
	gocryptfs                    # only make bench: the file-system comparison mounts it
)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
updated=false

# The image builder downloads the pinned kernel package with apt-get, so the
# package lists must contain that version.
kernel_conf="$(dirname "$0")/../kernel-config/kernel.conf"
if command -v apt-get >/dev/null && [ -f "$kernel_conf" ]; then
	kernel_package=$(sed -n 's/^package=//p' "$kernel_conf")
	kernel_version=$(sed -n 's/^version=//p' "$kernel_conf")
	if ! apt-cache show "$kernel_package=$kernel_version" >/dev/null 2>&1; then
		echo "install-deps: package lists do not contain $kernel_package=$kernel_version, running apt-get update"
		$sudo apt-get update -q
		updated=true
	fi
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
	echo "install-deps: missing packages ${missing[*]}: install them with your package manager" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
$updated || $sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
