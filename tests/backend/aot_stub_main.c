// aot_stub_main.c: a stand-in for runtime/aot_main.o in test_backend.sh. Calls
// the functions test_backend.c compiled ahead of time and checks them.
#include <math.h>
#include <stdint.h>
#include <stdio.h>

void saxpy(float *x, float *y, int64_t n);
void expy(float *x, float *y, int64_t n);
void logy(float *x, float *y, int64_t n);
void use1(float *y);
int64_t use2(int64_t k);
void use3(float *out);
int stub_runtime_marker(void);  // from the stand-in libfnnrt.a

int main(void) {
  enum { N = 37 };
  float x[N], y[N];
  int bad = 0;
  for (int i = 0; i < N; i++) x[i] = 0.25f * (float)i, y[i] = 1.0f;
  saxpy(x, y, N);
  for (int i = 0; i < N; i++) bad += fabsf(y[i] - (2.5f * x[i] + 1.0f)) > 1e-5f;
  for (int i = 0; i < N; i++) y[i] = 0.0f;
  expy(x, y, N);
  for (int i = 0; i < N; i++) bad += fabsf(y[i] - expf(x[i])) > 1e-5f * expf(x[i]);
  for (int i = 0; i < N; i++) x[i] += 0.5f;
  logy(x, y, N);
  for (int i = 0; i < N; i++) bad += fabsf(y[i] - logf(x[i])) > 1e-5f;
  float y2[2] = {10, 20};
  use1(y2);
  bad += y2[0] != 20 || y2[1] != 60 || use2(0) != 2;
  float o[4] = {0};
  use3(o);
  bad += o[0] != 0 || o[1] != 2 || o[2] != 6 || o[3] != 12;
  if (bad || stub_runtime_marker() != 42) {
    printf("aot: %d wrong elements\n", bad);
    return 1;
  }
  printf("aot ok\n");
  return 0;
}
