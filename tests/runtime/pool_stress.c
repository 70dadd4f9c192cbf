// pool_stress.c: the thread pool (runtime/pool.c) under many calls.
//
// Each call of fnn_parallel must run every task index exactly once, on a
// thread id below the thread count, and return only when all have finished;
// calls follow each other at once (workers still polling) or after a pause
// longer than the workers' polling (workers asleep, woken by the call), and
// the thread count changes between rounds. run.sh builds this once as is and
// once with ThreadSanitizer, which reports any data race in the protocol.
#define _POSIX_C_SOURCE 200809L
#include "fnnrt.h"

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

enum { MAXTASKS = 64, CALLS = 4000 };

typedef struct {
  _Atomic int ran[MAXTASKS];
  _Atomic int bad_tid;
  int nthreads;
} Job;

static void task(void *ctx, int64_t t, int64_t tid) {
  Job *j = ctx;
  atomic_fetch_add(&j->ran[t], 1);
  if (tid < 0 || tid >= j->nthreads) atomic_store(&j->bad_tid, 1);
}

int main(void) {
  static const int counts[] = {2, 3, 4, 2, 1, 3, 2};
  unsigned seed = 12345;
  int failures = 0;
  for (size_t r = 0; r < sizeof counts / sizeof *counts; r++) {
    fnn_set_threads(counts[r]);
    for (int c = 0; c < CALLS; c++) {
      seed = seed * 1103515245u + 12345u;
      int64_t n = 1 + (int64_t)((seed >> 16) % MAXTASKS);
      if (c % 500 == 0) nanosleep(&(struct timespec){0, 2000000}, NULL);  // 2 ms: the workers sleep
      Job j = {.nthreads = counts[r]};
      fnn_parallel(task, &j, n);
      for (int64_t t = 0; t < MAXTASKS; t++) {
        int want = t < n ? 1 : 0, got = atomic_load(&j.ran[t]);
        if (got != want && failures++ < 10)
          fprintf(stderr, "threads %d, call %d: task %lld of %lld ran %d times\n", counts[r], c, (long long)t,
                  (long long)n, got);
      }
      if (atomic_load(&j.bad_tid) && failures++ < 10)
        fprintf(stderr, "threads %d, call %d: a task ran on a thread id out of range\n", counts[r], c);
    }
  }
  if (failures) return 1;
  printf("ok: %d calls on 1-4 threads\n", CALLS * (int)(sizeof counts / sizeof *counts));
  return 0;
}
