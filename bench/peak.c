// peak.c: the machine's single-precision FMA peak, in GFLOP/s.
//
//   cc -O2 -march=native -pthread bench/peak.c -o peak && ./peak 2
//
// Each of THREADS pthreads runs many independent chains of vector FMAs
// (acc = acc * m + a) that never read memory, so the only limit is the FMA
// units' throughput. An FMA counts as 2 flops. With AVX-512 the program
// measures both 512-bit and 256-bit FMAs (some cores, e.g. AMD Zen 4, split a
// 512-bit FMA in two, so the widths can peak at the same rate) and reports the
// higher one as the peak. Each measurement is repeated and the best taken: on a
// shared machine the best run is the closest to what the core can do.
//
// Output, one line per thread count and width, then the peak:
//   threads=1 isa=avx512 gflops=123.4 cpu_gflops=125.0
//   peak threads=1 gflops=123.4 cpu_gflops=125.0
// gflops is over wall time (the peak); cpu_gflops over each thread's CPU time,
// which shows what the cores could do when other processes hold a core.
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "peak.c needs AVX2 and FMA (compile with -march=native on an x86-64 that has them)"
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Keeps a register value alive without touching memory, so the compiler can
// neither drop nor merge the chains.
#define KEEP(v) __asm__ volatile("" : "+v"(v))

// The chains are written out as named variables (an array of vectors can stay
// on the stack, which turns each chain into a store-load-FMA loop).
#define X24(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) \
  M(12) M(13) M(14) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23)
#define X12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

#ifdef __AVX512F__
// 24 accumulators + 2 constants fit in the 32 zmm registers.
#define N512 24
static float run512(long iters) {
#define DECL(i) __m512 c##i = _mm512_set1_ps(1.0f + 0.001f * (float)(i));
#define STEP(i) c##i = _mm512_fmadd_ps(c##i, m, a);
#define HOLD(i) KEEP(c##i);
#define SUM(i) s = _mm512_add_ps(s, c##i);
  X24(DECL)
  __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
    X24(STEP)
    X24(HOLD)
  }
  __m512 s = _mm512_setzero_ps();
  X24(SUM)
  return _mm512_reduce_add_ps(s);
#undef DECL
#undef STEP
#undef HOLD
#undef SUM
}
#endif

// 256-bit FMAs: 24 accumulators where AVX-512VL gives 32 ymm registers,
// 12 (+ 2 constants) in the 16 of plain AVX2.
#ifdef __AVX512VL__
#define N256 24
#define X256 X24
#else
#define N256 12
#define X256 X12
#endif
static float run256(long iters) {
#define DECL(i) __m256 c##i = _mm256_set1_ps(1.0f + 0.001f * (float)(i));
#define STEP(i) c##i = _mm256_fmadd_ps(c##i, m, a);
#define HOLD(i) KEEP(c##i);
#define SUM(i) s = _mm256_add_ps(s, c##i);
  X256(DECL)
  __m256 m = _mm256_set1_ps(0.9999999f), a = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
    X256(STEP)
    X256(HOLD)
  }
  __m256 s = _mm256_setzero_ps();
  X256(SUM)
  float o[8];
  _mm256_storeu_ps(o, s);
  return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
#undef DECL
#undef STEP
#undef HOLD
#undef SUM
}

typedef struct {
  int wide;  // 1: 512-bit, 0: 256-bit
  long iters;
  pthread_barrier_t *bar;
  float sink;
  double cpu;  // the thread's CPU seconds for its run
} Job;

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *worker(void *p) {
  Job *j = p;
  pthread_barrier_wait(j->bar);
  double c0 = cpu_now();
#ifdef __AVX512F__
  if (j->wide)
    j->sink = run512(j->iters);
  else
#endif
    j->sink = run256(j->iters);
  j->cpu = cpu_now() - c0;
  return NULL;
}

static double flops_per_iter(int wide) {
#ifdef __AVX512F__
  if (wide) return 2.0 * 16 * N512;
#endif
  return 2.0 * 8 * N256;
}

// One timed run of `threads` threads, each doing `iters` iterations: returns
// GFLOP/s over the wall time, and sets *cpu_gflops to the sum over threads of
// each thread's flops per CPU second (what the cores do while they run, which
// other processes on a shared machine do not take away).
static double measure(int threads, int wide, long iters, double *cpu_gflops) {
  pthread_t t[64];
  Job job[64];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
  for (int i = 0; i < threads; i++) {
    job[i] = (Job){wide, iters, &bar, 0, 0};
    pthread_create(&t[i], NULL, worker, &job[i]);
  }
  pthread_barrier_wait(&bar);
  double t0 = now();
  float sink = 0;
  *cpu_gflops = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    sink += job[i].sink;
    if (job[i].cpu > 0) *cpu_gflops += flops_per_iter(wide) * (double)iters / job[i].cpu * 1e-9;
  }
  double sec = now() - t0;
  pthread_barrier_destroy(&bar);
  if (sink != sink) fprintf(stderr, "peak: NaN\n");  // uses the result
  return flops_per_iter(wide) * (double)iters * threads / sec * 1e-9;
}

static double best_of(int threads, int wide, double *cpu_best) {
  // Calibrate on one thread to ~0.25 s per run, then take the best of 5.
  long iters = 1 << 20;
  for (;;) {
    double t0 = now();
    measure(1, wide, iters, cpu_best);
    double s = now() - t0;
    if (s > 0.05) {
      iters = (long)((double)iters * 0.25 / s) + 1;
      break;
    }
    iters *= 4;
  }
  double best = 0, c;
  *cpu_best = 0;
  for (int r = 0; r < 5; r++) {
    double g = measure(threads, wide, iters, &c);
    if (g > best) best = g;
    if (c > *cpu_best) *cpu_best = c;
  }
  return best;
}

int main(int argc, char **argv) {
  int maxt = argc > 1 ? atoi(argv[1]) : 1;
  if (maxt < 1 || maxt > 64) {
    fprintf(stderr, "usage: peak [MAX_THREADS (1..64)]\n");
    return 1;
  }
  for (int th = 1; th <= maxt; th++) {
    double peak = 0, cpu_peak = 0, c;
#ifdef __AVX512F__
    double g512 = best_of(th, 1, &c);
    printf("threads=%d isa=avx512 gflops=%.1f cpu_gflops=%.1f\n", th, g512, c);
    peak = g512;
    cpu_peak = c;
#endif
    double g256 = best_of(th, 0, &c);
    printf("threads=%d isa=avx2 gflops=%.1f cpu_gflops=%.1f\n", th, g256, c);
    if (g256 > peak) peak = g256;
    if (c > cpu_peak) cpu_peak = c;
    printf("peak threads=%d gflops=%.1f cpu_gflops=%.1f\n", th, peak, cpu_peak);
    fflush(stdout);
  }
  return 0;
}
