// util.c - small helpers shared by the runtime files: the seeded PRNG, aligned
// slabs, the clock, and the pieces of flag parsing (errors, numbers, hints).
//
// fnnrt.h is the runtime's only header (it is the contract with the compiler),
// so train.c and check.c repeat the prototypes of what they use from here, in a
// block marked "util.c". Keep those blocks in sync with the definitions below.
#define _DEFAULT_SOURCE  // MAP_ANONYMOUS
#include "rt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

//
// PRNG: xoshiro256** (Blackman and Vigna, 2018), seeded through splitmix64.
//
// Every random stream of the runtime is (seed, stream id): parameter i is
// initialised from stream 0x100+i, the shuffle of epoch e from stream 0x10000+e,
// and so on. A stream depends on nothing else, so results are reproducible across
// runs, machines and changes elsewhere in the model.
//
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void rt_rng_seed(uint64_t s[4], uint64_t seed, uint64_t stream) {
  uint64_t a = seed, b = stream ^ 0x5851f42d4c957f2dull;
  uint64_t x = splitmix64(&a) ^ (splitmix64(&b) * 0x2545f4914f6cdd1dull);
  for (int i = 0; i < 4; i++) s[i] = splitmix64(&x);
  if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;  // the all-zero state is a fixed point
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rt_rng_next(uint64_t s[4]) {
  uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return r;
}

// Uniform in [0, 1), 53 bits.
double rt_rng_unit(uint64_t s[4]) { return (double)(rt_rng_next(s) >> 11) * 0x1.0p-53; }

// Uniform integer in [0, n), unbiased (rejection of the short last interval).
uint64_t rt_rng_below(uint64_t s[4], uint64_t n) {
  if (n <= 1) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = rt_rng_next(s);
  while (r >= limit);
  return r % n;
}

// Standard normal (Box-Muller; one value per call, the pair's twin is dropped).
double rt_rng_normal(uint64_t s[4]) {
  double u = 1.0 - rt_rng_unit(s);  // (0, 1]
  double v = rt_rng_unit(s);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

//
// Messages. User errors are "PROG: error: ..." on stderr; hints follow them.
//
void rt_error(const char *prog, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "%s: error: ", prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void rt_hint(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("hint: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

double rt_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// The value of a hexadecimal digit, or -1.
int rt_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A zeroed, 64-byte aligned slab of `n` floats (never NULL on success, even for
// n == 0). On failure prints "cannot allocate" naming `what` and returns NULL.
// Memory that is read all over (a data set's rows by the batches; the
// activations by every kernel of a step) costs a TLB miss almost per access
// with 4 KB pages, and in a virtual machine the nested page walk costs
// microseconds; the page faults of first use cost as much again. Big buffers
// ask for transparent huge pages where the system allows them; nothing changes
// where it does not.
void rt_advise_huge(void *p, int64_t bytes) {
#ifdef MADV_HUGEPAGE
  enum { HUGE = 2 << 20 };
  if (!p || bytes < 2 * HUGE) return;
  uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, end = ((uintptr_t)p + (uintptr_t)bytes) & ~(uintptr_t)4095;
  if (end > a) madvise((void *)a, end - a, MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

// Zeroed, 64-byte aligned; big slabs on 2 MB boundaries in huge pages.
float *rt_alloc_floats(const char *prog, const char *what, int64_t n) {
  if (n < 0 || (uint64_t)n > (SIZE_MAX - 64) / sizeof(float)) {
    rt_error(prog, "cannot allocate %s: %lld floats is too many", what, (long long)n);
    return NULL;
  }
  size_t bytes = ((size_t)n * sizeof(float) + 63) & ~(size_t)63;
  if (bytes == 0) bytes = 64;
  size_t align = bytes >= (4u << 20) ? (2u << 20) : 64;
  bytes = (bytes + align - 1) & ~(align - 1);
  float *p = aligned_alloc(align, bytes);
  rt_advise_huge(p, (int64_t)bytes);
  if (!p) {
    rt_error(prog, "cannot allocate %s (%.1f MB)", what, (double)bytes / 1048576.0);
    return NULL;
  }
  memset(p, 0, bytes);
  return p;
}

//
// Flags.
//
// If argv[*i] is the flag `name` ("--epochs N" or "--epochs=N"): sets *val, moves
// *i past the value and returns 1; prints an error and returns -1 if the value is
// missing. Returns 0 if argv[*i] is another flag.
int rt_flag_value(const char *prog, int argc, char **argv, int *i, const char *name, const char **val) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n)) return 0;
  if (a[n] == '=') {
    *val = a + n + 1;
    if (!**val) {
      rt_error(prog, "'%s' needs a value", name);
      return -1;
    }
    return 1;
  }
  if (a[n]) return 0;
  if (*i + 1 >= argc || !strncmp(argv[*i + 1], "--", 2)) {
    rt_error(prog, "'%s' needs a value", name);
    return -1;
  }
  *val = argv[++*i];
  return 1;
}

// A whole number >= min. Returns 0, or -1 after an error naming the flag.
int rt_parse_int(const char *prog, const char *flag, const char *s, int64_t min, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || isspace((unsigned char)*s) || *end) {
    rt_error(prog, "'%s' needs a whole number, got '%s'", flag, s);
    return -1;
  }
  if (errno == ERANGE) {
    rt_error(prog, "'%s %s' is out of range", flag, s);
    return -1;
  }
  if (v < min) {
    rt_error(prog, "'%s' must be at least %lld, got %s", flag, (long long)min, s);
    return -1;
  }
  *out = v;
  return 0;
}

// A finite real number > 0. Returns 0, or -1 after an error naming the flag.
int rt_parse_pos_real(const char *prog, const char *flag, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || isspace((unsigned char)*s) || *end || !isfinite(v)) {
    rt_error(prog, "'%s' needs a number, got '%s'", flag, s);
    return -1;
  }
  if (!(v > 0)) {
    rt_error(prog, "'%s' must be greater than 0, got %s", flag, s);
    return -1;
  }
  *out = v;
  return 0;
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
static int edit_distance(const char *a, size_t n, const char *b, size_t m) {
  enum { MAXW = 64 };
  int rows[3][MAXW + 1];
  int *pp = rows[0], *p = rows[1], *c = rows[2];
  for (size_t j = 0; j <= m; j++) p[j] = (int)j;
  for (size_t i = 1; i <= n; i++) {
    c[0] = (int)i;
    for (size_t j = 1; j <= m; j++) {
      int cost = a[i - 1] != b[j - 1];
      int d = p[j] + 1;
      if (c[j - 1] + 1 < d) d = c[j - 1] + 1;
      if (p[j - 1] + cost < d) d = p[j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < d) d = pp[j - 2] + 1;
      c[j] = d;
    }
    int *t = pp;
    pp = p;
    p = c;
    c = t;
  }
  return p[m];
}

// "unknown flag" with a "did you mean" hint when one of `names` (NULL-terminated)
// is close; compares without any "=value" part.
void rt_unknown_flag(const char *prog, const char *arg, const char *const *names) {
  if (arg[0] != '-') {
    rt_error(prog, "unexpected argument '%s'", arg);
    rt_hint("every option is a flag, e.g. '--epochs 3'; see '%s --help'", prog);
    return;
  }
  rt_error(prog, "unknown flag '%s'", arg);
  size_t n = strcspn(arg, "=");
  if (n > 64) n = 64;
  int limit = (int)n / 3 > 1 ? (int)n / 3 : 1;
  const char *best = NULL;
  int bestd = limit + 1;
  for (const char *const *c = names; *c; c++) {
    size_t m = strlen(*c);
    if (m > 64) continue;
    int d = edit_distance(arg, n, *c, m);
    if (d < bestd) {
      bestd = d;
      best = *c;
    }
  }
  if (best) rt_hint("did you mean '%s'?", best);
  else rt_hint("see '%s --help' for the flags", prog);
}
