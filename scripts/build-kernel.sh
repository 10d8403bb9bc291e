#!/usr/bin/env bash
# Builds a custom kernel from Debian's linux-source package, at the version
# pinned in kernel-config/kernel.conf, with the pinned package's own
# configuration plus kernel-config/options.config on top. The result is a
# kernel tree in OUT/kernel-custom (boot/vmlinuz-RELEASE, boot/config-RELEASE
# and lib/modules/RELEASE) that `btimage --kernel-dir OUT/kernel-custom`
# builds the image from. This is optional because the default image uses
# Debian's binary kernel package. CI does not run it: it took 56 minutes on
# two cores beside other work (docs/image.md).
#
# Usage: scripts/build-kernel.sh [OUT]
set -euo pipefail

out=$(realpath -m "${1:-out}")
root=$(cd "$(dirname "$0")/.." && pwd)
conf="$root/kernel-config/kernel.conf"
version=$(sed -n 's/^version=//p' "$conf")
release=$(sed -n 's/^release=//p' "$conf")
series=${release%%-*}              # 6.1.0
series=${series%.*}                # 6.1
source_pkg="linux-source-$series"

log() { echo "build-kernel: $*" >&2; }

# Tools and the source package, installed only when missing.
tools=(build-essential bc bison flex libelf-dev libssl-dev cpio kmod xz-utils)
missing=()
for p in "${tools[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ -f "/usr/src/linux-source-$series.tar.xz" ] || missing+=("$source_pkg=$version")
if [ ${#missing[@]} -gt 0 ]; then
	if ! command -v apt-get >/dev/null; then
		log "missing packages ${missing[*]}: install them with your package manager"
		exit 1
	fi
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	log "installing ${missing[*]}"
	$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The pinned binary package's configuration is the starting point; the
# image builder downloads and unpacks it.
mkdir -p "$out/cache"
base_config=$(find "$out/cache" -path "*/boot/config-$release" | head -n1)
if [ -z "$base_config" ]; then
	log "no config-$release under $out/cache yet; running the image builder once to fetch the kernel package"
	(cd "$root" && go run ./image/cmd/btimage --out "$out" --efi=false)
	base_config=$(find "$out/cache" -path "*/boot/config-$release" | head -n1)
fi

build="$out/kernel-build"
src="$build/linux-source-$series"
if [ ! -d "$src" ]; then
	log "unpacking /usr/src/linux-source-$series.tar.xz"
	mkdir -p "$build"
	tar -C "$build" -xf "/usr/src/linux-source-$series.tar.xz"
fi

log "configuring: Debian's config-$release plus kernel-config/options.config"
cp "$base_config" "$src/.config"
(
	cd "$src"
	# Debian signs modules with its own key, which a local build does not
	# have; debug info only makes the build slower.
	scripts/config --set-str SYSTEM_TRUSTED_KEYS "" --set-str SYSTEM_REVOCATION_KEYS "" \
		--disable MODULE_SIG_ALL --disable DEBUG_INFO --disable DEBUG_INFO_BTF \
		--enable DEBUG_INFO_NONE --set-str LOCALVERSION "" --disable LOCALVERSION_AUTO
	grep -v '^#' "$root/kernel-config/options.config" | grep . >"$build/fragment.config"
	scripts/kconfig/merge_config.sh -m .config "$build/fragment.config" >/dev/null
	make -s olddefconfig
	# Every option of the fragment must have survived olddefconfig.
	while IFS= read -r line; do
		opt=${line%%=*}
		want=${line#*=}
		got=$(grep -E "^$opt=" .config | cut -d= -f2- || true)
		if [ "$want" = y ] && [ "$got" != y ] || [ "$want" = m ] && [ "$got" != y ] && [ "$got" != m ]; then
			log "kernel option $opt=$want did not survive configuration (got '${got:-unset}'): check its dependencies"
			exit 1
		fi
	done <"$build/fragment.config"
)
custom_release=$(make -s -C "$src" kernelrelease)

log "building $custom_release with $(nproc) jobs (bzImage and modules)"
make -C "$src" -j"$(nproc)" bzImage modules

dest="$out/kernel-custom"
rm -rf "$dest"
mkdir -p "$dest/boot"
make -C "$src" -s INSTALL_MOD_PATH="$dest" INSTALL_MOD_STRIP=1 modules_install
cp "$src/arch/x86/boot/bzImage" "$dest/boot/vmlinuz-$custom_release"
cp "$src/.config" "$dest/boot/config-$custom_release"
log "kernel $custom_release in $dest; build the image from it with: make image KERNEL_DIR=$dest"
