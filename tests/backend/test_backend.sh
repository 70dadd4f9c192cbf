#!/bin/sh
# test_backend.sh: builds and runs tests/backend/test_backend.c against
# compiler/backend.c (O3 + vectorizer, the module split for parallel
# compilation, JIT, asm, AOT link), then again under ASan+UBSan with leak
# checking when the C compiler supports it.
# Run from the repository root. Work files go to build/tests/backend/.
set -eu
LLVM_CONFIG=${LLVM_CONFIG:-llvm-config-19}
CC=${CC:-cc}
out=build/tests/backend
mkdir -p "$out/stub/runtime"
stub=$(cd "$out/stub" && pwd)

llvm_cflags=$($LLVM_CONFIG --cflags | sed 's/-std=[^ ]*//')
llvm_libs=$($LLVM_CONFIG --ldflags --libs)

# The stand-in runtime aot_build links with.
$CC -std=c11 -O1 -c tests/backend/aot_stub_main.c -o "$stub/runtime/aot_main.o"
cat >"$out/stub_rt.c" <<'END'
#include <stdint.h>
int stub_runtime_marker(void) { return 42; }
typedef void (*FnnTask)(void *ctx, int64_t task, int64_t tid);
void fnn_parallel(FnnTask task, void *ctx, int64_t ntasks) {
	for (int64_t i = 0; i < ntasks; i++) task(ctx, i, 0);
}
END
$CC -std=c11 -O1 -c "$out/stub_rt.c" -o "$out/stub_rt.o"
rm -f "$stub/libfnnrt.a"
ar rcs "$stub/libfnnrt.a" "$out/stub_rt.o"

build() { # build EXE EXTRA_FLAGS...
	exe=$1
	shift
	# shellcheck disable=SC2086
	$CC -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wno-unused-parameter -Werror -O1 -g "$@" \
		$llvm_cflags -Icompiler -Iruntime -Itests -DFNNC_LIBDIR="\"$stub\"" \
		-o "$exe" tests/backend/test_backend.c compiler/backend.c compiler/cache.c compiler/util.c \
		$llvm_libs -lm -lpthread
}

# run NAME EXE [ENV=VALUE...]: the JIT test plus an AOT build run.
run() {
	name=$1 exe=$2
	shift 2
	echo "== $name"
	rm -f "$out/aot_$name"
	# No compile cache: each run compiles (its threads, its split) for itself.
	env FNNC_CACHE=off "$@" TEST_DUMP_IR="$out/ir_$name.ll" "$exe" "$out/aot_$name"
	"$out/aot_$name"
}

build "$out/test_backend"
run serial "$out/test_backend" FNNC_COMPILE_THREADS=1
run threads8 "$out/test_backend" FNNC_COMPILE_THREADS=8
run default "$out/test_backend"
run nosplit "$out/test_backend" FNNC_COMPILE_THREADS=0
run baseline "$out/test_backend" FNNC_CPU=x86-64-v2 FNNC_COMPILE_THREADS=2
# The optimised IR does not depend on the thread count.
cmp "$out/ir_serial.ll" "$out/ir_threads8.ll"

if echo 'int main(void){return 0;}' | $CC -fsanitize=address,undefined -x c - -o "$out/asan_probe" 2>/dev/null; then
	build "$out/test_backend_asan" -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
	run asan_serial "$out/test_backend_asan" ASAN_OPTIONS=detect_leaks=1 FNNC_COMPILE_THREADS=1
	run asan_threads "$out/test_backend_asan" ASAN_OPTIONS=detect_leaks=1 FNNC_COMPILE_THREADS=8
else
	echo "== (no ASan in $CC: skipped)"
fi
echo "test_backend: all ok"
