#!/bin/sh
# bench/run.sh: the fnnc benchmark (`make bench` runs it after `make all data`).
#
# A benchmark, not a test: nothing here passes or fails on a number. It prints
# one table and writes the same table to build/bench/results.txt:
#   - the machine's FMA peak (bench/peak.c) on 1 and 2 threads;
#   - what the host gives two threads (bench/cores.c): the core-to-core round
#     trip of a cache line, each CPU's speed alone, and two independent loops'
#     speed over one's, at the start and at the end;
#   - for models/mnist.fnn (the CNN) and models/mlp.fnn, on --threads 1 and 2:
#     training images/s of the AOT trainer (median of RUNS runs, the thread
#     counts taking turns run by run), the GFLOP/s
#     that makes and its share of the peak, peak RSS, the final test accuracy;
#   - compile time of `fnnc run MODEL --steps 0` (median and range of at
#     least 9 runs): wall, CPU,
#     and LLVM's optimisation and code generation CPU time;
#   - the top kernels of a --profile run of the CNN on one thread;
#   - each model's step cost from the fastest call of each kernel on 1 and 2
#     threads (--profile), a figure that other load on the machine disturbs
#     far less than images/s;
#   - the same models in PyTorch (bench/torch_ref.py), if /usr/bin/python3 has
#     torch, and the fnnc/PyTorch ratio of images/s; then ROUNDS interleaved
#     rounds on 2 threads (one fnnc run, one PyTorch run), whose ratios share
#     the host's state of the same seconds;
#   - the inline exp/log/tanh/sigmoid against libm calls (bench/act.sh);
#   - the LSTM of models/seqmnist.fnn against torch.nn.LSTM (bench/seqmnist.sh);
#   - the CNN with both convolutions frozen against the fully trainable CNN
#     (bench/frozen.sh);
#   - LoRA fine-tuning (models/lora.fnn) against full fine-tuning: trainable
#     fraction, test accuracy, peak RSS (bench/lora.sh).
# The machine may be shared with other busy processes: compare numbers within
# one run. Settings (environment): BENCH_RUNS (3), BENCH_CNN_STEPS (150),
# BENCH_MLP_STEPS (1500), BENCH_TORCH (1; 0 skips PyTorch), BENCH_TORCH_BUDGET
# (40: seconds of PyTorch runs per model and thread count, see torch_run),
# BENCH_ROUNDS (5; 0 skips the interleaved rounds).
set -u
cd "$(dirname "$0")/.." || exit 1

OUT=build/bench
RES=$OUT/results.txt
RUNS=${BENCH_RUNS:-3}
TORCH_BUDGET=${BENCH_TORCH_BUDGET:-40}
ROUNDS=${BENCH_ROUNDS:-5}
CNN_STEPS=${BENCH_CNN_STEPS:-150}
MLP_STEPS=${BENCH_MLP_STEPS:-1500}  # a 2-thread run of 600 steps lasted 0.2 s and moved by 10 % from run to run
BATCH=64
THREADS="1 2"
FNNC=bin/fnnc
T_START=$(date +%s%N)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$OUT"
# Compilations are cold unless a figure says otherwise: no compile cache.
export FNNC_CACHE=off
rm -f "$OUT"/*.csv "$OUT"/*.rss "$OUT"/*.err

say() { echo "bench [$(awk -v a="$T_START" -v b="$(date +%s%N)" 'BEGIN { printf "%4.0fs", (b - a) / 1e9 }')]: $*" >&2; }
now_ns() { date +%s%N; }
. bench/lib.sh

for f in "$FNNC" data/mnist/train-images-idx3-ubyte; do
  [ -e "$f" ] || { echo "bench: $f is missing: run 'make all data' first" >&2; exit 1; }
done
TIME=/usr/bin/time
[ -x "$TIME" ] || { say "/usr/bin/time is missing: no peak RSS (apt-get install time)"; TIME=; }


# --- Training FLOPs per image --------------------------------------------
# Counted from the layer shapes; only the contractions (conv, dense) count,
# one multiply-add = 2 flops. Elementwise ops, pooling, the loss and the Adam
# update (per step, not per image) are left out.
#   forward MACs:  conv  = H_out * W_out * C_out * (K * K * C_in)
#                  dense = N_in * N_out
#   backward MACs: the weight gradient of every layer costs as much as its
#                  forward pass, and so does the input gradient of every layer
#                  but the first (the data needs no gradient), so
#   train MACs = 3 * forward MACs - forward MACs of the first layer
#   train FLOPs per image = 2 * train MACs
# CNN: conv 1->32 3x3 on 28x28, pool, conv 32->64 3x3 on 14x14, pool,
#      dense 3136->10.
CNN_L1=$((28 * 28 * 32 * 3 * 3 * 1))   # 225792
CNN_L2=$((14 * 14 * 64 * 3 * 3 * 32))  # 3612672
CNN_L3=$((7 * 7 * 64 * 10))            # 31360
CNN_FWD=$((CNN_L1 + CNN_L2 + CNN_L3))
CNN_FLOPS=$((2 * (3 * CNN_FWD - CNN_L1)))  # 22767360
# MLP: dense 784->256, 256->128, 128->10.
MLP_L1=$((784 * 256))
MLP_FWD=$((MLP_L1 + 256 * 128 + 128 * 10))
MLP_FLOPS=$((2 * (3 * MLP_FWD - MLP_L1)))  # 1007104
# conv2's forward, input gradient and weight gradient, each at batch 64:
# 2 * 64 * CNN_L2 FLOPs as a direct convolution. As Winograd F(2x2,3x3) the
# GEMMs multiply 16 products per 2x2 outputs instead of 36 (the transforms
# only add): 16/36 of that.
CONV2_FLOPS=$((2 * 64 * CNN_L2))         # 462422016
CONV2_WINO_FLOPS=$((CONV2_FLOPS * 16 / 36))  # 205520896

# --- 1. FMA peak --------------------------------------------------------------
say "FMA peak (bench/peak.c)"
PEAK1=- PEAK2=- CPEAK2=- PEAK_ISA=-
if cc -std=c11 -O2 -march=native -pthread bench/peak.c -o "$OUT/peak" 2>"$OUT/peak.err"; then
  "$OUT/peak" 2 >"$OUT/peak.txt" 2>>"$OUT/peak.err"
  PEAK1=$(sed -n 's/^peak threads=1 gflops=\([0-9.]*\).*/\1/p' "$OUT/peak.txt")
  PEAK2=$(sed -n 's/^peak threads=2 gflops=\([0-9.]*\).*/\1/p' "$OUT/peak.txt")
  CPEAK2=$(sed -n 's/^peak threads=2 .*cpu_gflops=\([0-9.]*\).*/\1/p' "$OUT/peak.txt")
  PEAK_ISA=$(awk '/isa=/ { sub("isa=", "", $2); sub("gflops=", "", $3); printf "%s%s %s", s, $2 "@" substr($1, 9) "t", $3; s = ", " }' "$OUT/peak.txt")
  : "${PEAK1:=-}" "${PEAK2:=-}" "${CPEAK2:=-}"
else
  say "peak.c did not compile: $(head -1 "$OUT/peak.err")"
fi
peak_for() { if [ "$1" = 1 ]; then echo "$PEAK1"; else echo "$PEAK2"; fi; }

# What the host gives two threads: the 2-thread figures below cannot scale
# better than `corun`, and every line one thread writes and the other reads
# costs about half of `roundtrip_ns`.
CORES_OK=0
if cc -std=c11 -O2 -pthread bench/cores.c -o "$OUT/cores" 2>"$OUT/cores.err"; then CORES_OK=1; fi
cores_line() {
  [ $CORES_OK = 1 ] || { echo "bench/cores.c did not compile: $(head -1 "$OUT/cores.err")"; return; }
  "$OUT/cores" >"$OUT/cores.txt" 2>&1
  echo "core-to-core round trip $(sed -n 's/^roundtrip_ns=//p' "$OUT/cores.txt") ns;" \
    "CPU 1 alone runs $(sed -n 's/^cpu1_vs_cpu0=//p' "$OUT/cores.txt")x as fast as CPU 0;" \
    "two independent loops run $(sed -n 's/^corun=\([0-9.]*\) corun_min=\([0-9.]*\) corun_max=\([0-9.]*\)/\1x one (range \2-\3x)/p' "$OUT/cores.txt")"
}
say "host (bench/cores.c)"
CORES0=$(cores_line)

# --- 4. Compile time ----------------------------------------------------------
# fnnc run MODEL --steps 0 with FNNC_TIME=1: the wall time, the user+sys CPU
# time, and the CPU time the compile threads spent in LLVM (reading and
# optimising the parts, generating code) for the training step. A run takes
# a fraction of a second and the machine's speed drifts, so there are at
# least 9 runs, and the range is printed with the median.
# Every compile here is cold (FNNC_CACHE=off, set at the top), as the first
# compilation of a model is; the warm figure (the compile cache) comes after.
CRUNS=$RUNS
[ "$CRUNS" -ge 9 ] || CRUNS=9
for m in mnist mlp; do
  say "compile time: fnnc run models/$m.fnn --steps 0 (x$CRUNS)"
  : >"$OUT/compile_$m.txt"
  : >"$OUT/compile_${m}_cpu.txt"
  : >"$OUT/compile_${m}_llvm.txt"
  i=0
  while [ $i -lt "$CRUNS" ]; do
    i=$((i + 1))
    t0=$(now_ns)
    if FNNC_TIME=1 ${TIME:+$TIME -f "%U %S" -o "$OUT/compile_$m.cpu"} "$FNNC" run "models/$m.fnn" --steps 0 \
      >/dev/null 2>"$OUT/compile_$m.log"; then
      t1=$(now_ns)
      awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }' >>"$OUT/compile_$m.txt"
      [ -n "$TIME" ] && awk '{ print $1 + $2 }' "$OUT/compile_$m.cpu" >>"$OUT/compile_${m}_cpu.txt"
      sed -n 's/.*of fnn_train_step .*CPU: reading and optimisation \([0-9.]*\) s, code generation \([0-9.]*\) s.*/\1 \2/p' \
        "$OUT/compile_$m.log" >>"$OUT/compile_${m}_llvm.txt"
    else
      cat "$OUT/compile_$m.log" >>"$OUT/compile_$m.err"
    fi
  done
done
# The same with the compile cache: one run fills it, CRUNS runs read it.
rm -rf "$OUT/cache"
for m in mnist mlp; do
  say "compile time from the compile cache: fnnc run models/$m.fnn --steps 0 (x$CRUNS)"
  : >"$OUT/compile_${m}_warm.txt"
  FNNC_CACHE="$OUT/cache" "$FNNC" run "models/$m.fnn" --steps 0 >/dev/null 2>&1
  i=0
  while [ $i -lt "$CRUNS" ]; do
    i=$((i + 1))
    t0=$(now_ns)
    FNNC_CACHE="$OUT/cache" "$FNNC" run "models/$m.fnn" --steps 0 >/dev/null 2>&1 &&
      awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { print (b - a) / 1e9 }' >>"$OUT/compile_${m}_warm.txt"
  done
done
# wall_range FILE FORMAT: "W s wall (LO-HI)", the median and range of FILE's seconds.
wall_range() {
  echo "$(fmt "$2" "$(median <"$1")") s wall ($(fmt "$2" "$(sort -n "$1" | head -n 1)")-$(fmt "$2" "$(sort -n "$1" | tail -n 1)"))"
}

# compile_line MODEL: "W s wall, C s CPU (LLVM CPU: optimisation O s, code generation G s)"
compile_line() {
  c=$(median <"$OUT/compile_${1}_cpu.txt")
  o=$(awk '{ print $1 }' "$OUT/compile_${1}_llvm.txt" | median)
  g=$(awk '{ print $2 }' "$OUT/compile_${1}_llvm.txt" | median)
  echo "$(wall_range "$OUT/compile_$1.txt" %.2f), $(fmt %.2f "$c") s CPU (LLVM CPU: optimisation $(fmt %.2f "$o") s," \
    "code generation $(fmt %.2f "$g") s)"
}

# --- 7. PyTorch (run right after fnnc on the same model and thread count, so
# that both see about the same load on a shared machine) -----------------------
TORCH=0
TORCH_INFO="not available (/usr/bin/python3 cannot import torch): comparison skipped"
if [ "${BENCH_TORCH:-1}" != 0 ] && [ -x /usr/bin/python3 ] &&
  torch_py -c 'import torch' 2>/dev/null; then
  TORCH=1
  blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null)
  TORCH_INFO="torch $(torch_py -c 'import torch; print(torch.__version__)' 2>/dev/null), libblas.so.3 -> ${blas:-?}"
  case $blas in
  *openblas-pthread*) ;;
  *) TORCH_INFO="$TORCH_INFO (not OpenBLAS's pthreads build: apt-get install libopenblas0-pthread for PyTorch's fastest dense layers)" ;;
  esac
fi
# torch_run MODEL THREADS STEPS: bench/torch_ref.py, up to RUNS runs within
# TORCH_BUDGET seconds (PyTorch is far slower here; the first run always runs).
torch_run() {
  [ $TORCH = 1 ] || return 0
  if [ "$1" = mnist ]; then tm=cnn; else tm=mlp; fi
  say "pytorch $tm --steps $3 --threads $2 (up to $RUNS runs in ${TORCH_BUDGET}s)"
  torch_py bench/torch_ref.py \
    --model $tm --steps "$3" --threads "$2" --batch $BATCH --runs "$RUNS" --budget "$TORCH_BUDGET" \
    >"$OUT/torch_$1_t$2.txt" 2>"$OUT/torch_$1_t$2.err" ||
    say "torch_ref.py failed: $(tail -2 "$OUT/torch_$1_t$2.err")"
}

# --- 2, 3, 5. Training rate, GFLOP/s, peak RSS ---------------------------------
# One row per model and thread count; fields: model threads steps img/s rss cpu acc loss
# (cpu = the trainer's CPU time / wall time, from /usr/bin/time, mean of the runs)
ROWS=$OUT/rows.txt
: >"$ROWS"
for m in mnist mlp; do
  if [ $m = mnist ]; then steps=$CNN_STEPS; else steps=$MLP_STEPS; fi
  say "compile trainer: $FNNC models/$m.fnn -o $OUT/$m"
  if ! "$FNNC" "models/$m.fnn" -o "$OUT/$m" 2>"$OUT/$m.err"; then
    say "fnnc failed on models/$m.fnn: $(head -3 "$OUT/$m.err")"
    for t in $THREADS; do
      echo "$m $t $steps - - - - -" >>"$ROWS"
      torch_run $m "$t" "$steps"
    done
    continue
  fi
  # The thread counts take turns, run by run: the machine's speed drifts over
  # minutes, and the 2-thread/1-thread ratio should not measure that drift.
  for t in $THREADS; do
    : >"$OUT/${m}_t$t.rates"
    : >"$OUT/${m}_t$t.rss"
  done
  i=0
  while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    for t in $THREADS; do
      say "train $m --steps $steps --threads $t (run $i/$RUNS)"
      log=$OUT/${m}_t${t}_r$i.csv
      if [ -n "$TIME" ]; then
        $TIME -f '%M %e %U %S' -o "$OUT/rss.tmp" "$OUT/$m" --steps "$steps" --batch $BATCH --threads "$t" \
          --quiet --log "$log" >/dev/null 2>>"$OUT/${m}_t$t.err"
        rc=$?
        tail -1 "$OUT/rss.tmp" >>"$OUT/${m}_t$t.rss"
      else
        "$OUT/$m" --steps "$steps" --batch $BATCH --threads "$t" --quiet --log "$log" \
          >/dev/null 2>>"$OUT/${m}_t$t.err"
        rc=$?
      fi
      if [ $rc -ne 0 ]; then
        say "trainer failed (exit $rc): $(tail -2 "$OUT/${m}_t$t.err")"
        continue
      fi
      csv_field "$log" images_per_s >>"$OUT/${m}_t$t.rates"
    done
  done
  for t in $THREADS; do
    rate=$(median <"$OUT/${m}_t$t.rates")
    # peak RSS: the largest of the runs, in MB (time's %M is in KiB)
    rss=$(awk '$1 ~ /^[0-9]+$/ && $1 > r { r = $1 } END { print r ? r / 1024 : "-" }' "$OUT/${m}_t$t.rss")
    cpu=$(awk '$1 ~ /^[0-9]+$/ && $2 > 0 { s += ($3 + $4) / $2; n++ } END { print n ? 100 * s / n : "-" }' "$OUT/${m}_t$t.rss")
    acc=$(csv_field "$OUT/${m}_t${t}_r1.csv" test_acc)
    loss=$(csv_field "$OUT/${m}_t${t}_r1.csv" test_loss)
    echo "$m $t $steps $rate $rss $cpu $acc $loss" >>"$ROWS"
  done
  for t in $THREADS; do torch_run $m "$t" "$steps"; done
done

# --- 5b. Interleaved rounds against PyTorch (2 threads) ----------------------------
# PyTorch's rate moves by up to 2x from one minute to the next, more than
# fnnc's: a ratio of two medians taken a minute apart measures that. Here each
# round runs fnnc, then PyTorch, on the same model; the ratio is per round.
: >"$OUT/rounds.txt"
if [ $TORCH = 1 ] && [ "$ROUNDS" -gt 0 ]; then
  r=0
  while [ $r -lt "$ROUNDS" ]; do
    r=$((r + 1))
    for m in mnist mlp; do
      [ -x "$OUT/$m" ] || continue
      if [ $m = mnist ]; then tm=cnn st=$CNN_STEPS; else tm=mlp st=$MLP_STEPS; fi
      say "round $r/$ROUNDS: $m and pytorch $tm, --steps $st --threads 2"
      "$OUT/$m" --steps "$st" --batch $BATCH --threads 2 --quiet --log "$OUT/round.csv" >/dev/null 2>&1 || continue
      f=$(csv_field "$OUT/round.csv" images_per_s)
      p=$(torch_py bench/torch_ref.py --model $tm --steps "$st" --threads 2 --batch $BATCH --runs 1 2>/dev/null |
        sed -n 's/.*images_per_s=\([0-9.]*\).*/\1/p' | tail -1)
      [ -n "$p" ] && echo "$m $f $p" >>"$OUT/rounds.txt"
    done
  done
fi
# round_line MODEL: "N rounds: fnnc F0-F1, PyTorch P0-P1, ratio R0-R1, median M"
round_line() {
  awk -v m="$1" '$1 == m && $3 > 0 { n++; f[n] = $2; p[n] = $3; q[n] = $2 / $3 }
    function lo(a, i, x) { x = a[1]; for (i = 2; i <= n; i++) if (a[i] < x) x = a[i]; return x }
    function hi(a, i, x) { x = a[1]; for (i = 2; i <= n; i++) if (a[i] > x) x = a[i]; return x }
    END {
      if (!n) { print "-"; exit }
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (q[j] < q[i]) { t = q[i]; q[i] = q[j]; q[j] = t }
      med = n % 2 ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2
      printf "%d rounds: fnnc %.0f-%.0f, PyTorch %.0f-%.0f images/s; fnnc/pt %.2f-%.2fx, median %.2fx\n",
        n, lo(f), hi(f), lo(p), hi(p), q[1], q[n], med
    }' "$OUT/rounds.txt"
}

# --- 6. Per-kernel profile of the CNN ----------------------------------------------
PROF=$OUT/profile.txt
PROF_OK=0
if [ -x "$OUT/mnist" ] && "$OUT/mnist" --help 2>&1 | grep -q -- --profile; then
  say "profile: mnist --steps $CNN_STEPS --threads 1 --profile"
  if "$OUT/mnist" --steps "$CNN_STEPS" --batch $BATCH --threads 1 --quiet --profile \
    --log "$OUT/mnist_profile.csv" >/dev/null 2>"$PROF" && grep -q '^profile:' "$PROF"; then
    PROF_OK=1
  fi
fi

# --- 6b. The step's cost from the fastest call of each kernel -----------------------
# On a machine shared with other work, a kernel call is slowed whenever another
# process holds a core, never sped up; the fastest of many calls of each kernel,
# added up per step, is what a step costs when both cores are free. --profile
# prints that sum; the best of RUNS runs per model and thread count is kept.
FAST=$OUT/fastest.txt
: >"$FAST"
for m in mnist mlp; do
  if [ $m = mnist ]; then steps=$((CNN_STEPS / 2)); else steps=$MLP_STEPS; fi
  [ -x "$OUT/$m" ] || continue
  say "fastest calls: $m --steps $steps --threads $THREADS --profile (x$RUNS, taking turns)"
  i=0
  while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    for t in $THREADS; do
      "$OUT/$m" --steps "$steps" --batch $BATCH --threads "$t" --quiet --profile 2>&1 >/dev/null |
        sed -n "s/^profile: train_step: \([0-9.]*\) us per call.*/$m $t \1/p" >>"$FAST"
    done
  done
done
# fastest MODEL THREADS: the smallest step cost of the runs, in us
fastest() { awk -v m="$1" -v t="$2" '$1 == m && $2 == t && (b == "" || $3 < b) { b = $3 } END { print b == "" ? "-" : b }' "$FAST"; }

# --- 8. Inline transcendentals against libm calls (bench/act.sh) ---------------
say "transcendentals: bench/act.sh, inline and FNNC_LIBM=1 (x$RUNS)"
BENCH_RUNS=$RUNS sh bench/act.sh "$OUT" >"$OUT/act.txt" 2>"$OUT/act.err" ||
  say "bench/act.sh failed: $(tail -2 "$OUT/act.err")"

# --- 9. The LSTM (models/seqmnist.fnn) next to PyTorch's nn.LSTM (bench/seqmnist.sh)
say "recurrent: bench/seqmnist.sh (x$RUNS)"
BENCH_RUNS=$RUNS BENCH_TORCH=$TORCH sh bench/seqmnist.sh 2>"$OUT/seq.err" | grep -E '^(fnnc|pytorch) ' >"$OUT/seq.txt" ||
  say "bench/seqmnist.sh failed: $(tail -2 "$OUT/seq.err")"

# --- 10. The CNN with its convolutions frozen (bench/frozen.sh) ------------------
say "frozen convolutions: bench/frozen.sh (x$RUNS)"
BENCH_RUNS=$RUNS BENCH_FROZEN_STEPS=$CNN_STEPS sh bench/frozen.sh "$OUT" >"$OUT/frozen.txt" 2>"$OUT/frozen.err" ||
  say "bench/frozen.sh failed: $(tail -2 "$OUT/frozen.err")"

# --- 11. LoRA fine-tuning against full fine-tuning (bench/lora.sh) ------------
say "LoRA: bench/lora.sh (MNIST-pretrained MLP, Fashion-MNIST)"
sh bench/lora.sh >"$OUT/lora.txt" 2>"$OUT/lora.err" || say "bench/lora.sh failed: $(tail -2 "$OUT/lora.err")"

torch_rate() {
  v=$(sed -n 's/.*images_per_s=\([0-9.]*\).*/\1/p' "$OUT/torch_$1_t$2.txt" 2>/dev/null | tail -1)
  echo "${v:--}"
}
# "N runs" of the torch line, and "of S steps" when the budget cut the steps
torch_runs() {
  sed -n 's/.* steps=\([0-9]*\) runs=\([0-9]*\) .*/\2 \1/p' "$OUT/torch_$1_t$2.txt" 2>/dev/null | tail -1 |
    awk -v s="$3" '{ printf "%sx", $1; if ($2 != s) printf "(%s steps)", $2 }'
}

# --- The table --------------------------------------------------------------------
say "host again (bench/cores.c)"
CORES1=$(cores_line)
T_END=$(now_ns)
{
  echo "fnnc benchmark  $(date '+%Y-%m-%d %H:%M')  $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- compiler runtime 2>/dev/null || echo '+changes')"
  echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores;" \
    "load average $LOAD0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
  echo
  echo "FMA peak (fp32, bench/peak.c, best of 5): 1 thread $(fmt %.1f "$PEAK1") GFLOP/s," \
    "2 threads $(fmt %.1f "$PEAK2") GFLOP/s ($(fmt %.1f "$CPEAK2") per CPU-second of each thread)"
  echo "  by width (wall GFLOP/s): $PEAK_ISA"
  echo "host (bench/cores.c, medians of 7): at the start, $CORES0"
  echo "  at the end, $CORES1"
  echo "training FLOPs per image: CNN $(fmt %.2f "$(div $CNN_FLOPS 1e6)") MFLOP," \
    "MLP $(fmt %.3f "$(div $MLP_FLOPS 1e6)") MFLOP (contractions only: 2 x (3 x fwd MACs - first layer's))"
  echo "compile time (fnnc run MODEL --steps 0, medians of $CRUNS; FNNC_TIME=1 shows every stage):"
  echo "  CNN $(compile_line mnist)"
  echo "  MLP $(compile_line mlp)"
  echo "  from the compile cache (a second compilation of the same model): CNN $(wall_range "$OUT/compile_mnist_warm.txt" %.3f), MLP $(wall_range "$OUT/compile_mlp_warm.txt" %.3f)"
  echo
  echo "training, batch $BATCH, AOT trainer, images/s = median of $RUNS runs (log's images_per_s)"
  printf '%-5s %3s %6s %10s %8s %6s %5s %7s %8s %9s %11s %8s\n' \
    model thr steps "img/s" "GFLOP/s" "%peak" "cpu%" "RSS MB" test_acc test_loss "torch img/s" "fnnc/pt"
  while read -r m t steps rate rss cpu acc loss; do
    if [ $m = mnist ]; then name=CNN flops=$CNN_FLOPS; else name=MLP flops=$MLP_FLOPS; fi
    gf=$(div "$(mul "$rate" $flops)" 1e9)
    pct=$(mul "$(div "$gf" "$(peak_for "$t")")" 100)
    if [ $TORCH = 1 ]; then pt=$(torch_rate $m "$t"); else pt=-; fi
    printf '%-5s %3s %6s %10s %8s %6s %5s %7s %8s %9s %11s %8s\n' $name "$t" "$steps" \
      "$(fmt %.0f "$rate")" "$(fmt %.1f "$gf")" "$(fmt %.1f%% "$pct")" "$(fmt %.0f "$cpu")" "$(fmt %.0f "$rss")" \
      "$(fmt %.4f "$acc")" "$(fmt %.4f "$loss")" "$(fmt %.0f "$pt")" "$(fmt %.2fx "$(div "$rate" "$pt")")"
  done <"$ROWS"
  echo "  %peak: of the measured wall-time peak on as many threads; cpu%: the trainer's CPU time /"
  echo "  wall time (whole run, mean of runs); RSS: max of the runs; test_*: the first run's log"
  for m in mnist mlp; do
    if [ $m = mnist ]; then name=CNN; else name=MLP; fi
    r1=$(awk -v m=$m '$1 == m && $2 == 1 { print $4 }' "$ROWS")
    r2=$(awk -v m=$m '$1 == m && $2 == 2 { print $4 }' "$ROWS")
    # the runtime promises bitwise-identical results for any thread count
    same=differ
    if [ -f "$OUT/${m}_t1_r1.csv" ] && [ -f "$OUT/${m}_t2_r1.csv" ] &&
      [ "$(cut -d, -f1-5 "$OUT/${m}_t1_r1.csv")" = "$(cut -d, -f1-5 "$OUT/${m}_t2_r1.csv")" ]; then
      same=identical
    fi
    echo "$name: 2 threads / 1 thread = $(fmt %.2fx "$(div "${r2:--}" "${r1:--}")");" \
      "losses and accuracy on 1 and 2 threads: $same"
  done
  echo "step cost from the fastest call of each kernel (--profile; best of $RUNS runs; robust to other load):"
  for m in mnist mlp; do
    if [ $m = mnist ]; then name=CNN; else name=MLP; fi
    f1=$(fastest $m 1) f2=$(fastest $m 2)
    echo "  $name: 1 thread $(fmt %.0f "$f1") us, 2 threads $(fmt %.0f "$f2") us per step;" \
      "2 threads / 1 thread = $(fmt %.2fx "$(div "$f1" "$f2")")"
  done
  if [ $TORCH = 1 ]; then
    # PyTorch is not always faster on 2 threads than on 1: against its faster run too.
    for m in mnist mlp; do
      if [ $m = mnist ]; then name=CNN; else name=MLP; fi
      r2=$(awk -v m=$m '$1 == m && $2 == 2 { print $4 }' "$ROWS")
      p1=$(torch_rate $m 1) p2=$(torch_rate $m 2)
      pb=$(printf '%s\n%s\n' "$p1" "$p2" | best)
      echo "$name on 2 threads against PyTorch's faster thread count ($(fmt %.0f "$pb") images/s): $(fmt %.2fx "$(div "${r2:--}" "$pb")")"
    done
  fi
  if [ -s "$OUT/rounds.txt" ]; then
    echo "interleaved rounds, 2 threads (one fnnc run, then one PyTorch run, per model):"
    echo "  CNN: $(round_line mnist)"
    echo "  MLP: $(round_line mlp)"
  fi
  echo "PyTorch: $TORCH_INFO"
  if [ $TORCH = 1 ]; then
    echo "  $(grep -h '^config:' "$OUT"/torch_mnist_t2.txt "$OUT"/torch_mlp_t2.txt 2>/dev/null | head -1)"
    echo "  bench/torch_ref.py, the same steps and batch, data preloaded, warm-up excluded; img/s = median of" \
      "the runs that fit in ${TORCH_BUDGET}s:$(for m in mnist mlp; do for t in $THREADS; do
        if [ $m = mnist ]; then n=CNN st=$CNN_STEPS; else n=MLP st=$MLP_STEPS; fi
        printf ' %s/%st %s' $n "$t" "$(torch_runs $m "$t" $st)"; done; done)"
  fi
  echo
  if [ $PROF_OK = 1 ]; then
    echo "per-kernel time, CNN --threads 1 --steps $CNN_STEPS --profile (top 10; eval_step = the final test evaluation):"
    sed -n '1,2p' "$PROF"
    sed -n '3,$p' "$PROF" | grep -E '^[[:space:]]+[a-z_]+[[:space:]]+k' | head -10
    awk '$1 == "train_step" || $1 == "eval_step" { ms[$1] += $3 }
      END { printf "  all train_step kernels %.1f ms, all eval_step kernels %.1f ms\n", ms["train_step"], ms["eval_step"] }' "$PROF"
    echo "  images/s of the profiled run: $(fmt %.0f "$(csv_field "$OUT/mnist_profile.csv" images_per_s)")"
    # conv2's three kernels: the fastest call of the largest train_step kernel
    # of each kind (conv1's are smaller), against the 1-thread peak.
    bin/fnnc models/mnist.fnn --emit=fused >"$OUT/mnist.fused" 2>/dev/null
    for kind in conv2d conv2d_dx conv2d_dw; do
      pat=_$kind; [ $kind = conv2d ] && pat=_conv2d_add
      us=$(awk -v k="$pat" '$1 == "train_step" && index($2, k) && $NF + 0 > best { best = $NF + 0 } END { print best + 0 }' "$PROF")
      g=$(div "$CONV2_FLOPS" "$(mul "$us" 1000)")
      line="  conv2 $kind: fastest call $(fmt %.2f "$(div "$us" 1000)") ms: $(fmt %.1f "$g") GFLOP/s of the direct convolution's $(fmt %.1f "$(div $CONV2_FLOPS 1e6)") MFLOP ($(fmt %.0f "$(mul 100 "$(div "$g" "$PEAK1")")") % of peak)"
      if grep -q "# $kind (Winograd" "$OUT/mnist.fused"; then
        gw=$(div "$CONV2_WINO_FLOPS" "$(mul "$us" 1000)")
        line="$line; as Winograd it executes $(fmt %.1f "$(div $CONV2_WINO_FLOPS 1e6)"): $(fmt %.1f "$gw") GFLOP/s, $(fmt %.0f "$(mul 100 "$(div "$gw" "$PEAK1")")") % of peak"
      fi
      echo "$line"
    done
  else
    echo "profile: not available"
  fi
  echo
  echo "exp/log/tanh/sigmoid inline (compiler/vmath.c) against libm calls (FNNC_LIBM=1), bench/act.sh:"
  cat "$OUT/act.txt"
  echo
  echo "models/seqmnist.fnn (lstm(128) over 28 rows, batch 64) against torch.nn.LSTM, bench/seqmnist.sh:"
  sed 's/^/  /' "$OUT/seq.txt"
  echo
  echo "models/mnist.fnn with 'freeze conv1..conv2' against the fully trainable model, training images/s (bench/frozen.sh):"
  sed 's/^/  /' "$OUT/frozen.txt"
  echo
  cat "$OUT/lora.txt"
  echo
  echo "bench took $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.0f", (b - a) / 1e9 }') s;" \
    "logs in $OUT/"
} >"$RES"
echo >&2
cat "$RES"
