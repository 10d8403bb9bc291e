#!/usr/bin/env bash
# Installs the Debian packages that Blocktree's build and tests use. Only the
# missing ones are installed; on systems without apt-get it prints the list.
set -euo pipefail

packages=(
	swtpm swtpm-tools tpm2-tools # software TPM for the crypto tests and host-mode nodes
	fuse3 git rsync              # host-mode tests: the FUSE mount and real tools run on it
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
	echo "install-deps: missing packages ${missing[*]}: install them with your package manager" >&2
	exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
