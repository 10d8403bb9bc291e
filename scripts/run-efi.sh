#!/bin/sh
# Boots OUT/disk.img (from `go run ./image/cmd/btimage`) the way a device
# boots: OVMF UEFI firmware on a q35 machine loads the UKI from the EFI
# System Partition, with a software TPM 2.0 (swtpm), a virtio disk, a
# virtio RNG and user-mode networking. The serial console is on stdio.
#
# The firmware variables (OUT/efi-vars.fd) and the TPM state (OUT/efi-tpm)
# persist, so a second run is a reboot of the same device. Delete them to
# get a factory-new device. A reboot inside the guest restarts the
# firmware. `poweroff` or Ctrl-A X ends QEMU, and swtpm stops with it.
# The device's netd port, 7420, is forwarded from 127.0.0.1:7420 on the
# host, or from BT_NETD_PORT.
#
# Usage: scripts/run-efi.sh [OUT] [extra qemu arguments...]
set -eu

out=${1:-out}
[ $# -gt 0 ] && shift
scripts=$(dirname "$0")
name=run-efi
. "$scripts/vm-common.sh"

ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd

# Tools from the Debian packages qemu-system-x86, swtpm and ovmf. When one
# is missing, install-deps.sh installs it with apt-get, or prints what to
# install and fails on systems without apt-get.
tools_missing() {
	command -v qemu-system-x86_64 >/dev/null || return 0
	command -v swtpm >/dev/null || return 0
	[ -f "$ovmf_code" ] && [ -f "$ovmf_vars" ] || return 0
	return 1
}
if tools_missing; then
	echo "run-efi: qemu-system-x86_64, swtpm or OVMF is missing, running scripts/install-deps.sh" >&2
	"$scripts/install-deps.sh"
	if tools_missing; then
		echo "run-efi: qemu-system-x86_64, swtpm, $ovmf_code or $ovmf_vars is still missing: install the Debian packages qemu-system-x86, swtpm and ovmf" >&2
		exit 1
	fi
fi

if [ ! -f "$out/disk.img" ]; then
	echo "run-efi: $out/disk.img not found: build it with make image (or go run ./image/cmd/btimage --out $out)" >&2
	exit 1
fi

# The KVM probe boots OUT/vmlinuz, which btimage writes next to disk.img.
# Without it the probe is skipped and QEMU uses TCG.
choose_accel "$out/vmlinuz" "$out/accel"
echo "run-efi: accelerator $accel ($accel_reason)" >&2

# The firmware writes its boot entries into its own copy of the variables.
if [ ! -f "$out/efi-vars.fd" ]; then
	cp "$ovmf_vars" "$out/efi-vars.fd"
fi

start_swtpm "$out/efi-tpm"

# -nodefaults leaves out the default CD-ROM and VGA. bootindex=1 passes the
# disk to OVMF as the first boot device, because the boot entries saved in
# efi-vars.fd may name devices of another machine layout and would then put
# the UEFI shell first. The monitor shares stdio with the serial console:
# Ctrl-A C switches between them.
qemu-system-x86_64 \
	-accel "$accel" \
	-machine q35 \
	-m 1024 \
	-nodefaults -nographic -serial mon:stdio \
	-drive if=pflash,format=raw,unit=0,readonly=on,file="$ovmf_code" \
	-drive if=pflash,format=raw,unit=1,file="$out/efi-vars.fd" \
	-chardev socket,id=chrtpm,path="$swtpm_sock" \
	-tpmdev emulator,id=tpm0,chardev=chrtpm \
	-device tpm-tis,tpmdev=tpm0 \
	-drive if=none,id=disk0,format=raw,file="$out/disk.img" \
	-device virtio-blk-pci,drive=disk0,bootindex=1 \
	-device virtio-rng-pci \
	-nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${BT_NETD_PORT:-7420}-:7420" \
	"$@"
