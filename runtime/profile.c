// profile.c: --profile, the time spent in each compiled kernel.
//
// Compiled entry points call fnn_prof_begin/fnn_prof_end around every kernel
// with FnnArgs.prof; the trainer points that at an FnnProf when --profile is
// given (NULL otherwise, which makes both calls return at once).
#define _POSIX_C_SOURCE 200809L
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
  int64_t n;
  double *sec;
  int64_t *calls;
} FnnProf;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double fnn_prof_begin(void *prof) { return prof ? now() : 0; }

void fnn_prof_end(void *prof, int64_t kernel, double t0) {
  FnnProf *p = prof;
  if (!p || kernel < 0 || kernel >= p->n) return;
  p->sec[kernel] += now() - t0;
  p->calls[kernel]++;
}

void *rt_prof_new(int64_t nkernels) {
  FnnProf *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = nkernels;
  p->sec = calloc((size_t)(nkernels + 1), sizeof(double));
  p->calls = calloc((size_t)(nkernels + 1), sizeof(int64_t));
  if (!p->sec || !p->calls) {
    free(p->sec);
    free(p->calls);
    free(p);
    return NULL;
  }
  return p;
}

// Prints one line per kernel that ran, slowest first, to stderr:
//   entry kernel total-ms share-of-kernel-time calls
void rt_prof_print(void *prof, const char *const *entry, const char *const *name) {
  FnnProf *p = prof;
  if (!p) return;
  double total = 0;
  for (int64_t i = 0; i < p->n; i++) total += p->sec[i];
  int64_t *order = malloc(sizeof(int64_t) * (size_t)(p->n + 1));
  if (!order) return;
  for (int64_t i = 0; i < p->n; i++) order[i] = i;
  for (int64_t i = 1; i < p->n; i++)  // insertion sort: a few dozen kernels
    for (int64_t j = i; j > 0 && p->sec[order[j]] > p->sec[order[j - 1]]; j--) {
      int64_t t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  fprintf(stderr, "profile: %.1f ms in kernels\n", total * 1e3);
  fprintf(stderr, "  %-11s %-36s %10s %7s %7s\n", "entry", "kernel", "ms", "share", "calls");
  for (int64_t k = 0; k < p->n; k++) {
    int64_t i = order[k];
    if (!p->calls[i]) continue;
    fprintf(stderr, "  %-11s %-36s %10.1f %6.1f%% %7lld\n", entry[i], name[i], p->sec[i] * 1e3,
            total > 0 ? 100 * p->sec[i] / total : 0, (long long)p->calls[i]);
  }
  free(order);
}

void rt_prof_free(void *prof) {
  FnnProf *p = prof;
  if (!p) return;
  free(p->sec);
  free(p->calls);
  free(p);
}
