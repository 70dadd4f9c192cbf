# bench/lib.sh - shell helpers the benchmark scripts share (sourced).

# The median of the numbers on standard input, one per line ("-" if none).
median() {
  grep -E '^[0-9.eE+-]+$' | sort -g |
    awk '{a[NR] = $1} END {
      if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2];
      else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# The largest of the numbers on standard input ("-" if none).
best() { grep -E '^[0-9.eE+-]+$' | sort -g | tail -n 1 | grep . || echo -; }
# csv_field FILE NAME: NAME's column in the last row of a trainer's CSV log.
csv_field() {
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
    NR > 1 { v = $c } END { if (c && v != "") print v; else print "-" }' "$1" 2>/dev/null
}
# csv_mean FILE NAME: the mean of NAME's column over the rows of a CSV log.
csv_mean() {
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
    NR > 1 && c { s += $c; n++ } END { if (n) print s / n; else print "-" }' "$1" 2>/dev/null
}
# fmt FORMAT VALUE: printf of a number, or "-" when it is not one.
fmt() {
  case $2 in
    '' | -) echo "-" ;;
    *) awk -v f="$1" -v v="$2" 'BEGIN { printf f "\n", v }' ;;
  esac
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else print a / b }'; }
mul() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else print a * b }'; }
num() { fmt %.0f "$1"; }
ratio() { fmt %.2fx "$(div "$1" "$2")"; }  # a / b as "1.23x"
# profile_ms FILE ENTRY_RE KERNEL_RE: the milliseconds of the kernels of a
# --profile report whose entry and name match ("-" if none).
profile_ms() {
  awk -v e="$2" -v k="$3" '$1 ~ e && $2 ~ k && $3 ~ /^[0-9.]+$/ { ms += $3 }
    END { if (ms > 0) printf "%.1f\n", ms; else print "-" }' "$1"
}
# torch_py ARGS...: /usr/bin/python3 as the PyTorch reference runs it.
#   - OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset: this machine sets them for
#     old OpenBLAS builds, and they slow a current one.
#   - OPENBLAS_NUM_THREADS=1: PyTorch runs each operator on its own threads
#     (torch.set_num_threads); OpenBLAS's pthreads pool on top of them puts
#     twice as many busy threads as cores on the machine, and PyTorch's CNN
#     then trains at 800-1,900 images/s on 2 threads instead of 2,900-3,900
#     (measured 2026-12-07 with Debian's libopenblas0-pthread; the OpenMP
#     build of OpenBLAS and the reference BLAS were slower still).
torch_py() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$@"; }
