// batch_bytes.c - a gathered IDX batch holds (u8 / 255 - mean) / std, computed
// in double and rounded to float, for every byte value, whichever conversion
// path data.c takes on this CPU (the 256-entry table, or 16 bytes at a time).
//
// Writes an IDX image file of 3 images of 17x17 bytes (289: 18 vectors of 16
// and a tail of 1) holding every byte value, loads it with several mean/std
// pairs, gathers the images in a shuffled order, and compares each float with
// the definition, bit for bit (-0.0 is not 0.0). On a CPU with AVX-512 the
// vector path must be the one taken for MNIST's mean and std. Prints "ok: N
// values" or the first mismatch; exits 1 on one.
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
  fwrite(b, 1, 4, f);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: batch_bytes DIR\n");
    return 2;
  }
  enum { N = 3, H = 17, W = 17, DIM = H * W };
  static uint8_t img[N][DIM];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < DIM; j++) img[i][j] = (uint8_t)(j * 7 + i * 101);  // 7 is odd: every byte within 256
  char path[4096];
  snprintf(path, sizeof path, "%s/bytes-images", argv[1]);
  FILE *f = fopen(path, "wb");
  if (!f) return 2;
  put32(f, 0x803), put32(f, N), put32(f, H), put32(f, W);
  fwrite(img, 1, sizeof img, f);
  fclose(f);
  snprintf(path, sizeof path, "%s/bytes-labels", argv[1]);
  if (!(f = fopen(path, "wb"))) return 2;
  put32(f, 0x801), put32(f, N);
  for (int i = 0; i < N; i++) fputc(i, f);
  fclose(f);

  static const double norm[][2] = {{0.1307, 0.3081}, {0.2860, 0.3530}, {0, 1},     {0.5, 0.5},
                                   {-3.25, 1e-3},     {1e3, 77.7},      {0, -0.5}};  // last: -0.0 for byte 0
  const int64_t dims[2] = {H, W}, idx[N] = {2, 0, 1};
  float x[N * DIM];
  int32_t y[N];
  int64_t checked = 0;
  for (size_t k = 0; k < sizeof norm / sizeof norm[0]; k++) {
    double mean = norm[k][0], std = norm[k][1];
    RtData *d = rt_data_load("batch_bytes", argv[1], "idx", "bytes-images", "bytes-labels", NULL, 2, dims, 1, 10, mean, std);
    if (!d) return 1;
#if defined(__x86_64__) && defined(__GNUC__)
    if (k == 0 && __builtin_cpu_supports("avx512f") && !rt_data_bytes_vectorized(d)) {
      printf("MNIST's normalisation does not take the AVX-512 path on this AVX-512 CPU\n");
      return 1;
    }
#endif
    rt_data_batch(d, idx, N, x, y);
    for (int r = 0; r < N; r++) {
      if (y[r] != idx[r]) {
        printf("label of row %d: %d, want %lld\n", r, y[r], (long long)idx[r]);
        return 1;
      }
      for (int j = 0; j < DIM; j++, checked++) {
        int v = img[idx[r]][j];
        float want = (float)(((double)v / 255.0 - mean) / std);
        if (memcmp(&x[r * DIM + j], &want, sizeof want)) {
          printf("mean %g std %g, byte %d: got %.9g, want %.9g\n", mean, std, v, x[r * DIM + j], want);
          return 1;
        }
      }
    }
    rt_data_free(d);
  }
  printf("ok: %lld values\n", (long long)checked);
  return 0;
}
