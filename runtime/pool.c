// pool.c: the thread pool compiled steps run their parallel kernels on.
//
// fnn_parallel(task, ctx, n) hands out task indices 0..n-1 through an atomic
// counter; the calling thread works too (as thread 0). Which thread runs a task
// never changes what the task computes: tasks write disjoint memory, and
// reductions are summed by the compiled code in task order afterwards, so
// results are bitwise identical for any number of threads.
#define _GNU_SOURCE 1
#include "fnnrt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { MAX_THREADS = 64 };

static struct {
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  int nthreads;          // including the caller
  int started;           // worker threads alive
  unsigned long gen;     // bumped for each parallel call
  int busy;              // workers still in the current call
  FnnTask task;
  void *ctx;
  int64_t ntasks;
  atomic_llong next;
  bool quit;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .start = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER, .nthreads = 1};

static void run_tasks(int64_t tid) {
  for (;;) {
    long long t = atomic_fetch_add(&P.next, 1);
    if (t >= P.ntasks) return;
    P.task(P.ctx, t, tid);
  }
}

static void *worker(void *arg) {
  int64_t tid = (int64_t)(intptr_t)arg;
  unsigned long seen = 0;
  pthread_mutex_lock(&P.mu);
  for (;;) {
    while (P.gen == seen && !P.quit) pthread_cond_wait(&P.start, &P.mu);
    if (P.quit) break;
    seen = P.gen;
    if (tid >= P.nthreads) continue;  // pool shrank: sit this call out
    pthread_mutex_unlock(&P.mu);
    run_tasks(tid);
    pthread_mutex_lock(&P.mu);
    if (--P.busy == 0) pthread_cond_signal(&P.done);
  }
  pthread_mutex_unlock(&P.mu);
  return NULL;
}

int fnn_threads(void) { return P.nthreads; }

void fnn_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  pthread_mutex_lock(&P.mu);
  while (P.started < n - 1) {
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 8u << 20);
    if (pthread_create(&th, &at, worker, (void *)(intptr_t)(P.started + 1)) != 0) {
      pthread_attr_destroy(&at);
      fprintf(stderr, "fnn: warning: could not start thread %d; using %d\n", P.started + 2, P.started + 1);
      n = P.started + 1;
      break;
    }
    pthread_attr_destroy(&at);
    pthread_detach(th);
    P.started++;
  }
  P.nthreads = n;
  pthread_mutex_unlock(&P.mu);
}

void fnn_parallel(FnnTask task, void *ctx, int64_t ntasks) {
  if (P.nthreads <= 1 || ntasks <= 1) {
    for (int64_t t = 0; t < ntasks; t++) task(ctx, t, 0);
    return;
  }
  pthread_mutex_lock(&P.mu);
  P.task = task;
  P.ctx = ctx;
  P.ntasks = ntasks;
  atomic_store(&P.next, 0);
  P.busy = P.nthreads - 1;
  P.gen++;
  pthread_cond_broadcast(&P.start);
  pthread_mutex_unlock(&P.mu);
  run_tasks(0);
  pthread_mutex_lock(&P.mu);
  while (P.busy > 0) pthread_cond_wait(&P.done, &P.mu);
  pthread_mutex_unlock(&P.mu);
}
