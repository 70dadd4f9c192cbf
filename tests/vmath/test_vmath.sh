#!/bin/sh
# test_vmath.sh: the inline exp, log, tanh and sigmoid of compiler/vmath.c.
#
# 1. Builds tests/vmath/test_vmath.c against compiler/vmath.c and
#    compiler/backend.c and runs it: the max ulp error of each function over a
#    sweep of all floats and the special values, packed FMA and no calls in
#    the loops. Once for the host CPU (zmm on AVX-512 parts) and once for
#    x86-64-v3 (AVX2: ymm).
# 2. Compiles a tiny model that uses every one of them (and softmax with
#    cross-entropy) with bin/fnnc --emit=asm: no expf/logf calls are left,
#    while FNNC_LIBM=1 (the libm path bench/run.sh compares with) has them.
# Run from the repository root. Work files go to build/tests/vmath/.
set -eu
cd "$(dirname "$0")/../.."
LLVM_CONFIG=${LLVM_CONFIG:-llvm-config-19}
CC=${CC:-cc}
out=build/tests/vmath
mkdir -p "$out"

llvm_cflags=$($LLVM_CONFIG --cflags | sed 's/-std=[^ ]*//')
llvm_libs=$($LLVM_CONFIG --ldflags --libs)
# shellcheck disable=SC2086
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wno-unused-parameter -Werror -O2 -g \
	$llvm_cflags -Icompiler -Iruntime -Itests -o "$out/test_vmath" \
	tests/vmath/test_vmath.c compiler/vmath.c compiler/backend.c compiler/cache.c compiler/util.c \
	$llvm_libs -lm -lpthread

echo "== host CPU"
"$out/test_vmath"
echo "== x86-64-v3"
FNNC_CPU=x86-64-v3 "$out/test_vmath"

echo "== bin/fnnc --emit=asm"
[ -x bin/fnnc ] || { echo "FAIL: bin/fnnc is missing: run make"; exit 1; }
cat >"$out/act.fnn" <<'END'
model act {
    input  x: [40]
    target y: class(10)
    h = x -> dense(64) -> tanh
    g = x -> dense(64) -> sigmoid
    e = exp(h * 0.5) + log(g + 1)
    logits = (h + e) -> dense(10)
    loss cross_entropy(logits, y)
}
optimizer adam(lr=0.001)
END
bin/fnnc "$out/act.fnn" --emit=asm >"$out/act.s"
FNNC_LIBM=1 bin/fnnc "$out/act.fnn" --emit=asm >"$out/act_libm.s"
calls() { grep -cE 'call[a-z]*[[:space:]]+_?(exp|log)f' "$1" || true; }
n=$(calls "$out/act.s")
nl=$(calls "$out/act_libm.s")
echo "expf/logf calls: $n inline, $nl with FNNC_LIBM=1"
[ "$n" -eq 0 ] || { echo "FAIL: $out/act.s still calls expf or logf"; exit 1; }
[ "$nl" -gt 0 ] || { echo "FAIL: FNNC_LIBM=1 did not bring back the libm calls"; exit 1; }
packed=$(grep -cE 'vfmadd[0-9]+ps[[:space:]].*%[yz]mm' "$out/act.s" || true)
echo "packed FMA instructions: $packed"
[ "$packed" -gt 0 ] || { echo "FAIL: no packed FMA in $out/act.s"; exit 1; }
echo "test_vmath: all ok"
