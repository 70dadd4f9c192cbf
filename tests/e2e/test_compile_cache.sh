#!/bin/sh
# test_compile_cache.sh - the compile cache (compiler/cache.c).
#
# A second compilation of the same model reads every part's object from the
# cache (FNNC_TIME=1 counts them), trains to the same losses bit for bit, and
# builds the same trainer byte for byte. Damaged entries (cut, one byte
# flipped, a garbage key, an empty file, a directory in a file's place) are
# misses: the run still succeeds with the same losses, and the entries are
# written again. A cache directory that is a file, or that others may write
# to, or FNNC_CACHE=off, leaves compilation as it was. A changed model misses.
# Two compilations at once both succeed. FNNC_CACHE_MB bounds the size, the
# least recently used files going first. The default place is
# $HOME/.cache/fnnc.
. "$(dirname "$0")/lib.sh"

need_fnnc
need_mnist
make_tmp
use_timeout 60
make_mnist "$tmp/d" 640 64
unset XDG_CACHE_HOME
C=$tmp/cache
export FNNC_CACHE="$C"

# run_mlp NAME [MODEL]: 10 steps of MODEL (models/mlp.fnn) on one thread;
# stderr in $tmp/NAME.err, the log's losses in $tmp/NAME.loss; sets hits and
# parts from FNNC_TIME's line for the training step.
run_mlp() {
	model=${2:-models/mlp.fnn}
	FNNC_TIME=1 $TO bin/fnnc run "$model" --data "$tmp/d" --steps 10 --threads 1 --quiet --log "$tmp/$1.csv" \
		>"$tmp/$1.out" 2>"$tmp/$1.err"
	st=$?
	[ $st -eq 0 ] || problem "$1: expected exit 0, got $st; stderr: $(grep -v '^fnnc: ' "$tmp/$1.err" | head -c 300)"
	cut -d, -f1-5 "$tmp/$1.csv" >"$tmp/$1.loss" 2>/dev/null
	line=$(grep 'code generation of fnn_train_step' "$tmp/$1.err")
	parts=$(echo "$line" | sed -n 's/.*(\([0-9]*\) parts\{0,1\} on.*/\1/p')
	hits=$(echo "$line" | sed -n 's/.*, \([0-9]*\) from the compile cache.*/\1/p')
	[ -z "$(grep -v '^fnnc: ' "$tmp/$1.err")" ] || problem "$1: unexpected stderr: $(grep -v '^fnnc: ' "$tmp/$1.err" | head -c 300)"
}

same_losses() {
	cmp -s "$tmp/cold.loss" "$tmp/$1.loss" || problem "$1: the losses differ from the cold run's: $(diff "$tmp/cold.loss" "$tmp/$1.loss" | head -5)"
}

# expect_hits NAME WANT: WANT is "all", "none" or "some" (at least one missed, not all).
expect_hits() {
	case "$2" in
	all) [ -n "$hits" ] && [ "$hits" = "$parts" ] || problem "$1: expected all $parts parts from the cache, got '${hits}'" ;;
	none) [ "$hits" = 0 ] || problem "$1: expected no part from the cache, got '${hits}'" ;;
	some) [ -n "$hits" ] && [ "$hits" -lt "$parts" ] || problem "$1: expected a miss, got '${hits}' of $parts from the cache" ;;
	esac
}

# Cold, then warm.
run_mlp cold
expect_hits cold none
[ -n "$parts" ] && [ "$parts" -gt 1 ] || problem "cold: expected several parts, FNNC_TIME said: $(grep 'code generation' "$tmp/cold.err")"
[ "$(ls "$C"/*.key 2>/dev/null | wc -l)" -eq 1 ] || problem "cold: expected one key file in $C, found: $(ls "$C")"
[ "$(ls "$C"/*.o 2>/dev/null | wc -l)" -ge "$parts" ] || problem "cold: expected at least $parts objects in $C, found: $(ls "$C")"
run_mlp warm
expect_hits warm all
same_losses warm
# The evaluation step's parts were cached too: a warm run compiles nothing.
grep 'LLVM optimisation + code generation' "$tmp/warm.err" | while read -r l; do
	n=$(echo "$l" | sed -n 's/.*(\([0-9]*\) parts\{0,1\} on.*/\1/p')
	echo "$l" | grep -q ", $n from the compile cache" || echo "$l"
done >"$tmp/compiled"
[ -s "$tmp/compiled" ] && problem "warm: something was compiled: $(cat "$tmp/compiled")"
echo "ok: a second run reads all $parts parts from the cache, same losses"

# Damaged entries: each is a miss, the run is right, the entry comes back.
obj=$(ls "$C"/*.o | head -1)
key=$(ls "$C"/*.key)
damage() {
	what=$1
	run_mlp "$what"
	expect_hits "$what" "$2"
	same_losses "$what"
	run_mlp "$what.again"
	expect_hits "$what.again" all
	same_losses "$what.again"
}
size=$(wc -c <"$obj")
head -c $((size / 2)) "$obj" >"$tmp/half" && cp "$tmp/half" "$obj"
damage cut some
printf '\377' | dd of="$obj" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
damage flipped some
: >"$obj"
damage empty some
printf 'GARBAGE!' | dd of="$key" bs=1 seek=0 conv=notrunc 2>/dev/null
damage garbage_key some
head -c 100 "$key" >"$tmp/k" && cp "$tmp/k" "$key"
damage short_key some
rm -f "$obj" && mkdir "$obj"
run_mlp dir_in_place
expect_hits dir_in_place some
same_losses dir_in_place
rmdir "$obj"
rm -f "$obj" && mkfifo "$obj"
run_mlp fifo
expect_hits fifo some
same_losses fifo
rm -f "$obj"
# A symbolic link to a good object is not followed.
run_mlp refill
cp "$obj" "$tmp/good.o" && rm -f "$obj" && ln -s "$tmp/good.o" "$obj"
run_mlp symlink
expect_hits symlink some
same_losses symlink
rm -f "$obj"
# Another part's object in this one's place, whole and well formed.
run_mlp refill
second=$(ls "$C"/*.o | sed -n 2p)
cp "$second" "$obj"
damage swapped some
# A huge file (sparse) is not read.
truncate -s 3G "$obj" 2>/dev/null || dd if=/dev/zero of="$obj" bs=1 count=0 seek=3G 2>/dev/null
t0=$(date +%s)
damage huge some
[ $(($(date +%s) - t0)) -lt 30 ] || problem "huge: a 3 GB entry took $(($(date +%s) - t0)) s"
echo "ok: damaged entries are misses, rewritten"

# Whatever else goes into the code is in the key: the target CPU, the cut, LLVM's options.
export FNNC_CPU=x86-64
run_mlp cpu
expect_hits cpu none
unset FNNC_CPU
export FNNC_COMPILE_THREADS=0
run_mlp nosplit
expect_hits nosplit none
unset FNNC_COMPILE_THREADS
export FNNC_LLVM_ARGS=-enable-misched=false
run_mlp llvm_args
expect_hits llvm_args none
unset FNNC_LLVM_ARGS
run_mlp back
expect_hits back all
same_losses back
echo "ok: another CPU, cut or LLVM option misses"

# A changed model misses.
sed 's/dense(128)/dense(96)/' models/mlp.fnn >"$tmp/mlp96.fnn"
run_mlp changed "$tmp/mlp96.fnn"
expect_hits changed none
cmp -s "$tmp/cold.loss" "$tmp/changed.loss" && problem "changed: a narrower layer gave the same losses"
echo "ok: a changed model is compiled"

# No cache: a file in the directory's place, a directory others may write to, off.
: >"$tmp/afile"
FNNC_CACHE="$tmp/afile"
run_mlp file_as_dir
[ -z "$hits" ] || problem "file_as_dir: expected no cache, FNNC_TIME said '$hits' from it"
same_losses file_as_dir
mkdir -p "$tmp/open" && chmod 777 "$tmp/open"
FNNC_CACHE="$tmp/open"
run_mlp open_dir
grep -q "warning: not using the compile cache '$tmp/open': others may write to it" "$tmp/open_dir.err" ||
	problem "open_dir: expected a warning, stderr: $(head -c 300 "$tmp/open_dir.err")"
[ -z "$(ls "$tmp/open")" ] || problem "open_dir: files were written to a directory others may write to"
mkdir -p "$tmp/home"
HOME="$tmp/home" FNNC_CACHE=off
run_mlp off
[ -z "$hits" ] || problem "off: expected no cache, FNNC_TIME said '$hits' from it"
[ -e "$tmp/home/.cache" ] && problem "off: $tmp/home/.cache was made"
same_losses off
FNNC_CACHE="$C"
echo "ok: no cache where there should be none"

# The default place.
(nfail=0; unset FNNC_CACHE; run_mlp home; [ "$hits" = 0 ] || echo "hits $hits" >"$tmp/home.bad"; exit "$nfail")
[ $? -eq 0 ] || problem "home: the run failed"
[ -e "$tmp/home.bad" ] && problem "home: expected a cold cache, $(cat "$tmp/home.bad")"
[ "$(ls "$tmp/home/.cache/fnnc"/*.key 2>/dev/null | wc -l)" -eq 1 ] ||
	problem "home: expected the cache in $tmp/home/.cache/fnnc, found: $(ls -R "$tmp/home" | head -5)"
echo "ok: the default cache is \$HOME/.cache/fnnc"

# Built trainers: the same bytes from a cold and a warm cache.
rm -rf "$C"
$TO bin/fnnc models/mlp.fnn -o "$tmp/t_cold" || problem "building a trainer (cold cache) failed"
$TO bin/fnnc models/mlp.fnn -o "$tmp/t_warm" || problem "building a trainer (warm cache) failed"
FNNC_CACHE=off $TO bin/fnnc models/mlp.fnn -o "$tmp/t_none" || problem "building a trainer (no cache) failed"
cmp -s "$tmp/t_cold" "$tmp/t_warm" || problem "the trainers built with a cold and a warm cache differ"
cmp -s "$tmp/t_cold" "$tmp/t_none" || problem "the trainers built with and without the cache differ"
echo "ok: trainers are the same with and without the cache"

# Two compilations at once, into a cold cache and then into a cache that has
# half of the objects (one reads while the other writes).
two_at_once() {
	(nfail=0; run_mlp "$1"1; echo "$nfail" >"$tmp/$1.status") &
	pid=$!
	run_mlp "$1"2
	wait $pid
	[ "$(cat "$tmp/$1.status" 2>/dev/null)" = 0 ] || problem "$1: the first of two simultaneous runs failed"
	same_losses "$1"1
	same_losses "$1"2
	run_mlp "$1"_after
	expect_hits "$1"_after all
	ls "$C" | grep -q '\.tmp$' && problem "$1: temporary files left in the cache: $(ls "$C")"
}
rm -rf "$C"
two_at_once cold_both
for f in $(ls "$C"/*.o | sed -n '1~2p'); do rm -f "$f"; done
two_at_once half_both
echo "ok: two compilations at once"

# A cache directory reached through a symbolic link is used.
ln -s "$C" "$tmp/link"
FNNC_CACHE="$tmp/link"
run_mlp via_link
expect_hits via_link all
FNNC_CACHE="$C"
# fnnc check is cached too.
for i in 1 2; do
	FNNC_TIME=1 $TO bin/fnnc check tests/gradcheck/model_mlp.fnn >/dev/null 2>"$tmp/check$i.err" ||
		problem "fnnc check (run $i) failed: $(grep -v '^fnnc: ' "$tmp/check$i.err" | head -c 300)"
done
grep 'code generation of' "$tmp/check2.err" | grep -q ', 0 from the compile cache' &&
	problem "fnnc check: the second run compiled again: $(grep 'code generation of' "$tmp/check2.err")"
echo "ok: a linked cache directory, fnnc check"

# The size bound: 25 models (about 80 KB each) into a 1 MB cache.
rm -rf "$C"
for w in $(seq 24 4 120); do
	sed "s/dense(128)/dense($w)/" models/mlp.fnn >"$tmp/w$w.fnn"
	FNNC_CACHE_MB=1 $TO bin/fnnc run "$tmp/w$w.fnn" --steps 0 --quiet || problem "width $w: fnnc run failed"
done
kb=$(($(cat "$C"/* | wc -c) / 1024))
[ "$kb" -le 1024 ] || problem "FNNC_CACHE_MB=1: the cache holds $kb KB"
[ "$(ls "$C"/*.key | wc -l)" -lt 25 ] || problem "FNNC_CACHE_MB=1: nothing was dropped ($(ls "$C"/*.key | wc -l) keys)"
FNNC_TIME=1 FNNC_CACHE_MB=1 $TO bin/fnnc run "$tmp/w120.fnn" --steps 0 --quiet 2>"$tmp/last.err"
grep 'code generation of fnn_train_step' "$tmp/last.err" | grep -q ', 0 from the compile cache' &&
	problem "FNNC_CACHE_MB=1: the model compiled last was dropped"
echo "ok: FNNC_CACHE_MB=1 keeps the cache at $kb KB, the newest entries"

end_if_problems
echo "PASS: the compile cache"
