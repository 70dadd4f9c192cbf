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
#include <math.h>
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
  int64_t busy_ns;  // fnn_parallel_split: time in this thread's task (written before n)
  double units;     // fnn_parallel_split: the work of task [this index]'s blocks (fnn_split_block)
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

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

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

//
// Shared splits. A kernel that gives each thread one block of its work (a dense
// layer's outputs, a weight gradient's rows, each parameter's rows in the
// update) cuts it at fnn_split_at: thread t gets the share split.cum[t+1] -
// split.cum[t] of it, in whole multiples of the kernel's alignment. Nothing is
// summed across the blocks, so where the cuts lie changes no result. The
// shares start equal. A host often runs one of its cores slower than the
// other (another guest on it, its interrupts), and with fixed halves the fast
// thread then waits for the slow one at every kernel; so fnn_parallel_split
// times each thread's block and moves the shares until the threads finish
// together. Every such kernel cuts its rows at the same places, so a thread
// keeps its rows of each layer (weights, gradients, optimizer state) in its
// own caches from one kernel to the next; the shares move only when the
// measured costs have stayed apart for a whole window of calls, and the rows
// that change threads then move once.
//
enum { SPLIT_WINDOW = 128 };      // calls per estimate
enum { SPLIT_MIN_NS = 20000 };    // calls whose blocks take less are not counted
#define SPLIT_MOVE 0.02       // shares move when one is this far from its target
static struct {
  double cum[MAX_THREADS + 1];             // cum[0] = 0 <= ... <= cum[nthreads] = 1
  double cost[MAX_THREADS][SPLIT_WINDOW];  // per thread, per call: time per unit of work, over the mean
  int ncost;
  bool fixed;      // FNNC_SPLIT_WEIGHTS set the shares
  int64_t moves;   // times the shares moved
  FnnTask task;    // the current split call's task and context (timed_task)
  void *ctx;
} split;

// FNNC_SPLIT_WEIGHTS=w0,w1,...: fixed shares in these proportions (one positive
// weight per thread; for tests and experiments), as cumulative fractions in
// cum[0..n]; false if it is unset. Anything else in it is an error.
static bool split_weights_from_env(int n, double *cum) {
  const char *s = getenv("FNNC_SPLIT_WEIGHTS");
  if (!s) return false;
  double w[MAX_THREADS], sum = 0;
  int k = 0;
  for (const char *p = s;; p++) {
    char *end;
    double x = strtod(p, &end);
    if (end == p || !(x > 0) || x > 1e6 || k == MAX_THREADS || (*end && *end != ',')) {
      fprintf(stderr, "fnn: error: FNNC_SPLIT_WEIGHTS='%s': want one positive weight per thread, comma-separated\n", s);
      exit(1);
    }
    w[k++] = x, sum += x;
    if (!*end) break;
    p = end;
  }
  if (k != n) {
    fprintf(stderr, "fnn: error: FNNC_SPLIT_WEIGHTS has %d weights for %d threads\n", k, n);
    exit(1);
  }
  double c = 0;
  for (int t = 0; t < n; t++) cum[t] = c / sum, c += w[t];
  cum[n] = 1;
  return true;
}

int64_t fnn_split_at(int64_t t, int64_t count, int64_t align) {
  if (t <= 0) return 0;
  if (t >= P.nthreads) return count;
  int64_t b = (int64_t)(split.cum[t] * (double)count / (double)align + 0.5) * align;
  return b < count ? b : count;
}

// Task t's block, noted as the work its thread did: blocks are whole multiples
// of align, so a thread's part of a small extent can be far from its share
// (4 of 10 rows at an equal share), and the cost per unit of work is what the
// balancing compares.
int64_t fnn_split_block(int64_t t, int64_t count, int64_t align, int64_t weight) {
  int64_t lo = fnn_split_at(t, count, align), hi = fnn_split_at(t + 1, count, align);
  if (t >= 0 && t < MAX_THREADS) P.finished[t].units += (double)((hi - lo) * weight);
  return lo;
}

int64_t fnn_split_moves(void) { return split.moves; }
double fnn_split_share(int t) { return t >= 0 && t < P.nthreads ? split.cum[t + 1] - split.cum[t] : 0; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// After a split call in which every thread ran its own block: each thread's
// time per unit of the work its blocks were, over the mean of the threads'. A
// window of these gives each thread's median cost; if one share is SPLIT_MOVE
// or more away from 1/cost (normalised), the shares move there. Short calls
// do not count: a task's fixed costs (the call, a few cuts) weigh more per
// unit on the thread with less work, which would then look slower and get
// less still.
static void split_observe(int n) {
  double c[MAX_THREADS], mean = 0;
  for (int t = 0; t < n; t++) {
    const Finished *f = &P.finished[t];
    if (atomic_load(&f->n) != 1 || f->units <= 0 || f->busy_ns < SPLIT_MIN_NS) return;
    c[t] = (double)f->busy_ns / f->units;
    mean += c[t] / n;
  }
  for (int t = 0; t < n; t++) split.cost[t][split.ncost] = c[t] / mean;
  if (++split.ncost < SPLIT_WINDOW) return;
  split.ncost = 0;
  double target[MAX_THREADS], sum = 0;
  for (int t = 0; t < n; t++) {
    qsort(split.cost[t], SPLIT_WINDOW, sizeof(double), cmp_double);
    target[t] = 1 / split.cost[t][SPLIT_WINDOW / 2];
    sum += target[t];
  }
  bool move = false;
  for (int t = 0; t < n; t++) {
    double share = split.cum[t + 1] - split.cum[t];
    target[t] /= sum;
    if (target[t] < 0.25 / n) target[t] = 0.25 / n;  // a stalled thread keeps some rows
    move |= fabs(target[t] - share) >= SPLIT_MOVE;
  }
  if (!move) return;
  sum = 0;
  for (int t = 0; t < n; t++) sum += target[t];
  double acc = 0;
  for (int t = 0; t < n; t++) split.cum[t] = acc / sum, acc += target[t];
  split.cum[n] = 1;
  split.moves++;
}

// Where chunk c of a call's tasks starts. A call of one task per thread
// (fnn_parallel_split's, the batch copies) runs task c on thread c. Other
// calls' chunks follow the balanced shares, so that a slower thread starts
// with fewer tasks (rather than have them taken from it, which moves their
// rows to another core).
static int64_t chunk_start(int c, int64_t ntasks, int nchunks) {
  if (c >= nchunks) return ntasks;
  if (ntasks == nchunks) return c;
  int64_t s = (int64_t)(split.cum[c] * (double)ntasks + 0.5);
  return s < ntasks ? s : ntasks;
}

// A split call's task, timed for split_observe.
static void timed_task(void *unused, int64_t t, int64_t tid) {
  (void)unused;
  int64_t t0 = now_ns();
  split.task(split.ctx, t, tid);
  P.finished[tid].busy_ns += now_ns() - t0;
}

void fnn_parallel_split(FnnTask task, void *ctx) {
  int n = P.nthreads;
  if (n <= 1 || split.fixed) {
    fnn_parallel(task, ctx, n);
    return;
  }
  split.task = task, split.ctx = ctx;  // (published with the call)
  fnn_parallel(timed_task, NULL, n);
  split_observe(n);
}

int fnn_threads(void) { return P.nthreads; }

void fnn_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  int want = n;
  double cum[MAX_THREADS + 1];
  bool fixed = split_weights_from_env(n, cum);
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
  // Equal shares to start with, or the fixed ones (if every thread started).
  split.fixed = fixed && n == want;
  for (int t = 0; t <= n; t++) split.cum[t] = split.fixed ? cum[t] : (double)t / n;
  split.ncost = 0;
  split.moves = 0;
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
    P.finished[c].busy_ns = 0;
    P.finished[c].units = 0;
  }
  for (int c = 0; c < nchunks; c++) {
    atomic_store(&P.chunk[c].end, chunk_start(c + 1, ntasks, nchunks));
    atomic_store(&P.chunk[c].next, (uint64_t)gen << 32 | (uint64_t)chunk_start(c, ntasks, nchunks));
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
