#!/bin/sh
# apt-install.sh PACKAGE - installs one Debian package for the fetch scripts:
# apt-get update first, then the package without its recommendations, as root
# or through sudo. Exits 1 with a message saying what to run if it cannot.
set -eu
[ $# -eq 1 ] || { echo "usage: sh scripts/apt-install.sh PACKAGE" >&2; exit 1; }
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $1"
fail() {
	echo "apt-install: error: $*" >&2
	exit 1
}
command -v apt-get >/dev/null 2>&1 || fail "there is no apt-get to install $1"
echo "installing the Debian package $1" >&2
if [ "$(id -u)" -eq 0 ]; then
	sh -c "$cmd" >&2 || fail "could not install $1"
elif command -v sudo >/dev/null 2>&1; then
	sudo sh -c "$cmd" >&2 || fail "could not install $1"
else
	fail "not root and no sudo; run as root: $cmd"
fi
