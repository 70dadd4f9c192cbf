#!/bin/sh
# tests/runtime/run.sh - tests of the runtime library (runtime/*.c) through
# test doubles of a compiled model (fixture.c, aot_double.c): flag errors, the
# descriptor, IDX and CSV loading and their errors, logging, output modes,
# the normalisation of a gathered batch (batch_bytes.c), the thread pool
# (pool_stress.c, and its balanced shares, pool_split.c: both also under
# ThreadSanitizer),
# determinism, a real training run, and the gradient check.
#
# Prints "PASS name" / "FAIL name: why" per case and ends with "N passed, N failed";
# exits 1 if anything failed. Needs real MNIST under data/mnist (fetched here).
# With RT_SAN set (e.g. RT_SAN="-fsanitize=address,undefined"), the runtime is
# compiled from source with those flags instead of linking build/libfnnrt.a.
#
# shellcheck disable=SC2015 # "A && pass || fail": pass never fails
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1

make -s build/libfnnrt.a build/runtime/aot_main.o || exit 1
sh scripts/fetch-mnist.sh data || exit 1

T=$(mktemp -d "${TMPDIR:-/tmp}/fnnrt-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM

CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -O2 -Iruntime"
LIB=build/libfnnrt.a
AOT=build/runtime/aot_main.o
if [ -n "${RT_SAN:-}" ]; then
	CFLAGS="$CFLAGS -g $RT_SAN"
	LIB=
	for f in runtime/*.c; do
		[ "$f" = runtime/aot_main.c ] || LIB="$LIB $f"
	done
	AOT=runtime/aot_main.c
fi
# shellcheck disable=SC2086
cc $CFLAGS tests/runtime/fixture.c $LIB -lz -lm -lpthread -o "$T/fixture" || exit 1
# shellcheck disable=SC2086
cc $CFLAGS -Wno-unused-parameter tests/runtime/aot_double.c $AOT $LIB -lz -lm -lpthread -o "$T/stub" || exit 1
F=$T/fixture

npass=0
nfail=0
pass() {
	echo "PASS $1"
	npass=$((npass + 1))
}
fail() {
	echo "FAIL $1: $2"
	sed 's/^/    | /' "$T/out" "$T/err" | head -n 8
	nfail=$((nfail + 1))
}

# run CMD...: runs it with stdout in $T/out, stderr in $T/err, status in $rc.
run() {
	"$@" >"$T/out" 2>"$T/err"
	rc=$?
}

# expect NAME STATUS TEXT CMD...: CMD exits with STATUS and its output holds TEXT.
expect() {
	name=$1 want=$2 text=$3
	shift 3
	run "$@"
	if [ "$rc" -ne "$want" ]; then
		fail "$name" "exit status $rc, expected $want"
	elif [ -n "$text" ] && ! cat "$T/out" "$T/err" | grep -qF -- "$text"; then
		fail "$name" "output lacks '$text'"
	else
		pass "$name"
	fi
}

# has NAME FILE TEXT: FILE holds TEXT.
has() {
	if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1" "$(basename "$2") lacks '$3'"; fi
}

#
# A gathered IDX batch: every byte value normalised exactly as defined (in
# double, rounded to float), whichever conversion path this CPU takes.
#
# shellcheck disable=SC2086
if cc $CFLAGS tests/runtime/batch_bytes.c $LIB -lz -lm -lpthread -o "$T/batch_bytes" 2>"$T/err"; then
	mkdir -p "$T/bytes"
	expect batch_bytes_normalised 0 "ok:" "$T/batch_bytes" "$T/bytes"
else
	fail batch_bytes_normalised "tests/runtime/batch_bytes.c did not compile"
fi

# pool_case SRC NAME TSAN_NAME: SRC (a program that prints "ok:") built
# against the runtime and run as NAME, then built with pool.c alone under
# ThreadSanitizer and run as TSAN_NAME.
pool_case() {
	# shellcheck disable=SC2086
	if cc $CFLAGS "$1" $LIB -lz -lm -lpthread -o "$T/$2" 2>"$T/err"; then
		expect "$2" 0 "ok:" "$T/$2"
	else
		fail "$2" "$1 did not compile"
	fi
	if cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -O1 -g -fsanitize=thread -Iruntime \
		"$1" runtime/pool.c -lm -lpthread -o "$T/$3" 2>"$T/err"; then
		expect "$3" 0 "ok:" env TSAN_OPTIONS=halt_on_error=1 "$T/$3"
	else
		fail "$3" "$1 did not compile with -fsanitize=thread"
	fi
}

#
# The thread pool: every task of every call exactly once, with the workers
# polling or asleep, every worker taking part, over changing thread counts;
# and again under ThreadSanitizer (pool.c from source; a smoke test of the
# tasks' data hand-over, see pool_stress.c).
pool_case tests/runtime/pool_stress.c pool_every_task_once pool_no_data_race

# The balanced shares of one-block-per-thread kernels (pool_split.c): the
# cuts, balancing towards a slower thread, equal shares kept for uneven
# blocks, fixed weights; and the same under ThreadSanitizer (the threads'
# task times and work are handed to the caller).
pool_case tests/runtime/pool_split.c pool_balanced_shares pool_shares_no_data_race

#
# Flags
#
expect flag_bad_number 1 "error: '--epochs' needs a whole number, got 'abc'" "$F" linear run --epochs abc
expect flag_bad_real 1 "error: '--lr' needs a number, got '0.1x'" "$F" linear run --lr 0.1x
expect flag_unknown_hint 1 "hint: did you mean '--epochs'?" "$F" linear run --epoch 3
has flag_unknown_names_it "$T/err" "error: unknown flag '--epoch'"
expect flag_missing_value 1 "error: '--lr' needs a value" "$F" linear run --lr
expect flag_value_is_flag 1 "error: '--batch' needs a value" "$F" linear run --batch --quiet
expect flag_batch_zero 1 "error: '--batch' must be at least 1, got 0" "$F" linear run --batch 0
expect flag_lr_negative 1 "error: '--lr' must be greater than 0, got -1" "$F" linear run --lr -1
expect flag_threads_zero 1 "error: '--threads' must be at least 1" "$F" linear run --threads 0
expect flag_steps_negative 1 "error: '--steps' must be at least 0" "$F" linear run --steps -2
expect flag_positional 1 "error: unexpected argument 'extra'" "$F" linear run extra
expect flag_equals_form 0 "" "$F" linear run --epochs=1 --steps=0 --threads=2 --lr=0.5
expect flag_help 0 "--steps N" "$F" linear run --help
expect flag_prog_name 1 "$F: error:" "$F" linear run --bogus

#
# Descriptor and set-up
#
expect desc_malformed 1 "fnn: internal error: bad model descriptor line 10" "$F" bad run --steps 0
expect steps0_no_data 0 "set up" "$F" linear run --steps 0 --data "$T/nowhere"
[ ! -e "$T/nowhere" ] && [ ! -s "$T/err" ] && pass steps0_quiet_stderr || fail steps0_quiet_stderr "stderr not empty"
expect no_train_data 1 "has no training data" "$F" nodata run
expect aot_main_links 0 "stub: 7850 parameters" "$T/stub" --steps 0
expect aot_main_trains 0 "stopped at step 3" "$T/stub" --steps 3 --data data

#
# IDX data: small sets cut from the real files
#
# be32 N: N as 4 big-endian bytes.
be32() {
	for s in 24 16 8 0; do
		# shellcheck disable=SC2059
		printf "\\$(printf %03o $((($1 >> s) & 255)))"
	done
}
# images N ROWS COLS SRC: an IDX image file of the first N*ROWS*COLS pixels of SRC.
images() {
	be32 2051
	be32 "$1"
	be32 "$2"
	be32 "$3"
	tail -c +17 "$4" | head -c $(($1 * $2 * $3))
}
# labels N SRC: an IDX label file of the first N labels of SRC.
labels() {
	be32 2049
	be32 "$1"
	tail -c +9 "$2" | head -c "$1"
}
M=data/mnist
# mkset DIR: a valid small set (train 300, test 100) under DIR/mnist.
mkset() {
	mkdir -p "$1/mnist"
	images 300 28 28 $M/train-images-idx3-ubyte >"$1/mnist/train-images-idx3-ubyte"
	labels 300 $M/train-labels-idx1-ubyte >"$1/mnist/train-labels-idx1-ubyte"
	images 100 28 28 $M/t10k-images-idx3-ubyte >"$1/mnist/t10k-images-idx3-ubyte"
	labels 100 $M/t10k-labels-idx1-ubyte >"$1/mnist/t10k-labels-idx1-ubyte"
}
S=$T/small
mkset "$S"
TI=mnist/train-images-idx3-ubyte
TL=mnist/train-labels-idx1-ubyte

expect idx_small_ok 0 "epoch 2/2  train_loss" "$F" linear run --data "$S"
expect idx_missing_file 1 "$T/empty/$TI: cannot open: no such file" "$F" linear run --data "$T/empty"
has idx_missing_hint "$T/err" "hint: data files resolve against --data DIR"

mkdir -p "$T/gz/mnist"
for f in "$S"/mnist/*; do gzip -c "$f" >"$T/gz/mnist/$(basename "$f").gz"; done
expect idx_gz_fallback 0 "epoch 2/2" "$F" linear run --data "$T/gz"

cp -r "$S" "$T/trunc"
head -c 100000 "$S/$TI" >"$T/trunc/$TI"
expect idx_truncated 1 "$T/trunc/$TI: truncated: expected 235216 bytes" "$F" linear run --data "$T/trunc"

cp -r "$T/gz" "$T/truncgz"
rm "$T/truncgz/$TI.gz"
head -c 100000 "$S/$TI" | gzip -c >"$T/truncgz/$TI.gz"
expect idx_truncated_gz 1 "$T/truncgz/$TI.gz: truncated: expected 235200 bytes of data" "$F" linear run --data "$T/truncgz"

cp -r "$T/gz" "$T/cutgz"
head -c 3000 "$T/gz/$TI.gz" >"$T/cutgz/$TI.gz"
expect idx_damaged_gz 1 "$T/cutgz/$TI.gz: " "$F" linear run --data "$T/cutgz"

cp -r "$S" "$T/trail"
printf 'xyz' >>"$T/trail/$TL"
expect idx_trailing 1 "$T/trail/$TL: trailing bytes: expected 308 bytes" "$F" linear run --data "$T/trail"

cp -r "$S" "$T/magic"
{ be32 2049; tail -c +5 "$S/$TI"; } >"$T/magic/$TI"
expect idx_bad_magic 1 "$T/magic/$TI: expected IDX image magic 2051 (0x00000803), found 2049" "$F" linear run --data "$T/magic"

cp -r "$S" "$T/count"
labels 299 $M/train-labels-idx1-ubyte >"$T/count/$TL"
expect idx_label_count 1 "$T/count/$TL: expected 300 labels to match the images, found 299" "$F" linear run --data "$T/count"

cp -r "$S" "$T/dims"
images 300 27 29 $M/train-images-idx3-ubyte >"$T/dims/$TI"
expect idx_wrong_dims 1 "$T/dims/$TI: the images are 27x29, but the model input is [1,28,28]" "$F" linear run --data "$T/dims"

cp -r "$S" "$T/range"
{ be32 2049; be32 300; printf '\012'; tail -c +10 "$S/$TL"; } >"$T/range/$TL"
expect idx_label_range 1 "$T/range/$TL: label 10 of sample 0 is out of range: the model has 10 classes" "$F" linear run --data "$T/range"

expect idx_flat_input 0 "epoch 2/2" "$F" flat run --data "$S"
expect idx_empty_file 1 "found a file of 0 bytes" sh -c ": >'$T/trunc/$TI' && exec \"\$0\" linear run --data '$T/trunc'" "$F"

#
# Logging and output
#
expect log_runs 0 "" "$F" linear run --data "$S" --log "$T/log.csv" --quiet
header=$(head -n 1 "$T/log.csv")
[ "$header" = "epoch,step,train_loss,test_loss,test_acc,images_per_s,elapsed_s" ] && pass log_header ||
	fail log_header "header is '$header'"
rows=$(awk -F, 'NR > 1 && NF == 7 && $4 != "" && $5 >= 0 && $5 <= 1' "$T/log.csv" | wc -l)
[ "$rows" -eq 2 ] && [ "$(wc -l <"$T/log.csv")" -eq 3 ] && pass log_rows || fail log_rows "$rows good rows"
steps=$(awk -F, 'NR > 1 { print $2 }' "$T/log.csv" | tr '\n' ' ')
[ "$steps" = "5 10 " ] && pass log_steps || fail log_steps "steps '$steps', expected '5 10 '"
[ ! -s "$T/out" ] && [ ! -s "$T/err" ] && pass quiet_silent || fail quiet_silent "--quiet printed something"

expect log_early_stop 0 "stopped at step 7" "$F" linear run --data "$S" --epochs 3 --steps 7 --log "$T/log2.csv"
last=$(tail -n 1 "$T/log2.csv" | cut -d, -f1,2)
[ "$last" = "2,7" ] && [ "$(wc -l <"$T/log2.csv")" -eq 3 ] && pass log_early_stop_row || fail log_early_stop_row "last row '$last'"

expect log_bad_path 1 "cannot write the log file '$T/no/such/dir/log.csv'" "$F" linear run --data "$S" --log "$T/no/such/dir/log.csv"

run "$F" linear run --data "$S" --epochs 1
if grep -q "$(printf '\r')" "$T/err" || [ -s "$T/err" ]; then fail piped_no_bar "stderr has output"; else pass piped_no_bar; fi
grep -Eq '^epoch 1/1  train_loss [0-9.]+  test_loss [0-9.]+  test_acc [0-9.]+%  [0-9]+ img/s  [0-9.]+s$' "$T/out" &&
	pass epoch_line_format || fail epoch_line_format "unexpected epoch line"

if command -v script >/dev/null 2>&1; then
	script -qc "'$F' linear run --data '$S' --epochs 1" /dev/null >"$T/tty" 2>&1
	grep -q "ETA" "$T/tty" && pass tty_progress_bar || fail tty_progress_bar "no progress bar on a terminal"
	script -qc "'$F' linear run --data '$S' --epochs 1 --quiet" /dev/null >"$T/tty" 2>&1
	[ ! -s "$T/tty" ] && pass tty_quiet || fail tty_quiet "--quiet printed on a terminal"
fi

#
# Determinism: the same seed gives the same losses; another seed does not.
#
losses() { "$F" linear run --data "$S" --epochs 2 "$@" | sed 's/  [0-9]* img\/s.*//'; }
a=$(losses --seed 5)
b=$(losses --seed 5)
c=$(losses --seed 6)
[ -n "$a" ] && [ "$a" = "$b" ] && pass same_seed_same_run || fail same_seed_same_run "'$a' vs '$b'"
[ "$a" != "$c" ] && pass other_seed_other_run || fail other_seed_other_run "identical"

#
# CSV data
#
mkdir -p "$T/csv/tiny"
{
	echo "f1,f2,f3,f4,label"
	i=0
	while [ $i -lt 30 ]; do
		printf '%d.5, %d,-1e-1,%d,%d\r\n' $((i % 7)) $((i % 3)) "$i" $((i % 3))
		i=$((i + 1))
	done
	echo
} >"$T/csv/tiny/train.csv"
printf '1,2,3,4,0\n5,6,7,8,2\n' >"$T/csv/tiny/test.csv"
expect csv_loads 0 "test_acc" "$F" csv run --data "$T/csv" --lr 0.01 --batch 8
printf '1,2,3,4,0\n5,6,7,2\n' >"$T/csv/tiny/test.csv"
expect csv_columns 1 "$T/csv/tiny/test.csv:2: expected 5 columns (4 features + 1 class), found 4" "$F" csv run --data "$T/csv"
printf '1,2,3,4,0\n5,6,x,8,2\n' >"$T/csv/tiny/test.csv"
expect csv_number 1 "$T/csv/tiny/test.csv:2: column 3: expected a number, found 'x'" "$F" csv run --data "$T/csv"
printf '1,2,3,4,3\n' >"$T/csv/tiny/test.csv"
expect csv_class_range 1 "$T/csv/tiny/test.csv:1: expected a class in 0..2 in column 5, found 3" "$F" csv run --data "$T/csv"

i=0
while [ $i -lt 20 ]; do
	echo "$i,$((i % 5)),0.5,$((i % 2)).25,-$i"
	i=$((i + 1))
done >"$T/csv/tiny/reg_train.csv"
cp "$T/csv/tiny/reg_train.csv" "$T/csv/tiny/reg_test.csv"
expect csv_regression 0 "test_loss" "$F" reg run --data "$T/csv" --lr 0.001 --log "$T/reg.csv"
if grep -q test_acc "$T/out"; then fail regression_no_acc "prints an accuracy"; else pass regression_no_acc; fi
acc=$(tail -n 1 "$T/reg.csv" | cut -d, -f5)
[ -z "$acc" ] && pass regression_log_empty_acc || fail regression_log_empty_acc "test_acc column is '$acc'"

#
# A real run: softmax regression on all of MNIST learns.
#
expect mnist_learns 0 "test_acc" "$F" linear run --epochs 1
acc=$(sed -n 's/.*test_acc \([0-9]*\)\..*/\1/p' "$T/out")
[ "${acc:-0}" -ge 88 ] && pass mnist_accuracy || fail mnist_accuracy "test_acc ${acc:-?}%"

#
# Gradient check
#
expect check_linear_ok 0 "ok: all 2 parameters" "$F" linear check
has check_line_format "$T/out" "fc.weight  [10,784]  max rel err"
expect check_regression_ok 0 "ok: all 2 parameters" "$F" reg check
# The ReLU MLP: kinks, at several batch sizes and seeds.
for b in 1 4 32; do
	for s in 1 2 3; do
		expect "check_mlp_ok_b${b}_s$s" 0 "ok: all 4 parameters" "$F" mlp check --batch $b --seed $s
	done
done
# Deliberately wrong gradients must FAIL.
for m in linear mlp; do
	for bug in sign factor swap; do
		for s in 1 2; do
			expect "check_${m}_${bug}_bug_s$s" 1 "FAIL" env FIXTURE_BUG=$bug "$F" $m check --seed $s
		done
	done
done
has check_fail_names_param "$T/out" "fc1.weight"
# Dense kinks and small gradients: some parameters may be "not checked", but
# nothing is a false FAIL.
for s in 1 2; do
	expect "check_mlp_b256_s$s" 0 "ok:" "$F" mlp check --batch 256 --seed $s
done
expect check_bad_flag 1 "hint: did you mean '--tol'?" "$F" linear check --toll 1e-3
expect check_bad_tol 1 "'--tol' needs a number" "$F" linear check --tol x
expect check_help 0 "--tol X" "$F" linear check --help

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
