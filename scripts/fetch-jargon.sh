#!/bin/sh
# fetch-jargon.sh DIR - installs the Jargon File into DIR/jargon/, the text
# models/charlm.fnn learns from.
#
# Debian's package dict-jargon holds The Jargon File 4.4.7 (public domain,
# about 1.4 MB of English prose) as /usr/share/dictd/jargon.dict.dz, a dictzip
# file: gzip with an index in its header, which zlib reads as plain gzip. The
# script installs the package if the file is missing (apt-get update first; as
# root or through sudo), checks it (gzip integrity, the size and the title
# line) and links it as DIR/jargon/jargon.txt.gz. Idempotent. Needs gzip.
set -eu

SRC=/usr/share/dictd/jargon.dict.dz

die() {
	echo "fetch-jargon: error: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: sh scripts/fetch-jargon.sh DIR (installs DIR/jargon/)"
DEST=$1/jargon

if [ ! -f "$SRC" ]; then
	sh "$(dirname "$0")/apt-install.sh" dict-jargon || die "$SRC is missing and dict-jargon could not be installed"
	[ -f "$SRC" ] || die "dict-jargon is installed but $SRC is missing"
fi

gzip -t "$SRC" 2>/dev/null || die "$SRC: not a whole gzip file"
size=$(gzip -dc "$SRC" | wc -c)
[ "$size" -gt 1000000 ] || die "$SRC: expected more than 1 MB of text, found $size bytes"
gzip -dc "$SRC" | head -n 20 | grep -q "The Jargon File" || die "$SRC: no 'The Jargon File' title in its first lines"

mkdir -p "$DEST"
[ "$(readlink "$DEST/jargon.txt.gz" 2>/dev/null || true)" = "$SRC" ] || ln -sf "$SRC" "$DEST/jargon.txt.gz"
