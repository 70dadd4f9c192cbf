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
