#!/bin/sh
# Boots the appliance: OUT/vmlinuz and OUT/initramfs.cpio (from
# `go run ./image/cmd/btimage`) in QEMU with a software TPM (swtpm), a
# persistent data disk, virtio-rng, user-mode networking and the serial
# console on this terminal. The TPM state (OUT/tpm) and the data disk
# (OUT/data.img) stay in OUT, so running this again reboots the same
# device. It uses KVM when a KVM guest boots and TCG otherwise.
# Quit with `poweroff` in the shell (a clean shutdown), or Ctrl-A X.
#
# Usage: scripts/image-run.sh [OUT] [extra qemu arguments...]
# BT_CMDLINE replaces the kernel command line. BT_QEMU_ACCEL=kvm or =tcg
# skips the KVM probe. The device's netd port, 7420, is forwarded from
# 127.0.0.1:7420 on the host, or from BT_NETD_PORT, so that a host-mode
# node on this machine can reach the device.
set -eu

out=${1:-out}
[ $# -gt 0 ] && shift
scripts=$(dirname "$0")
name=image-run
. "$scripts/vm-common.sh"

for f in "$out/vmlinuz" "$out/initramfs.cpio"; do
	if [ ! -f "$f" ]; then
		echo "image-run: $f not found: build it with make image" >&2
		exit 1
	fi
done
for tool in qemu-system-x86_64 swtpm; do
	if ! command -v "$tool" >/dev/null; then
		echo "image-run: $tool not found, running scripts/install-deps.sh" >&2
		"$scripts/install-deps.sh"
		break
	fi
done

# The data disk contains the device's sealed keys and its blocks. It is
# created once and kept.
if [ ! -f "$out/data.img" ]; then
	go run ./image/cmd/btimage --out "$out" --data-disk "$out/data.img"
fi

choose_accel "$out/vmlinuz" "$out/accel"
echo "image-run: accelerator $accel ($accel_reason), TPM state in $out/tpm, data disk $out/data.img" >&2

start_swtpm "$out/tpm"

qemu-system-x86_64 \
	-accel "$accel" \
	-m 1024 -smp 2 \
	-nographic \
	-kernel "$out/vmlinuz" \
	-initrd "$out/initramfs.cpio" \
	-append "${BT_CMDLINE:-console=ttyS0 panic=-1 quiet}" \
	-chardev "socket,id=chrtpm,path=$swtpm_sock" \
	-tpmdev emulator,id=tpm0,chardev=chrtpm \
	-device tpm-tis,tpmdev=tpm0 \
	-drive "file=$out/data.img,format=raw,if=virtio" \
	-device virtio-rng-pci \
	-nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${BT_NETD_PORT:-7420}-:7420" \
	"$@"
