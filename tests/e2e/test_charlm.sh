#!/bin/sh
# test_charlm.sh - a character language model on real text, and --sample.
#
# The first 120 KB of the Jargon File (installed by 'make data') train a small
# embedding -> gru -> dense model for 3 epochs on the tokens of its distinct
# bytes (vocab="file"), with the last 10% held out. Then:
#   - the validation loss is below the entropy of the text's unigram
#     distribution (computed here from the bytes): the model predicts better
#     than the character frequencies alone; val_bpc is val_loss / ln 2, and
#     the next character is the most probable one more than 25% of the time;
#   - the same run with 1 and 2 threads logs the same losses (the embedding's
#     scatter-add gradient is deterministic);
#   - --sample N prints N characters of the file's vocabulary (and a newline),
#     the same for the same --seed, with and without --prime and
#     --temperature; a built trainer prints the same text as fnnc run;
#   - the checkpoint holds the vocabulary (--resume on a text with another one
#     is refused), and a vocab="bytes" model samples without one;
#   - bad flags and bad text files are errors with exit status 1.
. "$(dirname "$0")/lib.sh"

need_fnnc
make_tmp
use_timeout 120
J=data/jargon/jargon.txt.gz
[ -f "$J" ] || J=/usr/share/dictd/jargon.dict.dz
[ -f "$J" ] || fail "data/jargon/jargon.txt.gz is missing (run 'sh scripts/fetch-jargon.sh data')"
D=$tmp/d
mkdir -p "$D"
gzip -dc "$J" | head -c 120000 >"$D/sub.txt"

model() {  # model VOCAB_MODE FILE: the test model on FILE
	cat <<EOF
model charsmall {
    input  x: tokens[32]
    target y: tokens[32]
    h = x -> embedding(160, 16) -> gru(64)
    logits = h -> dense(160)
    loss cross_entropy(logits, y)
}
optimizer adam(lr=0.01, clip=5)
data {
    train = text("$2", vocab="$1", validation=0.1)
}
train { batch=32, epochs=3, seed=1 }
EOF
}
model file sub.txt >"$tmp/m.fnn"

$TO bin/fnnc run "$tmp/m.fnn" --data "$D" --quiet --threads 2 --log "$tmp/t2.csv" --save "$tmp/m.st" 2>"$tmp/err" ||
	fail "training: exit $?: $(cat "$tmp/err")"
head -n 1 "$tmp/t2.csv" | grep -q ",val_loss,val_acc,val_bpc$" || fail "expected val_loss,val_acc,val_bpc columns: $(head -n 1 "$tmp/t2.csv")"
val=$(awk -F, 'END { print $(NF - 2) }' "$tmp/t2.csv")
vacc=$(awk -F, 'END { print $(NF - 1) }' "$tmp/t2.csv")
bpc=$(awk -F, 'END { print $NF }' "$tmp/t2.csv")
uni=$(od -An -tu1 -v "$D/sub.txt" | awk '{ for (i = 1; i <= NF; i++) { c[$i]++; n++ } }
	END { for (k in c) { p = c[k] / n; h -= p * log(p) } printf "%.6f", h }')
echo "unigram entropy $uni nats, val_loss $val, val_bpc $bpc, val_acc $vacc"
awk -v v="$val" -v u="$uni" 'BEGIN { exit !(v != "" && v + 0 > 0 && v + 0 < u - 0.3) }' ||
	fail "val_loss $val is not below the unigram entropy $uni - 0.3"
awk -v v="$val" -v b="$bpc" 'BEGIN { d = v / log(2) - b; exit !(d < 1e-6 && d > -1e-6) }' ||
	fail "val_bpc $bpc is not val_loss $val / ln 2"
# The most frequent character (the space) alone is right about 1 time in 6.
awk -v a="$vacc" 'BEGIN { exit !(a != "" && a + 0 > 0.25 && a + 0 < 1) }' ||
	fail "expected a per-character val_acc above 0.25, found '$vacc'"

# Threads: the same losses.
$TO bin/fnnc run "$tmp/m.fnn" --data "$D" --quiet --threads 1 --epochs 1 --log "$tmp/t1.csv" 2>"$tmp/err" ||
	fail "1 thread: exit $?: $(cat "$tmp/err")"
a=$(awk -F, 'NR == 2 { print $3, $(NF - 2), $(NF - 1) }' "$tmp/t1.csv")
b=$(awk -F, 'NR == 2 { print $3, $(NF - 2), $(NF - 1) }' "$tmp/t2.csv")
[ "$a" = "$b" ] || fail "epoch 1 losses differ with 1 and 2 threads: '$a' and '$b'"

# The vocabulary in the checkpoint: 2 hex digits per distinct byte.
od -An -tu1 -v "$D/sub.txt" | tr -s ' ' '\n' | grep -v '^$' | sort -u >"$tmp/vocab"  # the text's bytes
nv=$(wc -l <"$tmp/vocab")
hdr=$(od -An -c -j8 -N4000 "$tmp/m.st" | tr -d ' \n')
echo "$hdr" | grep -q '"vocab":"0a20' || fail "the checkpoint has no vocabulary starting with newline and space"

# Sampling.
sample() {  # sample OUT FLAGS...
	out=$1
	shift
	$TO bin/fnnc run "$tmp/m.fnn" --data "$D" --init "$tmp/m.st" "$@" >"$out" 2>"$tmp/err" ||
		fail "--sample $*: exit $?: $(cat "$tmp/err")"
}
sample "$tmp/s1" --sample 300 --seed 7
sample "$tmp/s2" --sample 300 --seed 7
sample "$tmp/s3" --sample 300 --seed 8
sample "$tmp/s4" --sample 200 --seed 7 --prime "The hacker" --temperature 0.5
[ "$(wc -c <"$tmp/s1")" -eq 301 ] || fail "--sample 300: expected 300 characters and a newline, got $(wc -c <"$tmp/s1") bytes"
[ "$(wc -c <"$tmp/s4")" -eq 211 ] || fail "--sample 200 --prime (10 bytes): expected 211 bytes, got $(wc -c <"$tmp/s4")"
head -c 10 "$tmp/s4" | grep -q "^The hacker$" || fail "--prime: the output does not start with the prime"
cmp -s "$tmp/s1" "$tmp/s2" || fail "--sample with the same --seed gave different texts"
cmp -s "$tmp/s1" "$tmp/s3" && fail "--sample with --seed 7 and 8 gave the same text"
# Every sampled byte is a byte of the text.
extra=$(head -c 300 "$tmp/s1" | od -An -tu1 -v | tr -s ' ' '\n' | grep -v '^$' | sort -u |
	grep -vxF -f "$tmp/vocab")
[ -z "$extra" ] || fail "--sample printed bytes that are not in the text: $extra"
echo "vocabulary $nv characters; sample: $(head -c 120 "$tmp/s4" | tr '\n' ' ')"

# A built trainer samples the same text.
$TO bin/fnnc "$tmp/m.fnn" -o "$tmp/trainer" 2>"$tmp/err" || fail "fnnc -o: exit $?: $(cat "$tmp/err")"
$TO "$tmp/trainer" --data "$D" --init "$tmp/m.st" --sample 300 --seed 7 >"$tmp/s5" 2>"$tmp/err" ||
	fail "trainer --sample: exit $?: $(cat "$tmp/err")"
cmp -s "$tmp/s1" "$tmp/s5" || fail "the built trainer sampled a different text than fnnc run"

# vocab="bytes": ids are the bytes (a vocabulary of 256 needed for UTF-8 text).
model bytes sub.txt | sed 's/160/256/g' >"$tmp/b.fnn"
$TO bin/fnnc run "$tmp/b.fnn" --data "$D" --quiet --steps 5 --save "$tmp/b.st" 2>"$tmp/err" ||
	fail "vocab=bytes: exit $?: $(cat "$tmp/err")"
$TO bin/fnnc run "$tmp/b.fnn" --data "$D" --init "$tmp/b.st" --sample 50 >"$tmp/s6" 2>"$tmp/err" ||
	fail "vocab=bytes --sample: exit $?: $(cat "$tmp/err")"
[ "$(wc -c <"$tmp/s6")" -eq 51 ] || fail "vocab=bytes --sample 50: expected 51 bytes, got $(wc -c <"$tmp/s6")"

# Errors: exit status 1 and a message.
ntest=0
R="bin/fnnc run $tmp/m.fnn --data $D"
expect_fail "needs '--init FILE'" $R --sample 10
expect_fail "needs '--sample N'" $R --init "$tmp/m.st" --temperature 0.5
expect_fail "temperature" $R --init "$tmp/m.st" --sample 10 --temperature 0
expect_fail "sample" $R --init "$tmp/m.st" --sample 0
expect_fail "not in the model's vocabulary" $R --init "$tmp/m.st" --sample 5 --prime "$(printf 'a\001b')"
expect_fail "does not train" $R --init "$tmp/m.st" --sample 5 --save "$tmp/x.st"
expect_fail "use '--sample N'" $R --init "$tmp/m.st" --predict "$D/sub.txt"
expect_fail "generates text" bin/fnnc run models/mlp.fnn --init "$tmp/m.st" --sample 5
model file sub.txt | sed 's/gru(64)/gru(64, bidirectional=true)/' >"$tmp/bi.fnn"
$TO bin/fnnc run "$tmp/bi.fnn" --data "$D" --steps 1 --quiet --save "$tmp/bi.st" >/dev/null 2>"$tmp/err" ||
	fail "the bidirectional model: exit $?: $(cat "$tmp/err")"
expect_fail "is bidirectional" bin/fnnc run "$tmp/bi.fnn" --data "$D" --init "$tmp/bi.st" --sample 5
: >"$D/empty.txt"
printf 'short text' >"$D/short.txt"
printf 'caf\303\251 caf\303\251 caf\303\251 caf\303\251 caf\303\251 caf\303\251 caf\303\251' >"$D/utf8.txt"
for f in missing empty short utf8; do
	model file "$f.txt" >"$tmp/$f.fnn"
done
model bytes utf8.txt | sed 's/160/128/g' >"$tmp/utf8b.fnn"
model file sub.txt | sed 's/160/64/g' >"$tmp/small.fnn"
expect_fail "missing.txt: cannot open" bin/fnnc run "$tmp/missing.fnn" --data "$D" --quiet
expect_fail "the text file is empty" bin/fnnc run "$tmp/empty.fnn" --data "$D" --quiet
expect_fail "make no sequence" bin/fnnc run "$tmp/short.fnn" --data "$D" --quiet
expect_fail "outside the model's vocabulary of 128" bin/fnnc run "$tmp/utf8b.fnn" --data "$D" --quiet
expect_fail "distinct bytes, but the model's vocabulary has 64" bin/fnnc run "$tmp/small.fnn" --data "$D" --quiet
expect_fail "leaves no validation samples" bin/fnnc run "$tmp/utf8.fnn" --data "$D" --quiet
head -c 20000 "$D/sub.txt" >"$D/head.txt"
model file head.txt >"$tmp/head.fnn"
expect_fail "vocabulary is not the one of the training text" \
	bin/fnnc run "$tmp/head.fnn" --data "$D" --quiet --resume "$tmp/m.st" --epochs 4
end_if_problems
echo "ok: $ntest error cases"
