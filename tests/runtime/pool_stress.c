// pool_stress.c: the thread pool (runtime/pool.c) under many calls.
//
// Each call of fnn_parallel must run every task index exactly once, on a
// thread id below the thread count, and return only when all have finished;
// calls follow each other at once (workers still polling) or after a pause
// longer than the workers' polling (workers asleep, woken by the call), and
// the thread count changes between rounds (it shrinks too). Every call of a
// round has its own record, checked after the round, so a task that ran late
// (after its call returned) is caught as well.
//
// The caller runs any task no worker claims, so a worker that sleeps through
// a call would go unseen by the counts: in the "together" calls each of the
// thread count's tasks waits until every thread id has checked in, which
// needs every worker awake.
//
// run.sh builds this once as is and once with ThreadSanitizer (a smoke test:
// the pool's own state is atomic, so the sanitizer checks the hand-over of
// the tasks' plain data, not the protocol's memory orders).
#define _POSIX_C_SOURCE 200809L
#include "fnnrt.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

enum { MAXTASKS = 64, CALLS = 2000, MAXTHREADS = 4 };

typedef struct {
  _Atomic int ran[MAXTASKS];
  _Atomic int bad_tid;
  _Atomic int in[MAXTHREADS];  // "together" calls: the thread ids that checked in
  _Atomic int timed_out;
  int nthreads, together;
} Job;

static Job jobs[CALLS];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void task(void *ctx, int64_t t, int64_t tid) {
  Job *j = ctx;
  atomic_fetch_add(&j->ran[t], 1);
  if (tid < 0 || tid >= j->nthreads) {
    atomic_store(&j->bad_tid, 1);
    return;
  }
  if (!j->together) return;
  atomic_store(&j->in[tid], 1);
  double t0 = now();
  for (;;) {
    int all = 1;
    for (int i = 0; i < j->nthreads; i++) all &= atomic_load(&j->in[i]);
    if (all) return;
    if (now() - t0 > 5.0) {
      atomic_store(&j->timed_out, 1);
      return;
    }
    sched_yield();
  }
}

int main(void) {
  static const int counts[] = {2, 3, 4, 2, 1, 3, 2};
  unsigned seed = 12345;
  int failures = 0, calls = 0;
  for (size_t r = 0; r < sizeof counts / sizeof *counts; r++) {
    int nt = counts[r];
    fnn_set_threads(nt);
    int64_t ntasks[CALLS];
    for (int c = 0; c < CALLS; c++) {
      seed = seed * 1103515245u + 12345u;
      Job *j = &jobs[c];
      atomic_store(&j->bad_tid, 0);
      atomic_store(&j->timed_out, 0);
      for (int t = 0; t < MAXTASKS; t++) atomic_store(&j->ran[t], 0);
      for (int t = 0; t < MAXTHREADS; t++) atomic_store(&j->in[t], 0);
      j->nthreads = nt;
      j->together = nt > 1 && c % 10 == 0;
      ntasks[c] = j->together ? nt : 1 + (int64_t)((seed >> 16) % MAXTASKS);
      if (c % 250 == 0) nanosleep(&(struct timespec){0, 2000000}, NULL);  // 2 ms: the workers sleep
      fnn_parallel(task, j, ntasks[c]);
      calls++;
      if (atomic_load(&j->timed_out)) {  // a worker is not coming: stop at once
        fprintf(stderr, "threads %d, call %d: not every worker took part within 5 s\n", nt, c);
        return 1;
      }
    }
    for (int c = 0; c < CALLS; c++) {
      Job *j = &jobs[c];
      for (int64_t t = 0; t < MAXTASKS; t++) {
        int want = t < ntasks[c] ? 1 : 0, got = atomic_load(&j->ran[t]);
        if (got != want && failures++ < 10)
          fprintf(stderr, "threads %d, call %d: task %lld of %lld ran %d times\n", nt, c, (long long)t,
                  (long long)ntasks[c], got);
      }
      if (atomic_load(&j->bad_tid) && failures++ < 10)
        fprintf(stderr, "threads %d, call %d: a task ran on a thread id out of range\n", nt, c);
    }
  }
  if (failures) return 1;
  printf("ok: %d calls on 1-%d threads\n", calls, MAXTHREADS);
  return 0;
}
