#!/bin/sh
# fetch-fashion.sh DIR - installs Fashion-MNIST into DIR/fashion-mnist/.
#
# Debian's package dataset-fashion-mnist holds the four gzipped IDX files in
# /usr/share/datasets/fashion-mnist/; the script installs the package if they
# are missing (apt-get update first; as root or through sudo), checks them
# (gzip integrity, magic numbers, the first training labels) and links them
# into DIR/fashion-mnist/. The trainer reads FILE.gz when FILE is missing.
# Idempotent. Needs gzip and od.
set -eu

SRC=/usr/share/datasets/fashion-mnist
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

die() {
	echo "fetch-fashion: error: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: sh scripts/fetch-fashion.sh DIR (installs DIR/fashion-mnist/)"
DEST=$1/fashion-mnist

have_all() {
	for f in $FILES; do
		[ -f "$SRC/$f.gz" ] || return 1
	done
}

if ! have_all; then
	sh "$(dirname "$0")/apt-install.sh" dataset-fashion-mnist || die "$SRC is missing and dataset-fashion-mnist could not be installed"
	have_all || die "dataset-fashion-mnist is installed but $SRC lacks its files"
fi

# check FILE MAGIC: a whole gzip stream whose data start with the IDX magic.
check() {
	gzip -t "$SRC/$1.gz" 2>/dev/null || die "$SRC/$1.gz: not a whole gzip file"
	magic=$(gzip -dc "$SRC/$1.gz" | od -An -tu1 -N4 | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')
	[ "$magic" = "$2" ] || die "$SRC/$1.gz: expected the magic bytes '$2', found '$magic'"
}
check train-images-idx3-ubyte "0 0 8 3"
check t10k-images-idx3-ubyte "0 0 8 3"
check train-labels-idx1-ubyte "0 0 8 1"
check t10k-labels-idx1-ubyte "0 0 8 1"
first=$(gzip -dc "$SRC/train-labels-idx1-ubyte.gz" | od -An -tu1 -j8 -N10 | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')
[ "$first" = "9 0 0 3 0 2 7 2 5 5" ] || die "$SRC: expected the first training labels '9 0 0 3 0 2 7 2 5 5', found '$first'"

mkdir -p "$DEST"
for f in $FILES; do
	[ "$(readlink "$DEST/$f.gz" 2>/dev/null || true)" = "$SRC/$f.gz" ] && continue
	ln -sf "$SRC/$f.gz" "$DEST/$f.gz"
done
