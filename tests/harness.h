// harness.h - shared by the C test drivers that link compiler files without
// the rest of the compiler (tests/backend, tests/vmath): the diagnostics hook
// compiler/util.c calls, the runtime entries the JIT resolves for compiled
// code, and CHECK.
#ifndef TESTS_HARNESS_H
#define TESTS_HARNESS_H

#include "fnnc.h"
#include "fnnrt.h"

#include <stdarg.h>
#include <stdio.h>

static int nerrors;  // error_plain calls
void error_plain(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fnnc: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  nerrors++;
}

// The runtime entries the JIT defines for compiled code: the thread pool runs
// the tasks in order on this thread; no profiling.
void fnn_parallel(FnnTask task, void *ctx, int64_t ntasks) {
  for (int64_t i = 0; i < ntasks; i++) task(ctx, i, 0);
}
void fnn_parallel_split(FnnTask task, void *ctx) { task(ctx, 0, 0); }
int64_t fnn_split_block(int64_t t, int64_t count, int64_t align, int64_t weight) { return t <= 0 ? 0 : count; }
int64_t fnn_split_at(int64_t t, int64_t count, int64_t align) { return t <= 0 ? 0 : count; }
int fnn_threads(void) { return 1; }
void fnn_sum_slots(float *out, const float *part, int64_t stride, int64_t n, int64_t ntasks) {
  for (int64_t i = 0; i < n; i++) {
    float acc = 0.0f;
    for (int64_t t = 0; t < ntasks; t++) acc += part[t * stride + i];
    out[i] = acc;
  }
}
double fnn_prof_begin(void *prof) { return 0; }
void fnn_prof_end(void *prof, int64_t kernel, double t0) {}

static int failures;  // failed CHECKs
#define CHECK(c, ...)                                       \
  do {                                                      \
    if (!(c)) {                                             \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
      fprintf(stderr, __VA_ARGS__);                         \
      fprintf(stderr, "\n");                                \
      failures++;                                           \
    }                                                       \
  } while (0)

#endif
