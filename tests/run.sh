#!/bin/sh
# tests/run.sh - the whole test suite (make test runs it after building and
# fetching the data). Prints PASS or FAIL per test, details under failures, and
# ends with "N passed, N failed"; exits 1 if anything failed.
#
#   golden     tests/golden/NAME.fnn against each of NAME.ast .ir .grad .fused
#              (stdout of --emit=STAGE, exit 0) and NAME.err (stderr of
#              --emit=ir, exit 1); run from tests/golden so paths are NAME.fnn
#   gradcheck  fnnc check tests/gradcheck/NAME.fnn exits 0 (with the flags of
#              its "# check: FLAGS" line, if it has one)
#   scripts    every executable tests/*/test_*.sh exits 0 (log in build/tests/logs)
#   runtime    tests/runtime/run.sh, its PASS/FAIL lines counted here (FILTER
#              is passed on to it in the environment)
#   asan       the golden and gradcheck groups again with build-asan/fnnc-asan,
#              if it exists (make test-asan)
#
# Environment:
#   FILTER=SUBSTRING  run only the tests whose name (group/name) contains it
#   UPDATE=1          write fnnc's output as the new golden files instead of
#                     comparing, and show what changed. A NAME.fnn with no
#                     expected file gets NAME.err if fnnc rejects it, else
#                     NAME.ir, NAME.grad and NAME.fused.
set -u
cd "$(dirname "$0")/.." || exit 1
export LC_ALL=C

FILTER=${FILTER:-}
UPDATE=${UPDATE:-}
[ "$UPDATE" = 0 ] && UPDATE=
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fnnc-tests.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
# The compile cache of this run only: tests never read a user's cache, nor
# leave anything in it (test_compile_cache.sh tests the cache itself).
FNNC_CACHE=$tmp/compile-cache
export FNNC_CACHE
trap 'exit 130' INT TERM
logs=build/tests/logs
mkdir -p "$logs"

have_timeout=
command -v timeout >/dev/null 2>&1 && have_timeout=1

# run_to SECONDS CMD... : runs CMD with a time limit when timeout(1) exists.
run_to() {
	secs=$1
	shift
	if [ -n "$have_timeout" ]; then
		timeout -k 5 "$secs" "$@"
	else
		"$@"
	fi
}

selected() {
	[ -z "$FILTER" ] && return 0
	case "$1" in *"$FILTER"*) return 0 ;; esac
	return 1
}

ok() {
	pass=$((pass + 1))
	echo "PASS $1"
}

# bad NAME [REASON]: detail goes to stdout afterwards, indented (see indent).
bad() {
	fail=$((fail + 1))
	if [ -n "${2:-}" ]; then echo "FAIL $1 ($2)"; else echo "FAIL $1"; fi
}

indent() { sed 's/^/    /'; }

# why STATUS: a short reason for an unexpected exit status.
why() {
	case "$1" in
	124 | 137) echo "timed out" ;;
	134) echo "aborted, status 134" ;;
	139) echo "segfault, status 139" ;;
	*) echo "exit status $1" ;;
	esac
}

#
# golden
#

# golden_one GROUP FNNC NAME EXT: one expected file. FNNC is relative to tests/golden.
golden_one() {
	g_group=$1 g_fnnc=$2 g_name=$3 g_ext=$4
	g_test="$g_group/$g_name.$g_ext"
	selected "$g_test" || return 0
	g_exp=tests/golden/$g_name.$g_ext
	if [ "$g_ext" = err ]; then g_stage=ir g_want=1; else g_stage=$g_ext g_want=0; fi
	(cd tests/golden && run_to 60 "$g_fnnc" "$g_name.fnn" "--emit=$g_stage") >"$tmp/out" 2>"$tmp/err"
	g_st=$?
	if [ "$g_ext" = err ]; then g_got=$tmp/err; else g_got=$tmp/out; fi
	if [ "$g_st" -ne "$g_want" ]; then
		bad "$g_test" "$(why "$g_st"), want $g_want"
		tail -n 15 "$tmp/err" | indent
		return 0
	fi
	if [ -n "$UPDATE" ] && [ "$g_group" = golden ]; then
		if [ -f "$g_exp" ] && cmp -s "$g_exp" "$g_got"; then
			ok "$g_test"
		else
			if [ -f "$g_exp" ]; then
				echo "UPDATE $g_test"
				diff -u "$g_exp" "$g_got" | sed -n '3,42p' | indent
			else
				echo "NEW $g_test ($(wc -l <"$g_got" | tr -d ' ') lines)"
			fi
			cp "$g_got" "$g_exp"
			pass=$((pass + 1))
		fi
		return 0
	fi
	if cmp -s "$g_exp" "$g_got"; then
		ok "$g_test"
	else
		bad "$g_test" "differs from $g_exp"
		diff -u "$g_exp" "$g_got" | sed -n '3,32p' | indent
		if [ "$g_ext" != err ] && [ -s "$tmp/err" ]; then
			echo "    stderr:"
			tail -n 5 "$tmp/err" | indent
		fi
	fi
}

# golden_group GROUP FNNC
golden_group() {
	no_expected=
	for f in tests/golden/*.fnn; do
		[ -f "$f" ] || continue
		name=${f##*/}
		name=${name%.fnn}
		exts=
		for ext in ast ir grad fused err; do
			[ -f "tests/golden/$name.$ext" ] && exts="$exts $ext"
		done
		if [ -z "$exts" ]; then
			[ "$1" = golden ] || continue
			selected "golden/$name" || continue
			if [ -z "$UPDATE" ]; then
				no_expected="$no_expected $name"
				continue
			fi
			(cd tests/golden && run_to 60 "$2" "$name.fnn" --emit=ir) >/dev/null 2>&1
			case $? in
			0) exts="ir grad fused" ;;
			1) exts="err" ;;
			*) exts="ir" ;; # a crash: reported as a failure below
			esac
		fi
		for ext in $exts; do
			golden_one "$1" "$2" "$name" "$ext"
		done
	done
	if [ -n "$no_expected" ]; then
		echo "note: no expected files (UPDATE=1 creates them) for:$no_expected" | fold -s -w 100
	fi
}

#
# gradcheck
#

# gradcheck_group GROUP FNNC
gradcheck_group() {
	for f in tests/gradcheck/*.fnn; do
		[ -f "$f" ] || continue
		name=${f##*/}
		name=${name%.fnn}
		t="$1/$name"
		selected "$t" || continue
		# A "# check: FLAGS" line passes FLAGS to fnnc check (e.g. --batch 40).
		flags=$(sed -n 's/^# check: //p' "$f" | head -n 1)
		# shellcheck disable=SC2086
		run_to 300 "$2" check "$f" $flags >"$tmp/out" 2>&1
		st=$?
		if [ "$st" -eq 0 ]; then
			ok "$t"
		else
			bad "$t" "$(why "$st")"
			tail -n 15 "$tmp/out" | indent
		fi
	done
}

#
# groups 1 and 2: golden and gradcheck with bin/fnnc
#
if [ -x bin/fnnc ]; then
	golden_group golden ../../bin/fnnc
	gradcheck_group gradcheck bin/fnnc
elif selected golden || selected gradcheck; then
	bad "golden" "bin/fnnc is missing; run make"
fi

#
# group 3: test scripts
#
for s in tests/*/test_*.sh; do
	[ -f "$s" ] || continue
	dir=${s%/*}
	dir=${dir##*/}
	base=${s##*/}
	t="$dir/${base%.sh}"
	selected "$t" || continue
	if [ ! -x "$s" ]; then
		echo "note: $s is not executable: not run"
		continue
	fi
	log="$logs/${dir}_${base%.sh}.log"
	run_to 1200 "./$s" >"$log" 2>&1
	st=$?
	if [ "$st" -eq 0 ]; then
		ok "$t"
	else
		bad "$t" "$(why "$st"), log $log"
		tail -n 20 "$log" | indent
	fi
done

#
# group 4: ASan + UBSan
#
if [ -x build-asan/fnnc-asan ]; then
	ASAN_OPTIONS=detect_leaks=1:exitcode=86
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86
	export ASAN_OPTIONS UBSAN_OPTIONS
	golden_group asan/golden ../../build-asan/fnnc-asan
	gradcheck_group asan/gradcheck build-asan/fnnc-asan
	unset ASAN_OPTIONS UBSAN_OPTIONS
fi

#
# the runtime's own runner
#
# With a FILTER it runs when the FILTER looks like "runtime/..." or selected
# nothing so far; its lines are filtered by name either way.
case "$FILTER" in "" | runtime*) rt_wanted=1 ;; *) rt_wanted= ;; esac
selected runtime/ && rt_wanted=1
[ $((pass + fail)) -eq 0 ] && rt_wanted=1
if [ -f tests/runtime/run.sh ] && [ -n "$rt_wanted" ]; then
	log="$logs/runtime_run.log"
	if [ -x tests/runtime/run.sh ]; then rt_cmd=./tests/runtime/run.sh; else rt_cmd="sh tests/runtime/run.sh"; fi
	# shellcheck disable=SC2086
	run_to 1200 $rt_cmd >"$log" 2>&1
	st=$?
	# Its PASS/FAIL lines (filtered, names put in the runtime/ group), with up
	# to 20 detail lines under each FAIL.
	awk -v filt="$FILTER" '
		/^[0-9]+ passed, [0-9]+ failed$/ { next }
		/^(PASS|FAIL) / {
			name = $2
			colon = sub(/:$/, "", name)
			if (index(name, "/") == 0) name = "runtime/" name
			rest = substr($0, length($1) + length($2) + 3)
			show = (filt == "" || index(name, filt) > 0)
			infail = ($1 == "FAIL")
			n = 0
			if (show) print $1 " " name (colon ? ":" : "") (rest != "" ? " " rest : "")
			next
		}
		{ if (show && infail && n < 20) { print "    " $0; n++ } }' "$log" >"$tmp/rt"
	cat "$tmp/rt"
	rp=$(grep -c '^PASS ' "$tmp/rt")
	rf=$(grep -c '^FAIL ' "$tmp/rt")
	pass=$((pass + rp))
	fail=$((fail + rf))
	if [ "$st" -ne 0 ] && [ "$rf" -eq 0 ] && [ -z "$FILTER" ]; then
		bad "runtime/run.sh" "$(why "$st") with no FAIL line, log $log"
		tail -n 20 "$log" | indent
	elif [ "$st" -eq 0 ] && [ "$rp" -eq 0 ] && [ -z "$FILTER" ]; then
		echo "note: tests/runtime/run.sh reported no tests"
	fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
