# shellcheck shell=sh
# tests/e2e/lib.sh - helpers shared by the end-to-end test scripts (POSIX sh).
#
# Not a test (tests/run.sh runs only test_*.sh): each tests/e2e/test_*.sh
# sources it first thing, after its header comment:
#
#   . "$(dirname "$0")/lib.sh"
#
# Sourcing it sets -u, changes to the repository root (found from $0, the
# sourcing script) and exports LC_ALL=C. The rest are functions:
#
#   fail MSG...           prints "FAIL: MSG" on stderr and exits 1
#   problem MSG...        prints "FAIL: MSG" on stdout, counts it in $nfail
#   end_if_problems       exits 1 after a count if problem was called
#   need_fnnc             fails unless bin/fnnc was built
#   need_mnist            fails unless data/mnist holds the 4 MNIST files; sets M
#   make_tmp              the scratch directory $tmp, removed on exit
#   use_timeout SECS      sets TO, a command prefix limiting a run to SECS
#                         seconds (empty where timeout(1) is missing)
#   be32 N                N as 4 big-endian bytes
#   idx_head ...          the first N samples of an MNIST IDX pair
#   make_mnist DIR NTRAIN NTEST
#                         DIR/mnist: the first NTRAIN training and NTEST test
#                         samples of data/mnist (needs need_mnist first)
#   train_quiet MODEL LOG FLAGS...
#                         fnnc run MODEL on $tmp/d with --quiet --log LOG
#                         exits 0 and prints nothing; sets secs
#   train_loss_falls LOG MAX
#                         fails unless a --log CSV's train_loss goes down every
#                         row and ends below MAX
#   log_epochs LOG "E:S ..."
#                         fails unless a --log CSV has one row per epoch, at
#                         these epoch:step pairs
#   final_metrics LOG     sets acc and tl, the last test_acc and test_loss
#   check_final FLOOR MAXLOSS
#                         fails unless acc >= FLOOR and 0 < tl < MAXLOSS
#   why STATUS            an exit status in words ("segfault (status 139)")
#   expect_fail WANT CMD...
#                         counts a test in $ntest; calls problem unless CMD
#                         exits with status 1, with "error" (or the usage) and
#                         the fixed string WANT on stderr and no crash report
#   need_python           fails unless /usr/bin/python3 runs
#   untrained_near_chance MODEL DATA
#                         fails unless MODEL, one step at lr 1e-30 on DATA, is
#                         near chance; sets uacc and uloss
set -u
cd "$(dirname "$0")/../.." || exit 1
export LC_ALL=C

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

nfail=0
problem() {
	nfail=$((nfail + 1))
	echo "FAIL: $*"
}

# end_if_problems: "N checks failed" (or "N of $ntest checks failed" where the
# script counts its checks in ntest) and exit 1, if problem was called.
end_if_problems() {
	[ "$nfail" -eq 0 ] && return 0
	if [ -n "${ntest:-}" ]; then
		echo "$nfail of $ntest checks failed"
	else
		echo "$nfail checks failed"
	fi
	exit 1
}

need_fnnc() {
	[ -x bin/fnnc ] || fail "bin/fnnc is missing (run 'make all')"
}

# need_python: sets PY to the system Python, or ends the test as skipped.
need_python() {
	PY=/usr/bin/python3
	if ! [ -x $PY ]; then
		echo "SKIP: $PY is not available"
		exit 0
	fi
}

need_mnist() {
	M=data/mnist
	for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
		[ -f "$M/$f" ] || fail "$M/$f is missing (run 'sh scripts/fetch-mnist.sh data')"
	done
}

make_tmp() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/fnnc-e2e.XXXXXX") || exit 1
	trap 'rm -rf "$tmp"' EXIT
	trap 'exit 130' INT TERM
}

# shellcheck disable=SC2034 # TO is used by the sourcing script
use_timeout() {
	TO=
	command -v timeout >/dev/null 2>&1 && TO="timeout -k 5 $1"
}

# be32 N: N as 4 big-endian bytes.
be32() {
	# shellcheck disable=SC2059 # the format is the 4 octal escapes
	printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"
}

# idx_head SRC_IMAGES SRC_LABELS N DST_IMAGES DST_LABELS: the first N samples
# of a 28x28 MNIST pair, with headers that say N.
idx_head() {
	{ be32 2051; be32 "$3"; be32 28; be32 28; tail -c +17 "$1" | head -c $(($3 * 784)); } >"$4"
	{ be32 2049; be32 "$3"; tail -c +9 "$2" | head -c "$3"; } >"$5"
}

# make_mnist DIR NTRAIN NTEST
make_mnist() {
	mkdir -p "$1/mnist"
	idx_head "$M/train-images-idx3-ubyte" "$M/train-labels-idx1-ubyte" "$2" \
		"$1/mnist/train-images-idx3-ubyte" "$1/mnist/train-labels-idx1-ubyte"
	idx_head "$M/t10k-images-idx3-ubyte" "$M/t10k-labels-idx1-ubyte" "$3" \
		"$1/mnist/t10k-images-idx3-ubyte" "$1/mnist/t10k-labels-idx1-ubyte"
}

# train_quiet MODEL LOG FLAGS...: `fnnc run MODEL --data $tmp/d FLAGS... --quiet
# --log LOG` exits 0 with nothing on stdout. Sets secs, the seconds it took.
# shellcheck disable=SC2034 # secs is for the sourcing script
train_quiet() {
	model=$1 log=$2
	shift 2
	start=$(date +%s)
	bin/fnnc run "$model" --data "$tmp/d" "$@" --quiet --log "$log" \
		>"$tmp/out" 2>"$tmp/err"
	st=$?
	secs=$(($(date +%s) - start))
	[ $st -eq 0 ] || fail "fnnc run $model: expected exit 0, got $st; stderr: $(tail -n 5 "$tmp/err")"
	[ -s "$tmp/out" ] && fail "--quiet: expected no stdout, found: $(head -n 3 "$tmp/out")"
	return 0
}

# train_loss_falls LOG MAX: train_loss (column 3 of the --log CSV LOG) is a
# number in every row, strictly decreasing, and its last value is below MAX.
train_loss_falls() {
	msg=$(awk -F, -v max="$2" 'NR > 1 {
	if ($3 !~ /^[0-9.e+-]+$/) { print "row " NR-1 ": train_loss is not a number: " $3; exit }
	if (NR > 2 && !($3 < prev)) { print "train_loss did not decrease: epoch " NR-2 " " prev ", epoch " NR-1 " " $3; exit }
	prev = $3; last = $3 }
	END { if (last != "" && !(last < max + 0)) print "final train_loss " last " is not below " max }' "$1")
	[ -z "$msg" ] || fail "$msg"
}

# log_epochs LOG "E:S E:S ...": LOG has one row per epoch (a row per pair), at
# these epoch:step pairs.
log_epochs() {
	rows=$(($(wc -l <"$1") - 1))
	want=$(awk -v s="$2" 'BEGIN { print split(s, a, " ") }')
	[ "$rows" -eq "$want" ] || fail "expected $want log rows (one per epoch), found $rows"
	steps=$(awk -F, 'NR > 1 { printf "%s%s", sep, $1 ":" $2; sep = " " }' "$1")
	[ "$steps" = "$2" ] || fail "expected epoch:step '$2', found '$steps'"
}

# final_metrics LOG: acc and tl, the test_acc and test_loss of LOG's last row.
final_metrics() {
	acc=$(awk -F, 'END { print $5 }' "$1")
	tl=$(awk -F, 'END { print $4 }' "$1")
}

# check_final FLOOR MAXLOSS: acc (see final_metrics) is at least FLOOR, and tl
# is in (0, MAXLOSS).
check_final() {
	awk -v a="$acc" -v f="$1" 'BEGIN { exit !(a != "" && a + 0 >= f && a + 0 <= 1) }' ||
		fail "expected test_acc >= $1, found '$acc'"
	awk -v l="$tl" -v m="$2" 'BEGIN { exit !(l != "" && l + 0 > 0 && l + 0 < m + 0) }' ||
		fail "expected a test_loss in (0, $2) after training, found '$tl'"
}

# untrained_near_chance MODEL DATA: one step with a learning rate of 1e-30
# leaves the random weights as they were, so the accuracy on DATA must be near
# chance (< 0.3) and the test loss near ln(10) = 2.30 (> 1.8). Sets uacc, uloss.
untrained_near_chance() {
	bin/fnnc run "$1" --data "$2" --steps 1 --lr 1e-30 --seed 1 --quiet --log "$tmp/untrained.csv" \
		>/dev/null 2>"$tmp/err" || fail "untrained run failed: $(tail -n 5 "$tmp/err")"
	uacc=$(awk -F, 'END { print $5 }' "$tmp/untrained.csv")
	uloss=$(awk -F, 'END { print $4 }' "$tmp/untrained.csv")
	echo "untrained test_acc $uacc, test_loss $uloss"
	awk -v a="$uacc" 'BEGIN { exit !(a != "" && a + 0 < 0.3) }' ||
		fail "an untrained model should be near chance (test_acc < 0.3), found '$uacc'"
	awk -v l="$uloss" 'BEGIN { exit !(l + 0 > 1.8) }' ||
		fail "an untrained model should have a test_loss near ln(10) = 2.30 (> 1.8), found '$uloss'"
}

why() {
	case $1 in
	124 | 137) echo "timed out" ;;
	134) echo "aborted (status 134)" ;;
	139) echo "segfault (status 139)" ;;
	*) echo "status $1" ;;
	esac
}

# run_status STATUS CMD...: counts a test and runs CMD (stdout in $tmp/out,
# stderr in $tmp/err); unless it exits with STATUS, reports it and fails.
run_status() {
	want_status=$1
	shift
	ntest=$((ntest + 1))
	$TO "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	st=$?
	[ $st -eq "$want_status" ] && return 0
	problem "'$*': expected exit status $want_status, got $(why $st); stderr: $(head -c 300 "$tmp/err")"
	return 1
}

# expect_fail WANT_ON_STDERR CMD...: exit status exactly 1, "error" and
# WANT_ON_STDERR (a fixed string; may be empty) on stderr, no crash report.
expect_fail() {
	want=$1
	shift
	run_status 1 "$@" || return
	if ! [ -s "$tmp/err" ]; then
		problem "'$*': expected an error message on stderr, found nothing"
		return
	fi
	if ! grep -q -e 'error' -e 'usage' "$tmp/err"; then
		problem "'$*': expected 'error' (or the usage) on stderr, found: $(head -c 300 "$tmp/err")"
		return
	fi
	if [ -n "$want" ] && ! grep -qF -- "$want" "$tmp/err"; then
		problem "'$*': expected stderr to mention '$want', found: $(head -c 300 "$tmp/err")"
		return
	fi
	if grep -qi -e 'internal error' -e 'sanitizer' -e 'segmentation' -e 'assert' "$tmp/err"; then
		problem "'$*': a user error reported as a crash or internal error: $(head -c 300 "$tmp/err")"
	fi
}
