#!/bin/sh
# test_ckpt_hostile.sh - loading a checkpoint treats the file as hostile.
#
# Makes malformed safetensors files (truncated at several points, flipped data
# bytes under the checksum, huge or short header lengths, bad JSON, bad dtypes,
# shapes and offsets, overlaps, gaps, trailing bytes, ...) and checks that
# `--init FILE` and `--resume FILE` reject each one with exit status 1 and one
# clear "PROG: error: FILE: ..." message naming the problem, never a crash.
# Hand-written valid files (no checksum, escapes, whitespace) load, and their
# values arrive in the parameters.
. "$(dirname "$0")/lib.sh"

need_fnnc
make_tmp

MODEL=tests/e2e/sigmoid_regression.fnn  # linear.weight [1,8], linear.bias [1]; sgd (a momentum slot)

# le64 N: N as 8 little-endian bytes.
le64() {
	v=$1
	i=0
	while [ $i -lt 8 ]; do
		# shellcheck disable=SC2059
		printf "\\$(printf %03o $((v & 255)))"
		v=$((v >> 8))
		i=$((i + 1))
	done
}
# floats N: N little-endian float32 ones (0x3f800000).
floats() {
	i=0
	while [ $i -lt "$1" ]; do
		printf '\000\000\200\077'
		i=$((i + 1))
	done
}
# st OUT JSON NFLOATS: a safetensors file with that header and NFLOATS ones.
st() {
	len=$(printf %s "$2" | wc -c)
	{ le64 "$len"; printf %s "$2"; floats "$3"; } >"$1"
}
W='"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[0,32]}'
B='"linear.bias":{"dtype":"F32","shape":[1],"data_offsets":[32,36]}'

# A valid hand-written file loads, and its values are used.
st "$tmp/ok.st" "{$W,$B}" 9
bin/fnnc run $MODEL --steps 0 --init "$tmp/ok.st" --save "$tmp/ok_saved.st" >/dev/null 2>"$tmp/err" ||
	fail "a valid hand-written file was rejected: $(cat "$tmp/err")"
hl=$(od -An -tu1 -N8 "$tmp/ok_saved.st" | awk '{ v = 0; for (i = NF; i >= 1; i--) v = v * 256 + $i; print v }')
tail -c +$((9 + hl)) "$tmp/ok_saved.st" | head -c 36 >"$tmp/w"
floats 9 >"$tmp/w9"
cmp -s "$tmp/w" "$tmp/w9" || fail "--init did not load the values of the file"
# Whitespace, escapes in names, metadata without a checksum, a reordered data section.
st "$tmp/ok2.st" "$(printf ' {\n "__metadata__" : {"note":"a \\"quoted\\" \\u00e9 \\\\ text"},\n "linear\\u002ebias":{"shape":[1],"dtype":"F32","data_offsets":[0,4]} ,\t"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[4,36]}}  ')" 9
bin/fnnc run $MODEL --steps 0 --init "$tmp/ok2.st" >/dev/null 2>"$tmp/err" ||
	fail "a valid file with whitespace and escapes was rejected: $(cat "$tmp/err")"

# A real checkpoint to corrupt.
bin/fnnc run $MODEL --steps 0 --save "$tmp/real.st" >/dev/null 2>"$tmp/err" || fail "--save: $(cat "$tmp/err")"
size=$(wc -c <"$tmp/real.st")
hl=$(od -An -tu1 -N8 "$tmp/real.st" | awk '{ v = 0; for (i = NF; i >= 1; i--) v = v * 256 + $i; print v }')
bin/fnnc run $MODEL --steps 0 --resume "$tmp/real.st" >/dev/null 2>"$tmp/err" || fail "the real checkpoint does not resume: $(cat "$tmp/err")"

# The malformed files go to a built trainer (it starts faster than the JIT).
bin/fnnc $MODEL -o "$tmp/reg" >/dev/null 2>"$tmp/err" || fail "fnnc -o: $(cat "$tmp/err")"
n=0
# bad NAME PATTERN: --init and --resume of $tmp/NAME.st fail with exit 1 and an error matching PATTERN.
bad() {
	n=$((n + 1))
	for how in --init --resume; do
		"$tmp/reg" --steps 0 $how "$tmp/$1.st" >"$tmp/out" 2>"$tmp/err"
		st=$?
		[ $st -eq 1 ] || fail "$1 ($how): expected exit 1, got $st; stderr: $(cat "$tmp/err")"
		[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1 ($how): expected one line of error, got: $(cat "$tmp/err")"
		grep -q "^$tmp/reg: error: $tmp/$1.st: .*$2" "$tmp/err" ||
			fail "$1 ($how): expected 'error: FILE: ...$2', got: $(cat "$tmp/err")"
	done
	printf '%-22s %s\n' "$1" "$(cut -d: -f4- "$tmp/err")"
}

: >"$tmp/empty.st"
bad empty 'too short'
head -c 5 "$tmp/real.st" >"$tmp/trunc5.st"
bad trunc5 'too short'
head -c 8 "$tmp/real.st" >"$tmp/trunc8.st"
bad trunc8 'does not fit in the file'
head -c 100 "$tmp/real.st" >"$tmp/trunc_header.st"
bad trunc_header 'does not fit in the file'
head -c $((8 + hl)) "$tmp/real.st" >"$tmp/trunc_at_data.st"
bad trunc_at_data 'past the end of the data'
head -c $((size - 10)) "$tmp/real.st" >"$tmp/trunc_data.st"
bad trunc_data 'past the end of the data'
head -c $((size - 1)) "$tmp/real.st" >"$tmp/trunc_last.st"
bad trunc_last 'past the end of the data'
# Flip one data byte: the checksum catches it.
cp "$tmp/real.st" "$tmp/flip.st"
printf '\125' | dd of="$tmp/flip.st" bs=1 seek=$((8 + hl + 5)) conv=notrunc 2>/dev/null
bad flip 'checksum mismatch'
cp "$tmp/real.st" "$tmp/flip_last.st"
printf '\377' | dd of="$tmp/flip_last.st" bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
bad flip_last 'checksum mismatch'
# A changed checksum digit in the header.
sed 's/"checksum":"fnv1a64:./"checksum":"fnv1a64:g/' "$tmp/real.st" >"$tmp/badsum.st"
bad badsum "checksum .* is not"
{ cat "$tmp/real.st"; printf 'xyz'; } >"$tmp/trailing.st"
bad trailing '3 trailing bytes'
{ le64 1099511627776; printf '{}'; } >"$tmp/huge_len.st"
bad huge_len 'larger than the limit'
{ le64 -1; printf '{}'; } >"$tmp/max_len.st"
bad max_len 'larger than the limit'
{ le64 5000; printf '{}'; } >"$tmp/long_len.st"
bad long_len 'does not fit in the file'
{ le64 0; } >"$tmp/zero_len.st"
bad zero_len 'does not fit'
head -c 2000 /dev/zero | tr '\0' 'a' >"$tmp/text.st"
bad text 'larger than the limit'
st "$tmp/unclosed.st" "{$W,$B" 9
bad unclosed 'ends early'
st "$tmp/trailing_comma.st" "{$W,$B,}" 9
bad trailing_comma "bad JSON header"
st "$tmp/single_quote.st" "{'a':1}" 0
bad single_quote "expected '\"'"
st "$tmp/unterminated.st" '{"linear.weight' 0
bad unterminated 'not terminated'
st "$tmp/bad_escape.st" '{"lin\xear.weight":{}}' 0
bad bad_escape 'bad escape'
st "$tmp/bad_unicode.st" '{"lin\u12G4":{}}' 0
bad bad_unicode 'bad \\u escape'
st "$tmp/surrogate.st" '{"a\ud800":{}}' 0
bad surrogate 'surrogate'
st "$tmp/control.st" "$(printf '{"a\tb":{}}')" 0
bad control 'control character'
st "$tmp/nul_escape.st" '{"a\u0000":{}}' 0
bad nul_escape 'NUL'
st "$tmp/array_top.st" "[$W]" 9
bad array_top "expected '{'"
st "$tmp/garbage_after.st" "{$W,$B}x" 9
bad garbage_after 'after the top-level object'
st "$tmp/float_shape.st" '{"linear.weight":{"dtype":"F32","shape":[1.5,8],"data_offsets":[0,32]},'"$B}" 9
bad float_shape 'fraction or exponent'
st "$tmp/neg_shape.st" '{"linear.weight":{"dtype":"F32","shape":[-1,8],"data_offsets":[0,32]},'"$B}" 9
bad neg_shape 'non-negative integer'
st "$tmp/leading_zero.st" '{"linear.weight":{"dtype":"F32","shape":[01,8],"data_offsets":[0,32]},'"$B}" 9
bad leading_zero 'leading zero'
st "$tmp/huge_dim.st" '{"linear.weight":{"dtype":"F32","shape":[99999999999999999999,8],"data_offsets":[0,32]},'"$B}" 9
bad huge_dim 'too large'
st "$tmp/rank9.st" '{"linear.weight":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,8],"data_offsets":[0,32]},'"$B}" 9
bad rank9 'more than 8 entries'
st "$tmp/big_numel.st" '{"linear.weight":{"dtype":"F32","shape":[65536,65536,65536],"data_offsets":[0,32]},'"$B}" 9
bad big_numel 'too large'
st "$tmp/f16.st" '{"linear.weight":{"dtype":"F16","shape":[1,8],"data_offsets":[0,16]},'"$B}" 9
bad f16 "dtype 'F16'"
st "$tmp/dtype_num.st" '{"linear.weight":{"dtype":7,"shape":[1,8],"data_offsets":[0,32]},'"$B}" 9
bad dtype_num "'dtype' is not a string"
st "$tmp/unknown_field.st" '{"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[0,32],"x":[1]},'"$B}" 9
bad unknown_field "unknown field 'x'"
st "$tmp/no_offsets.st" '{"linear.weight":{"dtype":"F32","shape":[1,8]},'"$B}" 9
bad no_offsets "lacks 'data_offsets'"
st "$tmp/three_offsets.st" '{"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[0,32,36]},'"$B}" 9
bad three_offsets 'more than 2 entries'
st "$tmp/dup_field.st" '{"linear.weight":{"dtype":"F32","dtype":"F32","shape":[1,8],"data_offsets":[0,32]},'"$B}" 9
bad dup_field "appears twice"
st "$tmp/dup_tensor.st" "{$W,$W,$B}" 9
bad dup_tensor "'linear.weight' appears twice"
st "$tmp/overlap.st" '{"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[0,32]},"linear.bias":{"dtype":"F32","shape":[1],"data_offsets":[28,32]}}' 8
bad overlap 'overlaps'
st "$tmp/gap.st" '{"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[0,32]},"linear.bias":{"dtype":"F32","shape":[1],"data_offsets":[36,40]}}' 10
bad gap 'a gap in the data'
st "$tmp/size_mismatch.st" '{"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[0,28]},"linear.bias":{"dtype":"F32","shape":[1],"data_offsets":[28,32]}}' 8
bad size_mismatch 'the shape needs 32'
st "$tmp/reversed.st" '{"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[32,0]},'"$B}" 9
bad reversed 'end before they begin'
st "$tmp/past_end.st" '{"linear.weight":{"dtype":"F32","shape":[1,8],"data_offsets":[0,32]},"linear.bias":{"dtype":"F32","shape":[1],"data_offsets":[36,40]}}' 9
bad past_end 'past the end of the data'
st "$tmp/meta_num.st" '{"__metadata__":{"step":5},'"$W,$B}" 9
bad meta_num "metadata value of 'step' is not a string"
st "$tmp/meta_dup.st" '{"__metadata__":{"a":"1","a":"2"},'"$W,$B}" 9
bad meta_dup "metadata key 'a' appears twice"
st "$tmp/meta_twice.st" '{"__metadata__":{"a":"1"},"__metadata__":{},'"$W,$B}" 9
bad meta_twice "'__metadata__' appears twice"
st "$tmp/empty_name.st" '{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 1
bad empty_name 'empty name'
echo "$n malformed files rejected"
[ $n -ge 20 ] || fail "expected at least 20 malformed files"

# Wrong contents for the model (well-formed files): the mismatch is an error.
st "$tmp/wrong_shape.st" '{"linear.weight":{"dtype":"F32","shape":[8,1],"data_offsets":[0,32]},'"$B}" 9
bin/fnnc run $MODEL --steps 0 --init "$tmp/wrong_shape.st" >/dev/null 2>"$tmp/err" && fail "wrong shape: expected exit 1"
grep -q 'shape mismatch for linear.weight: the model has \[1,8\], the file has \[8,1\]' "$tmp/err" ||
	fail "wrong shape: expected both shapes, got: $(cat "$tmp/err")"
# A weights-only file is not a checkpoint to resume.
bin/fnnc run $MODEL --steps 0 --resume "$tmp/ok.st" >/dev/null 2>"$tmp/err" && fail "--resume of a weights-only file: expected exit 1"
grep -q 'not an fnnc checkpoint' "$tmp/err" || fail "--resume of a weights-only file: got $(cat "$tmp/err")"
bin/fnnc run $MODEL --steps 0 --init "$tmp/missing.st" >/dev/null 2>"$tmp/err" && fail "a missing file: expected exit 1"
grep -q "error: cannot open the checkpoint '$tmp/missing.st'" "$tmp/err" || fail "a missing file: got $(cat "$tmp/err")"
echo "PASS: $n malformed checkpoints rejected with clear errors"
