// pool_split.c: the pool's balanced shares (fnn_parallel_split, fnn_split_at,
// fnn_split_block in runtime/pool.c).
//
// - The cuts: 0 and the count at the ends, equal shares in whole multiples
//   of the alignment when the pool starts.
// - Balancing: each task spins for its block's size times its thread's cost
//   per unit (thread 1 three times as slow as thread 0), so the shares must
//   move towards 3/4 for thread 0. Every call must still cover its extent
//   exactly once, in blocks that meet.
// - Threads of equal speed whose aligned blocks are unequal (4 and 6 rows)
//   keep equal shares: the balancing compares the cost of the rows each
//   thread actually got.
// - FNNC_SPLIT_WEIGHTS fixes the shares: the cuts follow the weights and no
//   measurement moves them.
#define _POSIX_C_SOURCE 200809L
#include "fnnrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { COUNT = 1000, ALIGN = 8, CALLS = 1200 };

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return 1e6 * (double)t.tv_sec + 1e-3 * (double)t.tv_nsec;
}

typedef struct {
  double us_per_row[2];  // by thread id
  int64_t count, align;
  int covered[COUNT];
  int bad;
} Job;

static void task(void *ctx, int64_t t, int64_t tid) {
  Job *j = ctx;
  int64_t lo = fnn_split_block(t, j->count, j->align, 1), hi = fnn_split_at(t + 1, j->count, j->align);
  if (lo > hi || lo % j->align || (hi % j->align && hi != j->count) || tid > 1) j->bad = 1;
  for (int64_t i = lo; i < hi && i >= 0 && i < j->count; i++) j->covered[i]++;
  double end = now_us() + (double)(hi - lo) * j->us_per_row[tid > 0];
  while (now_us() < end) {
  }
}

static int fails;
static void check(int ok, const char *what, long long got) {
  if (!ok) {
    printf("FAIL: %s (got %lld)\n", what, got);
    fails++;
  }
}

int main(void) {
  fnn_set_threads(2);
  check(fnn_split_at(0, COUNT, ALIGN) == 0, "the first block starts at 0", fnn_split_at(0, COUNT, ALIGN));
  check(fnn_split_at(2, COUNT, ALIGN) == COUNT, "the last block ends at the count", fnn_split_at(2, COUNT, ALIGN));
  check(fnn_split_at(1, COUNT, ALIGN) == 504, "equal shares at the start: 1000/2 to the nearest multiple of 8",
        fnn_split_at(1, COUNT, ALIGN));
  check(fnn_split_at(1, 100, 16) == 48, "half of 100 in blocks of 16", fnn_split_at(1, 100, 16));

  static Job j = {.us_per_row = {0.1, 0.3}, .count = COUNT, .align = ALIGN};
  for (int c = 0; c < CALLS; c++) {
    for (int i = 0; i < COUNT; i++) j.covered[i] = 0;
    fnn_parallel_split(task, &j);
    for (int i = 0; i < COUNT; i++)
      if (j.covered[i] != 1) j.bad = 1;
  }
  check(!j.bad, "every call covers its extent once, in aligned blocks", 0);
  int64_t cut = fnn_split_at(1, COUNT, ALIGN);
  check(cut >= 650 && cut <= 850, "thread 1, three times as slow, ends up with about a quarter (cut near 750)", cut);
  printf("balanced cut: %lld of %d\n", (long long)cut, COUNT);

  // Threads of equal speed over 10 rows in blocks of 4: 4 rows and 6 at equal
  // shares. Per row of work they cost the same, so the shares must not move
  // (judged by the nominal shares, thread 1 would look 1.5 times as slow).
  fnn_set_threads(2);
  j.us_per_row[0] = j.us_per_row[1] = 20, j.count = 10, j.align = 4;
  for (int c = 0; c < 700; c++) fnn_parallel_split(task, &j);
  check(fnn_split_moves() == 0 && fnn_split_at(1, 10, 4) == 4, "equal speeds, uneven blocks: the shares stay",
        fnn_split_moves());
  check(!j.bad, "blocks of 4 rows of 10 stay aligned", 0);
  j.count = COUNT, j.align = ALIGN;

  fnn_set_threads(3);  // a new thread count starts from equal shares again
  check(fnn_split_at(1, 999, 1) == 333 && fnn_split_at(2, 999, 1) == 666, "equal thirds after a resize",
        fnn_split_at(1, 999, 1));

  setenv("FNNC_SPLIT_WEIGHTS", "1,3", 1);
  fnn_set_threads(2);
  check(fnn_split_at(1, COUNT, ALIGN) == 248, "FNNC_SPLIT_WEIGHTS=1,3: the cut at a quarter", fnn_split_at(1, COUNT, ALIGN));
  j.us_per_row[0] = 0.3, j.us_per_row[1] = 0.1;
  for (int c = 0; c < 300; c++) fnn_parallel_split(task, &j);
  check(fnn_split_at(1, COUNT, ALIGN) == 248, "fixed weights do not move", fnn_split_at(1, COUNT, ALIGN));
  if (fails) return 1;
  printf("ok: balanced shares\n");
  return 0;
}
