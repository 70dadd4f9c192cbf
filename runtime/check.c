// check.c - `fnnc check`: the compiled gradient against finite differences.
//
// One random batch (inputs ~ N(0,1); classes uniform in [0,K), or targets
// ~ N(0,1)), parameters initialised from the seed. grad_step gives the analytic
// gradient a; for up to 12 coordinates w of each parameter (chosen from the
// seed), eval_step's loss at w+h, w and w-h gives three slopes
//   central  (L(w+h) - L(w-h)) / 2h
//   forward  (L(w+h) - L(w)) / h        backward  (L(w) - L(w-h)) / h
// and the coordinate's error is the smallest of
//   |a - slope| / max(|a|, |slope|, floor)
// over the three, with h = 1e-2 and, if that fails, h = 1e-3.
//
// Why: a smooth loss passes on the central slope. With ReLU or max-pool a kink
// often lies within h of w (for a first-layer weight, about 1% of the rows put
// one there); then the slope on the kink-free side still matches, or the
// smaller h steps over no kink. A wrong gradient (a sign, a factor, a wrong
// element) matches none of the six slopes.
// floor = max(1e-3, noise / tol), where noise = 32 * FLT_EPSILON * max(|L|, 1) / span
// is what float32 rounding of the loss (measured: about 4 ulps on a dense
// layer; 8x margin) puts into a slope over `span`: tiny gradients are compared
// with the noise rather than with themselves. (At h = 1e-3 that allowance is
// 10x looser; the smaller step is only a second chance for kinked coordinates.)
// Measured on the hand-written models of tests/runtime/fixture.c: no false FAIL
// over 100 seeds at batch 1..256 (worst 0.96 * tol, ReLU at batch 256), and
// every seeded sign, factor and swapped-row bug FAILs.
#include "fnnrt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// util.c
void rt_rng_seed(uint64_t s[4], uint64_t seed, uint64_t stream);
uint64_t rt_rng_below(uint64_t s[4], uint64_t n);
double rt_rng_normal(uint64_t s[4]);
void rt_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
float *rt_alloc_floats(const char *prog, const char *what, int64_t n);
int rt_flag_value(const char *prog, int argc, char **argv, int *i, const char *name, const char **val);
int rt_parse_int(const char *prog, const char *flag, const char *s, int64_t min, int64_t *out);
int rt_parse_pos_real(const char *prog, const char *flag, const char *s, double *out);
void rt_unknown_flag(const char *prog, const char *arg, const char *const *names);

// train.c
typedef struct RtModel RtModel;
RtModel *rt_model_open(const FnnModel *m);
int rt_model_setup(RtModel *r, const char *prog, int64_t batch, uint64_t seed, FnnArgs *a);
void rt_model_free(RtModel *r);
const char *rt_model_name(const RtModel *r);
int rt_model_nparams(const RtModel *r);
int64_t rt_model_input_numel(const RtModel *r);
int64_t rt_model_target(const RtModel *r, int *classify);
const char *rt_model_param(const RtModel *r, int i, int64_t *offset, int64_t *numel, char *shape, size_t cap);

#define STREAM_BATCH 0x20000u
#define STREAM_COORDS 0x30000u
#define NCOORDS 12
#define STEP 1e-2   // h; tried second: h / 10
#define FLOOR 1e-3  // the smallest denominator of the relative error
#define NOISE 32    // float32 rounding error of a loss L, in units of FLT_EPSILON * |L|

static const char *const check_flags[] = {"--seed", "--batch", "--tol", "--help", NULL};

static double eval_loss(const FnnModel *m, FnnArgs *a) {
  float out[2] = {0, 0};
  a->out = out;
  m->eval_step(a);
  return out[0];
}

// |a - slope| / max(|a|, |slope|, floor), where floor = max(FLOOR, noise / tol):
// `noise` is the error that float32 rounding of the loss (NOISE ulps of
// max(|L|, 1)) puts into a slope over `span`, so below the floor the gradient
// is compared with the noise instead of with itself.
static double slope_err(double a, double dl, double span, double l0, double tol) {
  double slope = dl / span, noise = NOISE * FLT_EPSILON * (fabs(l0) > 1 ? fabs(l0) : 1) / span;
  double fl = noise / tol > FLOOR ? noise / tol : FLOOR;
  double d = fabs(a) > fabs(slope) ? fabs(a) : fabs(slope);
  if (d < fl) d = fl;
  double e = fabs(a - slope) / d;
  return isnan(e) || !isfinite(a) ? INFINITY : e;
}

// The error of the analytic gradient `a` at one coordinate *w: the best of the
// central and one-sided slopes with step STEP, then (if that fails, as when a
// kink lies within STEP) with STEP / 10.
static double coord_err(const FnnModel *m, FnnArgs *args, float *w, double a, double l0, double tol) {
  float w0 = *w;
  double best = INFINITY;
  for (double h = STEP; h >= STEP / 10 * 0.99 && best > tol; h /= 10) {
    float wp = (float)((double)w0 + h), wm = (float)((double)w0 - h);
    double hp = (double)wp - w0, hm = (double)w0 - wm;  // the steps float32 can represent
    *w = wp;
    double lp = eval_loss(m, args);
    *w = wm;
    double lm = eval_loss(m, args);
    *w = w0;
    double e[3] = {slope_err(a, lp - lm, hp + hm, l0, tol), slope_err(a, lp - l0, hp, l0, tol),
                   slope_err(a, l0 - lm, hm, l0, tol)};
    for (int i = 0; i < 3; i++)
      if (e[i] < best) best = e[i];
  }
  return best;
}

int fnn_check(const FnnModel *m, int argc, char **argv) {
  const char *prog = argc > 0 && argv[0] ? argv[0] : "fnn";
  int64_t seed = 1, batch = 4;
  double tol = 1e-2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    int k;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: %s [flags]\n"
             "checks the compiled gradient against central finite differences of the loss\n"
             "\n"
             "  --seed N     seeds the parameters, the batch and the coordinates (default 1)\n"
             "  --batch N    rows in the random batch (default 4)\n"
             "  --tol X      largest relative error that passes (default 1e-2)\n",
             prog);
      return 0;
    }
    if ((k = rt_flag_value(prog, argc, argv, &i, "--seed", &v))) {
      if (k < 0 || rt_parse_int(prog, "--seed", v, 0, &seed)) return 1;
    } else if ((k = rt_flag_value(prog, argc, argv, &i, "--batch", &v))) {
      if (k < 0 || rt_parse_int(prog, "--batch", v, 1, &batch)) return 1;
      if (batch > 65536) {
        rt_error(prog, "'--batch' must be at most 65536 for a gradient check, got %s", v);
        return 1;
      }
    } else if ((k = rt_flag_value(prog, argc, argv, &i, "--tol", &v))) {
      if (k < 0 || rt_parse_pos_real(prog, "--tol", v, &tol)) return 1;
    } else {
      rt_unknown_flag(prog, a, check_flags);
      return 1;
    }
  }

  RtModel *r = rt_model_open(m);
  if (!r) return 1;
  if (!m->eval_step || !m->grad_step) {
    fprintf(stderr, "fnn: internal error: the model has no eval_step or grad_step\n");
    rt_model_free(r);
    return 1;
  }
  int rc = 1, classify;
  int64_t width = rt_model_target(r, &classify), dim = rt_model_input_numel(r);
  float *x = NULL, *y = NULL;
  FnnArgs a;
  if (rt_model_setup(r, prog, batch, (uint64_t)seed, &a) ||
      !(x = rt_alloc_floats(prog, "the input batch", batch * dim)) ||
      !(y = rt_alloc_floats(prog, "the target batch", batch * (classify ? 1 : width))))
    goto out;
  uint64_t s[4];
  rt_rng_seed(s, (uint64_t)seed, STREAM_BATCH);
  for (int64_t i = 0; i < batch * dim; i++) x[i] = (float)rt_rng_normal(s);
  for (int64_t i = 0; i < batch * (classify ? 1 : width); i++) {
    if (classify)
      ((int32_t *)y)[i] = (int32_t)rt_rng_below(s, (uint64_t)width);
    else
      y[i] = (float)rt_rng_normal(s);
  }
  float hyper[FNN_HYP_COUNT] = {0}, out[2] = {0, 0};
  hyper[FNN_HYP_BC1] = hyper[FNN_HYP_BC2] = 1;
  hyper[FNN_HYP_INVN] = 1.0f / (float)batch;
  a.x = x;
  a.y = y;
  a.hyper = hyper;
  a.out = out;
  a.n = batch;
  m->grad_step(&a);
  double lg = out[0];
  double l0 = eval_loss(m, &a);

  int np = rt_model_nparams(r), namew = 4, shapew = 5;
  char shape[160];
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    int n = (int)strlen(rt_model_param(r, i, &off, &numel, shape, sizeof shape)), w = (int)strlen(shape);
    if (n > namew) namew = n;
    if (w > shapew) shapew = w;
  }
  printf("gradient check of '%s': batch %lld, seed %lld, h %.0e, tol %.0e, loss %.6g\n", rt_model_name(r),
         (long long)batch, (long long)seed, STEP, tol, l0);
  int nfail = 0, loss_bad = 0;
  if (!isfinite(l0) || !isfinite(lg) || fabs(lg - l0) > 1e-4 * (fabs(l0) > 1 ? fabs(l0) : 1)) {
    printf("the losses of grad_step (%.9g) and eval_step (%.9g) differ  FAIL\n", lg, l0);
    loss_bad = 1;
  }
  double worst = 0;
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    const char *name = rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    float *w = a.params + off;
    const float *g = a.grads + off;
    int64_t coords[NCOORDS];
    int nc = 0;
    uint64_t cs[4];
    rt_rng_seed(cs, (uint64_t)seed, STREAM_COORDS + (uint64_t)i);
    if (numel <= NCOORDS) {
      for (int64_t j = 0; j < numel; j++) coords[nc++] = j;
    } else {
      while (nc < NCOORDS) {
        int64_t c = (int64_t)rt_rng_below(cs, (uint64_t)numel);
        int dup = 0;
        for (int k = 0; k < nc; k++) dup |= coords[k] == c;
        if (!dup) coords[nc++] = c;
      }
    }
    double maxerr = 0;
    for (int k = 0; k < nc; k++) {
      double e = coord_err(m, &a, w + coords[k], g[coords[k]], l0, tol);
      if (e > maxerr) maxerr = e;
    }
    int ok = maxerr <= tol;
    nfail += !ok;
    if (maxerr > worst) worst = maxerr;
    printf("%-*s  %-*s  max rel err %.1e  %s\n", namew, name, shapew, shape, maxerr, ok ? "ok" : "FAIL");
  }
  if (nfail)
    printf("FAIL: %d of %d parameters (max rel err %.1e, tol %.0e)\n", nfail, np, worst, tol);
  else if (loss_bad)
    printf("FAIL: the losses differ\n");
  else
    printf("ok: all %d parameters (max rel err %.1e, tol %.0e)\n", np, worst, tol);
  fflush(stdout);
  rc = nfail || loss_bad ? 1 : 0;
out:
  free(x);
  free(y);
  rt_model_free(r);
  return rc;
}
