// cores.c: what the machine gives two threads, apart from any program of ours.
//
//   cc -O2 -pthread bench/cores.c -o cores && ./cores
//
// Two figures bound what a 2-thread trainer can reach here:
//   - roundtrip_ns: one cache line passed from CPU 0 to CPU 1 and back. Every
//     value one thread writes and the other reads (a kernel's input that the
//     other thread produced, the pool's call and finished words) costs about
//     half of it per 64-byte line. About 50-100 ns where both CPUs share a
//     last-level cache; several hundred where they do not.
//   - cpu1_vs_cpu0: a compute loop's speed alone on CPU 1 over its speed
//     alone on CPU 0 (1.00 when the host gives both the same share of a
//     core; a virtual CPU whose core is shared with another busy thread runs
//     slower, and an even split of the work then waits for it).
//   - corun: the speed of two copies of the loop at once, one per CPU, over
//     the speed of one copy alone on the faster CPU (2.00 at best).
// Each figure is measured RUNS times, interleaved; the median is printed, and
// corun's range as well.
//
// Output:
//   roundtrip_ns=123.4
//   cpu1_vs_cpu0=1.00
//   corun=1.97 corun_min=1.90 corun_max=2.00
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { RUNS = 7, PINGS = 200000 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);  // best effort
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return v[n / 2];
}

// --- round trip: CPU 0 writes 2i+1, CPU 1 answers 2i+2 ---
static _Alignas(64) _Atomic long line;

static void *answer(void *arg) {
  (void)arg;
  pin(1);
  for (long i = 0; i < PINGS; i++) {
    while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 1) {
    }
    atomic_store_explicit(&line, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

static double roundtrip_ns(void) {
  atomic_store(&line, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, answer, NULL)) return -1;
  double t0 = now();
  for (long i = 0; i < PINGS; i++) {
    atomic_store_explicit(&line, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 2) {
    }
  }
  double s = now() - t0;
  pthread_join(t, NULL);
  return s / PINGS * 1e9;
}

// --- compute loop: a fixed amount of integer and floating-point work ---
typedef struct {
  int cpu;
  double sec;
  double sink;
} Loop;

static void *loop(void *arg) {
  Loop *l = arg;
  pin(l->cpu);
  double t0 = now();
  unsigned long x = 88172645463325252ul;
  double a = 0;
  for (long i = 0; i < 60000000; i++) {  // xorshift and a dependent add: no memory
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    a += (double)(x & 1023);
  }
  l->sink = a;
  l->sec = now() - t0;
  return NULL;
}

// Seconds per loop with `n` copies at once (n = 1: CPU `cpu` alone); the
// slowest copy's, as a parallel kernel waits for its slowest thread.
static double run_loops(int n, int cpu) {
  pthread_t t[2];
  Loop l[2] = {{cpu, 0, 0}, {1, 0, 0}};
  for (int i = 0; i < n; i++)
    if (pthread_create(&t[i], NULL, loop, &l[i])) return -1;
  double worst = 0, sink = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    if (l[i].sec > worst) worst = l[i].sec;
    sink += l[i].sink;
  }
  if (sink < 0) printf("?");  // keeps the loops
  return worst;
}

int main(void) {
  double rt[RUNS], co[RUNS], rel[RUNS];
  for (int r = 0; r < RUNS; r++) {
    rt[r] = roundtrip_ns();
    // One copy on each CPU alone, then two at once: ratios of rates.
    double one0 = run_loops(1, 0), one1 = run_loops(1, 1), two = run_loops(2, 0);
    double best = one0 < one1 ? one0 : one1;
    rel[r] = one0 > 0 && one1 > 0 ? one0 / one1 : 0;
    co[r] = best > 0 && two > 0 ? 2.0 * best / two : 0;
  }
  printf("roundtrip_ns=%.1f\n", median(rt, RUNS));
  printf("cpu1_vs_cpu0=%.2f\n", median(rel, RUNS));
  double m = median(co, RUNS);
  printf("corun=%.2f corun_min=%.2f corun_max=%.2f\n", m, co[0], co[RUNS - 1]);
  return 0;
}
