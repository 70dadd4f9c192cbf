// profile.c: --profile, the time spent in each compiled kernel.
//
// Compiled entry points call fnn_prof_begin/fnn_prof_end around every kernel
// with FnnArgs.prof; the trainer points that at an FnnProf when --profile is
// given (NULL otherwise, which makes both calls return at once).
//
// Besides each kernel's total it keeps the fastest call with a full batch
// (rt_prof_rows: an epoch's last batch may be shorter), which a machine
// shared with other work disturbs far less than the total (a preempted call is
// slow, never fast), and the time outside the first entry's kernels: before
// its first kernel (the batch gather, the loss readback, logging, and any
// evaluation in between) and between its kernels (the glue that calls the
// pool, and these timers themselves).
#define _POSIX_C_SOURCE 200809L
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  int64_t n;
  double *sec, *min;
  double *min_short;  // the fastest call of a short batch, for kernels never given a full one
  int64_t *calls;
  double *gap;      // per kernel: time since the previous kernel call ended
  double last_end;  // when the previous kernel call ended (0: none yet)
  int short_batch;  // the current step has fewer rows than a full batch
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
  double t1 = now(), dt = t1 - t0;
  p->sec[kernel] += dt;
  // The fastest call is a full batch's: the last, shorter batch of an epoch
  // would otherwise set it for kernels whose work scales with the rows.
  double *m = p->short_batch ? p->min_short : p->min;
  if (m[kernel] == 0 || dt < m[kernel]) m[kernel] = dt;
  p->calls[kernel]++;
  if (p->last_end > 0 && t0 > p->last_end) p->gap[kernel] += t0 - p->last_end;
  p->last_end = t1;
}

void rt_prof_rows(void *prof, int64_t rows, int64_t batch) {
  if (prof) ((FnnProf *)prof)->short_batch = rows < batch;
}

void *rt_prof_new(int64_t nkernels) {
  FnnProf *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = nkernels;
  p->sec = calloc((size_t)(nkernels + 1), sizeof(double));
  p->min = calloc((size_t)(nkernels + 1), sizeof(double));
  p->min_short = calloc((size_t)(nkernels + 1), sizeof(double));
  p->gap = calloc((size_t)(nkernels + 1), sizeof(double));
  p->calls = calloc((size_t)(nkernels + 1), sizeof(int64_t));
  if (!p->sec || !p->min || !p->min_short || !p->gap || !p->calls) {
    free(p->sec);
    free(p->min);
    free(p->min_short);
    free(p->gap);
    free(p->calls);
    free(p);
    return NULL;
  }
  return p;
}

// Prints one line per kernel that ran, slowest first, to stderr:
//   entry kernel total-ms share-of-kernel-time calls fastest-call-us
// then the sum of the fastest calls per step (what a step costs undisturbed)
// and the time outside kernels.
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
  for (int64_t i = 0; i < p->n; i++)
    if (p->min[i] == 0) p->min[i] = p->min_short[i];
  fprintf(stderr, "profile: %.1f ms in kernels\n", total * 1e3);
  fprintf(stderr, "  %-11s %-36s %10s %7s %7s %9s\n", "entry", "kernel", "ms", "share", "calls", "min_us");
  for (int64_t k = 0; k < p->n; k++) {
    int64_t i = order[k];
    if (!p->calls[i]) continue;
    fprintf(stderr, "  %-11s %-36s %10.1f %6.1f%% %7lld %9.1f\n", entry[i], name[i], p->sec[i] * 1e3,
            total > 0 ? 100 * p->sec[i] / total : 0, (long long)p->calls[i], p->min[i] * 1e6);
  }
  // Kernel 0 is the first kernel of the first entry (train_step in a trainer).
  double fast = 0, between = 0;
  for (int64_t i = 0; i < p->n && p->calls[0]; i++)
    if (p->calls[i] && !strcmp(entry[i], entry[0])) {
      fast += p->min[i] * (double)p->calls[i] / (double)p->calls[0];
      if (i > 0) between += p->gap[i];
    }
  if (p->calls[0])
    fprintf(stderr, "profile: %s: %.1f us per call from the fastest call of each kernel; outside kernels: "
                    "%.1f ms before the first kernel, %.1f ms between kernels\n",
            entry[0], fast * 1e6, p->gap[0] * 1e3, between * 1e3);
  if (fnn_threads() > 1) {
    fprintf(stderr, "profile: the threads' shares of the kernels split one block per thread at the end:");
    for (int t = 0; t < fnn_threads(); t++) fprintf(stderr, " %.3f", fnn_split_share(t));
    fprintf(stderr, " (moved %lld times)\n", (long long)fnn_split_moves());
  }
  free(order);
}

void rt_prof_free(void *prof) {
  FnnProf *p = prof;
  if (!p) return;
  free(p->sec);
  free(p->min);
  free(p->min_short);
  free(p->gap);
  free(p->calls);
  free(p);
}
