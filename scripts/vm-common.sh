# shellcheck shell=sh
# Functions shared by scripts/image-run.sh and scripts/run-efi.sh, which
# source this file after setting `name`, the prefix of their messages.

# choose_accel KERNEL CACHE sets accel to kvm or tcg, and accel_reason to
# why, for the scripts' first message. Opening /dev/kvm is
# not enough: on hosts without working nested KVM, QEMU starts and the
# guest hangs before the kernel prints anything. So KERNEL boots under KVM
# for up to 5 s, and KVM is used only if its first console line appears.
# The result is kept in the file CACHE, so later runs skip the probe. Delete
# it to probe again. BT_QEMU_ACCEL=kvm or =tcg skips the probe too.
choose_accel() {
	accel=${BT_QEMU_ACCEL:-}
	accel_reason="set by BT_QEMU_ACCEL"
	[ -n "$accel" ] && return 0
	if [ -f "$2" ]; then
		accel=$(cat "$2")
		accel_reason="from $2, an earlier probe; delete it to probe again"
		case $accel in kvm | tcg) return 0 ;; esac
	fi
	accel=tcg
	accel_reason="/dev/kvm is missing or not writable"
	[ -w /dev/kvm ] && [ -f "$1" ] || return 0
	probe_kvm "$1"
	if [ "$accel" = kvm ]; then
		accel_reason="a test boot under KVM worked"
	else
		accel_reason="a test boot under KVM printed nothing within 5 s"
	fi
	echo "$accel" >"$2"
}

probe_kvm() {
	probe_log=$(mktemp)
	qemu-system-x86_64 -accel kvm -m 128 -display none -monitor none \
		-no-user-config -nodefaults -serial "file:$probe_log" \
		-kernel "$1" -append "console=ttyS0 earlyprintk=ttyS0 panic=-1" \
		</dev/null >/dev/null 2>&1 &
	probe_pid=$!
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		if grep -q "Linux version" "$probe_log"; then
			accel=kvm
			break
		fi
		kill -0 "$probe_pid" 2>/dev/null || break
		sleep 0.5
	done
	kill "$probe_pid" 2>/dev/null || true
	wait "$probe_pid" 2>/dev/null || true
	rm -f "$probe_log"
}

# start_swtpm STATEDIR starts a TPM 2.0 emulator whose state persists in
# STATEDIR and sets swtpm_sock to its control socket. swtpm serves one QEMU
# run and exits when QEMU closes the socket. The EXIT trap stops it if QEMU
# never connects. A Unix socket path has at most 107 bytes, so the socket
# lives in a short temporary directory under /tmp.
start_swtpm() {
	mkdir -p "$1"
	swtpm_dir=$(mktemp -d /tmp/bt-tpm.XXXXXX)
	swtpm_sock=$swtpm_dir/swtpm.sock
	swtpm socket --tpm2 --tpmstate "dir=$1" --ctrl "type=unixio,path=$swtpm_sock" \
		--terminate --log "file=$1/swtpm.log" &
	swtpm_pid=$!
	# The firmware turns off the terminal's line wrapping, so turn it back on
	# when QEMU is gone.
	trap 'kill "$swtpm_pid" 2>/dev/null || true; wait "$swtpm_pid" 2>/dev/null || true; rm -rf "$swtpm_dir"; [ ! -t 1 ] || printf "\033[?7h"' EXIT
	# The shell runs the EXIT trap on exit only, so a signal exits
	# explicitly, with status 128 + its number.
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
	for _ in $(seq 50); do
		[ -S "$swtpm_sock" ] && return 0
		if ! kill -0 "$swtpm_pid" 2>/dev/null; then
			echo "$name: swtpm exited, see $1/swtpm.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "$name: swtpm did not create $swtpm_sock within 5 s, see $1/swtpm.log" >&2
	exit 1
}
