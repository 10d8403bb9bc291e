#!/bin/sh
# Boots OUT/vmlinuz and OUT/initramfs.cpio (from `go run ./image/cmd/btimage`)
# in QEMU with the serial console on stdio and 512 MiB of memory. It uses KVM
# when a KVM guest boots and falls back to TCG otherwise.
# Quit QEMU with Ctrl-A X, or run `poweroff` in the shell.
#
# Usage: scripts/image-run.sh [OUT] [extra qemu arguments...]
set -eu

out=${1:-out}
[ $# -gt 0 ] && shift

for f in "$out/vmlinuz" "$out/initramfs.cpio"; do
	if [ ! -f "$f" ]; then
		echo "image-run: $f not found; build it with: go run ./image/cmd/btimage --out $out" >&2
		exit 1
	fi
done

# Opening /dev/kvm is not enough: on hosts without working nested KVM,
# QEMU starts and the guest hangs before the kernel prints anything. So
# boot the kernel under KVM for up to 5 s and use KVM only if its first
# console line appears. BT_QEMU_ACCEL=kvm or =tcg skips the probe.
probe_kvm() {
	[ -w /dev/kvm ] || return 1
	log=$(mktemp)
	qemu-system-x86_64 -accel kvm -m 128 -display none -monitor none \
		-no-user-config -nodefaults -serial "file:$log" \
		-kernel "$out/vmlinuz" -append "console=ttyS0 earlyprintk=ttyS0 panic=-1" \
		</dev/null >/dev/null 2>&1 &
	pid=$!
	found=1
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		if grep -q "Linux version" "$log"; then
			found=0
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -f "$log"
	return $found
}

accel=${BT_QEMU_ACCEL:-}
if [ -z "$accel" ]; then
	if probe_kvm; then accel=kvm; else accel=tcg; fi
fi
echo "image-run: accelerator $accel" >&2

exec qemu-system-x86_64 \
	-accel "$accel" \
	-m 512 \
	-nographic -no-reboot \
	-kernel "$out/vmlinuz" \
	-initrd "$out/initramfs.cpio" \
	-append "console=ttyS0 panic=-1 quiet" \
	"$@"
