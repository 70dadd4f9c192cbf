#!/bin/sh
# fetch-diabetes.sh DIR - makes DIR/diabetes/train.csv and test.csv from the
# diabetes data set that Debian's python3-sklearn ships (Efron, Hastie,
# Johnstone and Tibshirani, "Least Angle Regression", 2004): 442 patients, 10
# baseline measurements (age, sex, body mass index, mean blood pressure, six
# blood serum measurements s1..s6) and a measure of the disease's progression
# one year later, the regression target.
#
# sklearn keeps the measurements (space-separated) and the target in two
# gzipped files; the script joins them into CSV with a header, checks the
# counts, and holds out every 5th patient (88) as the test set (354 for
# training). Installs python3-sklearn (without its recommends) if the files
# are missing: apt-get update first, as root or through sudo. Idempotent.
set -eu

die() {
	echo "fetch-diabetes: error: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: sh scripts/fetch-diabetes.sh DIR (makes DIR/diabetes/)"
DEST=$1/diabetes
HEADER="age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,progression"

ok_csv() {
	[ -f "$1" ] && [ "$(head -n 1 "$1")" = "$HEADER" ] && [ "$(wc -l <"$1" | tr -d ' ')" -eq "$2" ]
}
ok_csv "$DEST/train.csv" 355 && ok_csv "$DEST/test.csv" 89 && exit 0

SRC=$(ls -d /usr/lib/python3/dist-packages/sklearn/datasets/data 2>/dev/null || true)
if [ -z "$SRC" ] || [ ! -f "$SRC/diabetes_data_raw.csv.gz" ]; then
	sh "$(dirname "$0")/apt-install.sh" python3-sklearn || die "sklearn's data files are missing and python3-sklearn could not be installed"
	SRC=/usr/lib/python3/dist-packages/sklearn/datasets/data
fi
X=$SRC/diabetes_data_raw.csv.gz
Y=$SRC/diabetes_target.csv.gz
[ -f "$X" ] && [ -f "$Y" ] || die "$SRC has no diabetes_data_raw.csv.gz and diabetes_target.csv.gz"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fetch-diabetes.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
gzip -dc "$X" >"$TMP/x" || die "$X: cannot decompress"
gzip -dc "$Y" >"$TMP/y" || die "$Y: cannot decompress"
[ "$(wc -l <"$TMP/x" | tr -d ' ')" -eq 442 ] || die "$X: expected 442 rows"
[ "$(wc -l <"$TMP/y" | tr -d ' ')" -eq 442 ] || die "$Y: expected 442 rows"
# Join, check 10 numbers + 1 per row, split: every 5th row is a test row.
paste -d' ' "$TMP/x" "$TMP/y" | awk -v tr="$TMP/train.csv" -v te="$TMP/test.csv" -v h="$HEADER" '
	BEGIN { print h > tr; print h > te }
	{
		if (NF != 11) { print "row " NR ": expected 11 fields, found " NF; exit 1 }
		line = ""
		for (i = 1; i <= 11; i++) {
			if ($i !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/) { print "row " NR ": not a number: " $i; exit 1 }
			line = line (i > 1 ? "," : "") ($i + 0)
		}
		print line > (NR % 5 == 0 ? te : tr)
	}' >"$TMP/msg" || die "$(cat "$TMP/msg")"
mkdir -p "$DEST"
mv -f "$TMP/train.csv" "$DEST/.train.csv.part" && mv -f "$DEST/.train.csv.part" "$DEST/train.csv"
mv -f "$TMP/test.csv" "$DEST/.test.csv.part" && mv -f "$DEST/.test.csv.part" "$DEST/test.csv"
ok_csv "$DEST/train.csv" 355 && ok_csv "$DEST/test.csv" 89 || die "$DEST: the CSV files are not as expected after writing"
echo "fetch-diabetes: made $DEST/train.csv (354 rows) and test.csv (88 rows)" >&2
