// pool.c: the thread pool compiled steps run their parallel kernels on.
//
// fnn_parallel(task, ctx, n) publishes a call; the caller and the workers claim
// task indices from per-chunk atomic words that also hold the call's
// generation, so a worker that wakes late can never claim a task of a newer
// call with an old function. The caller returns as soon as every task has finished: it never
// waits for idle workers to wake up. Which thread runs a task never changes
// what the task computes (tasks write disjoint memory; reductions are summed by
// the compiled code in task order), so results are bitwise identical for any
// number of threads.
//
// Steps call fnn_parallel many times, a few microseconds to milliseconds
// apart, so a worker that has finished its tasks polls for the next call for a
// while (SPIN_NS) before it sleeps on the condition variable: waking a sleeping
// thread costs tens of microseconds, more than a small kernel takes.
#define _GNU_SOURCE 1
#include "fnnrt.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { MAX_THREADS = 64 };

// A chunk's claim word and end, and each thread's count of finished tasks, on
// cache lines of their own: a thread claiming from its own chunk, or counting
// its own tasks, then never takes the line away from the other threads.
typedef struct {
  _Alignas(64) _Atomic uint64_t next;  // gen << 32 | next task index
  _Atomic int64_t end;                 // one past the chunk's last task (set before publishing)
} Chunk;
typedef struct {
  _Alignas(64) _Atomic int64_t n;
} Finished;

// The current call: written by the caller, then published with its
// generation; a worker reads the fields after it sees a new generation. A
// worker that reads late may get the fields of a newer call than the
// generation it saw: harmless, because a task is only ever run after a claim
// from a chunk word tagged with the same generation, and the caller retires
// every chunk word (seq_cst, as the claims) before it writes a new call. On
// one cache line: a worker learns of a call with one line transfer, not one
// per field and the mutex.
typedef struct {
  _Alignas(64) _Atomic uint32_t published;  // generation of the current call
  _Atomic(FnnTask) task;
  _Atomic(void *) ctx;
  _Atomic int nchunks;  // chunks of the current call (its thread count)
} Call;

static struct {
  pthread_mutex_t mu;  // fnn_set_threads, and workers going to sleep
  pthread_cond_t start;
  pthread_cond_t resize;  // workers beyond the thread count wait here
  int nthreads;         // including the caller (written under mu)
  int started;          // worker threads alive
  uint32_t born[MAX_THREADS];  // per worker: the generation when it was started
  uint32_t gen;         // generation of the latest call (the caller's own count)
  Call call;
  Chunk chunk[MAX_THREADS];
  Finished finished[MAX_THREADS];  // per thread: tasks of the current call it has finished
  _Alignas(64) _Atomic int sleepers;  // workers waiting on `start`
} P = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .start = PTHREAD_COND_INITIALIZER,
       .resize = PTHREAD_COND_INITIALIZER,
       .nthreads = 1};

// Claims and runs the tasks of chunk c of generation `gen` until none are left.
static void run_chunk(uint32_t gen, FnnTask task, void *ctx, int c, int64_t tid) {
  for (;;) {
    Chunk *ch = &P.chunk[c];
    uint64_t v = atomic_load(&ch->next);
    if ((uint32_t)(v >> 32) != gen || (int64_t)(v & 0xffffffffu) >= atomic_load(&ch->end)) return;
    if (!atomic_compare_exchange_weak(&ch->next, &v, v + 1)) continue;
    task(ctx, (int64_t)(v & 0xffffffffu), tid);
    atomic_store_explicit(&P.finished[tid].n, atomic_load_explicit(&P.finished[tid].n, memory_order_relaxed) + 1,
                          memory_order_release);
  }
}

// The tasks are cut into one contiguous chunk per thread: a thread runs its
// own chunk first (so from one kernel to the next it works on the same rows,
// which stay in its caches), then helps with the others'.
static void run_tasks(uint32_t gen, FnnTask task, void *ctx, int nchunks, int64_t tid) {
  for (int k = 0; k < nchunks; k++) run_chunk(gen, task, ctx, (int)((tid + k) % nchunks), tid);
}

enum { SPIN_NS = 200000 };

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// Polls for a call newer than `seen` for up to SPIN_NS; true if one came.
static bool spin_for_call(uint32_t seen) {
  int64_t t0 = now_ns();
  for (int i = 1;; i++) {
    if (atomic_load_explicit(&P.call.published, memory_order_acquire) != seen) return true;
    if (i % 256 == 0 && now_ns() - t0 > SPIN_NS) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

// Sleeping: a worker counts itself in `sleepers`, then looks at `published`
// once more before it waits; the caller publishes, then looks at `sleepers`
// (both sequentially consistent), so one of the two always sees the other and
// no call goes unnoticed. The caller takes the mutex only to wake sleepers.
// A worker beyond the thread count waits on `resize` instead, so that it
// neither polls nor makes every call wake it.
static void *worker(void *arg) {
  int64_t tid = (int64_t)(intptr_t)arg;
  pthread_mutex_lock(&P.mu);
  uint32_t seen = P.born[tid];  // a call published since then is for it too
  pthread_mutex_unlock(&P.mu);
  for (;;) {
    if (!spin_for_call(seen)) {
      pthread_mutex_lock(&P.mu);
      atomic_fetch_add(&P.sleepers, 1);
      while (atomic_load(&P.call.published) == seen) pthread_cond_wait(&P.start, &P.mu);
      atomic_fetch_sub(&P.sleepers, 1);
      pthread_mutex_unlock(&P.mu);
    }
    seen = atomic_load_explicit(&P.call.published, memory_order_acquire);
    FnnTask task = atomic_load_explicit(&P.call.task, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&P.call.ctx, memory_order_relaxed);
    int nchunks = atomic_load_explicit(&P.call.nchunks, memory_order_relaxed);
    if (tid < nchunks) {
      run_tasks(seen, task, ctx, nchunks, tid);
      continue;
    }
    pthread_mutex_lock(&P.mu);  // the pool shrank: wait until it grows again
    while (tid >= P.nthreads) pthread_cond_wait(&P.resize, &P.mu);
    pthread_mutex_unlock(&P.mu);
    seen = atomic_load(&P.call.published);
  }
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
    P.born[P.started + 1] = P.gen;
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
  pthread_cond_broadcast(&P.resize);
  pthread_mutex_unlock(&P.mu);
}

// Tasks of the current call finished so far, by all threads.
static int64_t finished_tasks(void) {
  int64_t n = 0;
  for (int t = 0; t <= P.started && t < MAX_THREADS; t++) n += atomic_load_explicit(&P.finished[t].n, memory_order_acquire);
  return n;
}

void fnn_parallel(FnnTask task, void *ctx, int64_t ntasks) {
  if (P.nthreads <= 1 || ntasks <= 1) {
    for (int64_t t = 0; t < ntasks; t++) task(ctx, t, 0);
    return;
  }
  if (ntasks >= 0xffffffff) {  // a chunk word holds a task index in 32 bits
    fprintf(stderr, "fnn: internal error: %lld tasks in one call\n", (long long)ntasks);
    abort();
  }
  uint32_t gen = ++P.gen;
  int nchunks = P.nthreads;
  // First retire every chunk under the new generation: a worker still in
  // run_chunk for the previous call must fail its claim (its compare-exchange
  // sees a changed word) before end[] changes under it; otherwise it could
  // claim an index past the old call's end and run the old kernel with it.
  // These stores and the claims stay sequentially consistent: that order is
  // what makes a worker's late read of the call fields harmless.
  for (int c = 0; c <= P.started; c++) {
    atomic_store(&P.chunk[c].next, (uint64_t)gen << 32 | 0xffffffffu);
    atomic_store(&P.finished[c].n, 0);
  }
  for (int c = 0; c < nchunks; c++) {
    atomic_store(&P.chunk[c].end, ntasks * (c + 1) / nchunks);
    atomic_store(&P.chunk[c].next, (uint64_t)gen << 32 | (uint64_t)(ntasks * c / nchunks));
  }
  atomic_store_explicit(&P.call.task, task, memory_order_relaxed);
  atomic_store_explicit(&P.call.ctx, ctx, memory_order_relaxed);
  atomic_store_explicit(&P.call.nchunks, nchunks, memory_order_relaxed);
  atomic_store(&P.call.published, gen);  // (seq_cst: see worker)
  if (atomic_load(&P.sleepers)) {
    pthread_mutex_lock(&P.mu);
    pthread_cond_broadcast(&P.start);
    pthread_mutex_unlock(&P.mu);
  }
  run_tasks(gen, task, ctx, nchunks, 0);
  // Wait for the tasks other threads claimed; they are short.
  for (int spins = 0; finished_tasks() < ntasks; spins++)
    if (spins > 1000) sched_yield();
}

// Column by column over the slots, so the loops run along contiguous floats
// (and vectorize); each element still adds its slots in task order, from 0.
void fnn_sum_slots(float *out, const float *part, int64_t stride, int64_t n, int64_t ntasks) {
  if (ntasks < 1) {
    for (int64_t i = 0; i < n; i++) out[i] = 0.0f;
    return;
  }
  for (int64_t i = 0; i < n; i++) out[i] = 0.0f + part[i];
  for (int64_t t = 1; t < ntasks; t++) {
    const float *p = part + t * stride;
    for (int64_t i = 0; i < n; i++) out[i] += p[i];
  }
}
