#!/bin/sh
# test_data_errors.sh - trainers reject bad data files with exit status 1 and a
# message that names the file; gzipped data works.
#
# Uses trainers built from models/mlp.fnn ([784] inputs), models/mnist.fnn
# ([1,28,28] inputs) and tests/e2e/sigmoid_regression.fnn (CSV), on a small valid MNIST
# data set (the first 256 training and 100 test images) that each case copies
# and damages: missing files, truncated files and headers, bad magic numbers,
# label count mismatches, wrong image sizes, labels out of range, empty files,
# trailing bytes, zero images, directories, damaged gzip files, bad CSV rows.
# Then: gzipped copies of the data (only .gz files present) train exactly like
# the raw files.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
command -v gzip >/dev/null 2>&1 || fail "gzip is needed"
make_tmp
use_timeout 120

# The trainers.
for m in models/mlp models/mnist tests/e2e/sigmoid_regression; do
	t=${m##*/}
	t=${t#sigmoid_}
	bin/fnnc $m.fnn -o "$tmp/$t" >"$tmp/out" 2>"$tmp/err" ||
		fail "fnnc $m.fnn -o $tmp/$t: expected exit 0, got $?; $(tail -n 5 "$tmp/err")"
done

# The valid data set.
B=$tmp/base
make_mnist "$B" 256 100
TI=mnist/train-images-idx3-ubyte
TL=mnist/train-labels-idx1-ubyte
VI=mnist/t10k-images-idx3-ubyte
VL=mnist/t10k-labels-idx1-ubyte

ntest=0

# fresh NAME: a copy of the valid data set at $tmp/NAME; sets D.
fresh() {
	D=$tmp/$1
	rm -rf "$D"
	cp -R "$B" "$D"
}

# expect_bad TRAINER FILE WORD DESCRIPTION: `TRAINER --data $D --steps 2`
# exits 1 and its stderr names $D/FILE (FILE relative to the data dir, maybe
# with .gz) and contains WORD (case-insensitive; may be empty).
expect_bad() {
	trainer=$1 file=$2 word=$3 desc=$4
	ntest=$((ntest + 1))
	$TO "$tmp/$trainer" --data "$D" --steps 2 --quiet >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ $st -ne 1 ]; then
		problem "$desc: expected exit status 1 from the $trainer trainer, got $st; stderr: $(head -c 300 "$tmp/err")"
	elif ! grep -qF -- "$D/$file" "$tmp/err"; then
		problem "$desc: expected the message to name $D/$file, found: $(head -c 300 "$tmp/err")"
	elif [ -n "$word" ] && ! grep -qiF -- "$word" "$tmp/err"; then
		problem "$desc: expected the message to say '$word', found: $(head -c 300 "$tmp/err")"
	elif grep -qi -e 'internal error' -e 'sanitizer' "$tmp/err"; then
		problem "$desc: reported as an internal error: $(head -c 300 "$tmp/err")"
	else
		echo "ok: $desc: $(head -n 1 "$tmp/err")"
	fi
}

# expect_good TRAINER DESCRIPTION: `TRAINER --data $D --steps 2` exits 0.
expect_good() {
	ntest=$((ntest + 1))
	$TO "$tmp/$1" --data "$D" --steps 2 --quiet --log "$tmp/good.csv" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ $st -ne 0 ]; then
		problem "$2: expected exit status 0 from the $1 trainer, got $st; stderr: $(head -c 300 "$tmp/err")"
	else
		echo "ok: $2"
	fi
}

# The valid data set is valid.
fresh valid
expect_good mlp "the valid data set (mlp)"

# Missing files.
fresh missing_img
rm "$D/$TI"
expect_bad mlp "$TI" "cannot open" "missing training images"
fresh missing_lab
rm "$D/$TL"
expect_bad mlp "$TL" "cannot open" "missing training labels"
fresh missing_test
rm "$D/$VL"
expect_bad mlp "$VL" "cannot open" "missing test labels"
D=$tmp/no_such_dir
expect_bad mlp "$TI" "cannot open" "a data directory that does not exist"

# Truncated files.
fresh trunc_img
head -c $((16 + 256 * 784 - 100)) "$B/$TI" >"$D/$TI"
expect_bad mlp "$TI" "truncated" "training images missing their last 100 bytes"
fresh trunc_hdr
head -c 10 "$B/$TI" >"$D/$TI"
expect_bad mlp "$TI" "truncated" "an image file cut inside its header"
fresh trunc_lab
head -c $((8 + 200)) "$B/$TL" >"$D/$TL"
expect_bad mlp "$TL" "truncated" "a label file with 200 of 256 labels"
fresh trunc_test
head -c $((16 + 50 * 784)) "$B/$VI" >"$D/$VI"
expect_bad mlp "$VI" "truncated" "test images cut after 50 of 100"
fresh trailing
printf 'xyz' >>"$D/$TI"
expect_bad mlp "$TI" "trailing" "an image file with 3 extra bytes"

# Bad magic numbers.
fresh magic_img
{ be32 2049; tail -c +5 "$B/$TI"; } >"$D/$TI"
expect_bad mlp "$TI" "magic" "an image file with the label magic 2049"
fresh magic_lab
{ be32 12345; tail -c +5 "$B/$TL"; } >"$D/$TL"
expect_bad mlp "$TL" "magic" "a label file with magic 12345"
fresh swapped
cp "$B/$TL" "$D/$TI"
expect_bad mlp "$TI" "magic" "a label file in place of the images"
fresh text
echo "this is not an IDX file at all" >"$D/$TI"
expect_bad mlp "$TI" "magic" "a text file in place of the images"

# Label count mismatch: 255 labels (a consistent file) for 256 images.
fresh count
{ be32 2049; be32 255; tail -c +9 "$B/$TL" | head -c 255; } >"$D/$TL"
expect_bad mlp "$TL" "labels" "255 labels for 256 images"
fresh count_test
{ be32 2049; be32 101; tail -c +9 "$B/$VL"; printf '\001'; } >"$D/$VL"
expect_bad mlp "$VL" "labels" "101 test labels for 100 test images"

# Wrong image size: 256 images of 14x14 (every other pixel).
fresh small
{
	be32 2051
	be32 256
	be32 14
	be32 14
	tail -c +17 "$B/$TI" | head -c $((256 * 196))
} >"$D/$TI"
expect_bad mnist "$TI" "14x14" "14x14 images for the [1,28,28] CNN"
expect_bad mlp "$TI" "14x14" "14x14 images for the [784] MLP"
fresh small_test
{
	be32 2051
	be32 100
	be32 14
	be32 14
	tail -c +17 "$B/$VI" | head -c $((100 * 196))
} >"$D/$VI"
expect_bad mnist "$VI" "14x14" "14x14 test images for the [1,28,28] CNN"
fresh dims0
{ be32 2051; be32 256; be32 0; be32 0; } >"$D/$TI"
expect_bad mlp "$TI" "0x0" "images of 0x0 pixels"

# Labels out of range: the 3rd label is 10 (the model has classes 0..9).
fresh range
{ head -c 10 "$B/$TL"; printf '\012'; tail -c +12 "$B/$TL"; } >"$D/$TL"
[ "$(wc -c <"$D/$TL")" -eq $((8 + 256)) ] || fail "could not make the out-of-range label file"
expect_bad mlp "$TL" "range" "label 10 with 10 classes"
fresh range255
{ head -c $((8 + 99)) "$B/$VL"; printf '\377'; } >"$D/$VL"
expect_bad mlp "$VL" "range" "test label 255 with 10 classes"

# Empty files, and a data set of zero images.
fresh empty_img
: >"$D/$TI"
expect_bad mlp "$TI" "" "an empty image file"
fresh empty_lab
: >"$D/$TL"
expect_bad mlp "$TL" "" "an empty label file"
fresh zero
{ be32 2051; be32 0; be32 28; be32 28; } >"$D/$TI"
{ be32 2049; be32 0; } >"$D/$TL"
expect_bad mlp "$TI" "" "a training set of zero images"

# A directory where a file should be.
fresh dir
rm "$D/$TI"
mkdir "$D/$TI"
expect_bad mlp "$TI" "directory" "a directory in place of the images"

# A header that claims 4294967295 images: an error, without allocating it all.
fresh huge
{ be32 2051; be32 4294967295; be32 28; be32 28; tail -c +17 "$B/$TI"; } >"$D/$TI"
expect_bad mlp "$TI" "" "a header claiming 4294967295 images"

# Damaged gzip files.
fresh gz_trunc
gzip "$D/$TI"
sz=$(wc -c <"$D/$TI.gz")
head -c $((sz / 2)) "$D/$TI.gz" >"$tmp/half.gz"
mv "$tmp/half.gz" "$D/$TI.gz"
expect_bad mlp "$TI.gz" "" "a gzip file cut in half"
fresh gz_crc
gzip "$D/$TI"
sz=$(wc -c <"$D/$TI.gz")
# Zero the stored CRC-32 (the trailer's first 4 bytes).
{ head -c $((sz - 8)) "$D/$TI.gz"; printf '\000\000\000\000'; tail -c 4 "$D/$TI.gz"; } >"$tmp/crc.gz"
mv "$tmp/crc.gz" "$D/$TI.gz"
expect_bad mlp "$TI.gz" "" "a gzip file with a wrong CRC"
fresh gz_empty
rm "$D/$TL"
: | gzip >"$D/$TL.gz"
expect_bad mlp "$TL.gz" "" "a gzip file of nothing"
# Not checked here (see the report): a gzip file that lacks only its last few
# trailer bytes is accepted today, because all of its data decompresses.

# CSV (tests/e2e/sigmoid_regression.fnn: 8 features and 1 target per row).
mkdir -p "$tmp/csvbase/regression"
awk 'BEGIN { srand(3); for (i = 0; i < 40; i++) { s = 0
	for (j = 0; j < 8; j++) { x = 2 * rand() - 1; printf "%.4f,", x; s += x }
	printf "%.4f\n", 1 / (1 + exp(-s)) } }' >"$tmp/csvbase/regression/train.csv"
cp "$tmp/csvbase/regression/train.csv" "$tmp/csvbase/regression/test.csv"
RT=regression/train.csv
csv() {
	D=$tmp/$1
	rm -rf "$D"
	cp -R "$tmp/csvbase" "$D"
}
csv csv_valid
expect_good regression "the valid CSV data"
csv csv_word
sed '3s/^[^,]*,/0.5,abc,/' "$tmp/csvbase/$RT" >"$D/$RT"
expect_bad regression "$RT:3" "abc" "a CSV row with a word in it"
csv csv_short
sed '5s/,[^,]*$//' "$tmp/csvbase/$RT" >"$D/$RT"
expect_bad regression "$RT:5" "columns" "a CSV row with 8 columns instead of 9"
csv csv_long
sed '6s/$/,1/' "$tmp/csvbase/$RT" >"$D/$RT"
expect_bad regression "$RT:6" "columns" "a CSV row with 10 columns instead of 9"
csv csv_emptyfield
sed '4s/^[^,]*,/,/' "$tmp/csvbase/$RT" >"$D/$RT"
expect_bad regression "$RT:4" "empty" "a CSV row with an empty field"
csv csv_nan
sed '7s/^[^,]*,/nan,/' "$tmp/csvbase/$RT" >"$D/$RT"
expect_bad regression "$RT:7" "nan" "a CSV row with nan"
csv csv_empty
: >"$D/$RT"
expect_bad regression "$RT" "" "an empty CSV file"
csv csv_header_only
echo "a,b,c,d,e,f,g,h,t" >"$D/$RT"
expect_bad regression "$RT" "" "a CSV file with only a header"
csv csv_nul
printf '1,2,3,4,5,6,7,8,0.5\000\n' >>"$D/$RT"
expect_bad regression "$RT" "NUL" "a CSV file with a NUL byte"
csv csv_missing
rm "$D/regression/test.csv"
expect_bad regression "regression/test.csv" "cannot open" "a missing test CSV"
# A header and CRLF line ends are fine; so is a gzipped CSV.
csv csv_crlf
{ echo "a,b,c,d,e,f,g,h,t"; cat "$tmp/csvbase/$RT"; } | sed 's/$/\r/' >"$D/$RT"
expect_good regression "a CSV file with a header and CRLF line ends"
csv csv_gz
gzip "$D/$RT"
expect_good regression "a gzipped CSV file"

# Gzipped MNIST works and trains exactly like the raw files.
ntest=$((ntest + 1))
D=$tmp/gz
rm -rf "$D"
cp -R "$B" "$D"
gzip "$D"/mnist/*
for f in "$D"/mnist/*; do
	case $f in *.gz) ;; *) fail "gzip left a raw file $f" ;; esac
done
for t in mlp mnist; do
	$TO "$tmp/$t" --data "$B" --steps 3 --batch 32 --threads 1 --quiet --log "$tmp/raw.csv" >/dev/null 2>"$tmp/err" ||
		{ problem "$t on the raw data: exit $?; $(head -c 300 "$tmp/err")"; continue; }
	$TO "$tmp/$t" --data "$D" --steps 3 --batch 32 --threads 1 --quiet --log "$tmp/gz.csv" >/dev/null 2>"$tmp/err" ||
		{ problem "$t on gzipped data: expected exit 0, got $?; $(head -c 300 "$tmp/err")"; continue; }
	if [ "$(cut -d, -f1-5 "$tmp/raw.csv")" != "$(cut -d, -f1-5 "$tmp/gz.csv")" ]; then
		problem "$t: expected the same metrics from gzipped and raw data; raw: $(tail -n 1 "$tmp/raw.csv"), gz: $(tail -n 1 "$tmp/gz.csv")"
	else
		echo "ok: $t trains on gzipped data: $(tail -n 1 "$tmp/gz.csv")"
	fi
done
# A raw file wins over a .gz next to it.
fresh both
echo "garbage" | gzip >"$D/$TI.gz"
expect_good mlp "a raw file next to a damaged .gz of the same name"

end_if_problems
echo "PASS: $ntest data checks"
