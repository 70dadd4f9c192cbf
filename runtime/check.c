// check.c - `fnnc check`: the compiled gradient against finite differences.
//
// One random batch (inputs ~ N(0,1); classes uniform in [0,K), or targets
// ~ N(0,1)), parameters initialised from the seed. grad_step gives the analytic
// gradient a. For coordinates w of each parameter (chosen from the seed),
// eval_step's loss L at w, w +- h/2 and w +- h gives two central slopes
//   c1 = (L(w+h) - L(w-h)) / 2h      c2 = (L(w+h/2) - L(w-h/2)) / h
// and the coordinate's error is
//   |a - c2| / max(|a|, |c2|, floor).
//
// Kinks. With ReLU or max-pool the loss is only piecewise smooth, and in a
// convolution nearly every weight moves some pre-activation across zero within
// h = 1e-2. Near a kink a central difference is simply not the derivative, so a
// coordinate is judged only where L is smooth on [w-h, w+h]: c1 must agree with
// c2 (odd part) and the second differences must scale like h^2,
// L(w+h) - 2L(w) + L(w-h) = 4 (L(w+h/2) - 2L(w) + L(w-h/2)) (even part; this
// catches a kink right at w). A coordinate that fails either test (beyond tol
// and float noise) is set aside and another is drawn, up to 96 per parameter;
// if fewer than 12 smooth coordinates turn up, the set-aside ones get a second
// chance with h = 1e-3. A wrong gradient (a sign, a factor, a wrong element)
// does not make L kinked, so it is judged and FAILs; a parameter with no
// smooth coordinate at all FAILs too.
//
// Noise. float32 rounding of the loss is taken as u = 8 * FLT_EPSILON * max(|L|, 1)
// per evaluation (measured: about 2 ulps on a dense layer), so c2 carries up to
// 2u/h of noise: floor = max(1e-3, 2u / (h * tol)). Below the floor a gradient
// is compared with the noise instead of with itself.
//
// Measured on tests/runtime/fixture.c (dense, ReLU MLP) and the compiled models
// (see tests/runtime/run.sh and the report in the commit): no false FAIL over
// many seeds, and every seeded sign, factor and swapped-row bug FAILs.
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
#define NCOORDS 12            // smooth coordinates judged per parameter
#define MAXTRY (8 * NCOORDS)  // coordinates tried per parameter
#define STEP 1e-2             // h; the second chance uses STEP / 10
#define FLOOR 1e-3            // the smallest denominator of the relative error
#define NOISE_ULPS 8          // float32 rounding of one loss, in FLT_EPSILON * max(|L|, 1)

static const char *const check_flags[] = {"--seed", "--batch", "--tol", "--help", NULL};

static double eval_loss(const FnnModel *m, FnnArgs *a) {
  float out[2] = {0, 0};
  a->out = out;
  m->eval_step(a);
  return out[0];
}

// The error of the analytic gradient `a` at the coordinate *w with step h, or
// -1 if L is not smooth enough on [w-h, w+h] to judge it.
static double coord_err(const FnnModel *m, FnnArgs *args, float *w, double a, double l0, double h, double tol) {
  float w0 = *w;
  double l[4], span[2];  // L(w+h), L(w-h), L(w+h/2), L(w-h/2)
  for (int k = 0; k < 2; k++) {
    double hk = k ? h / 2 : h;
    float wp = (float)((double)w0 + hk), wm = (float)((double)w0 - hk);
    span[k] = (double)wp - (double)wm;  // the steps float32 can represent
    *w = wp;
    l[2 * k] = eval_loss(m, args);
    *w = wm;
    l[2 * k + 1] = eval_loss(m, args);
  }
  *w = w0;
  double c1 = (l[0] - l[1]) / span[0], c2 = (l[2] - l[3]) / span[1];
  double u = NOISE_ULPS * FLT_EPSILON * (fabs(l0) > 1 ? fabs(l0) : 1);
  double budget = tol * (fabs(c2) > FLOOR ? fabs(c2) : FLOOR);
  double odd = fabs(c1 - c2) - 3 * u / h;
  double even = fabs((l[0] - 2 * l0 + l[1]) - 4 * (l[2] - 2 * l0 + l[3])) / (2 * h) - 8 * u / h;
  if (!isfinite(c1) || !isfinite(c2)) return INFINITY;
  if (odd > budget || even > budget) return -1;
  double fl = 2 * u / (h * tol) > FLOOR ? 2 * u / (h * tol) : FLOOR;
  double d = fabs(a) > fabs(c2) ? fabs(a) : fabs(c2);
  if (d < fl) d = fl;
  double e = fabs(a - c2) / d;
  return isnan(e) || !isfinite(a) ? INFINITY : e;
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
    // Candidates: distinct coordinates in a seeded order.
    int64_t cand[MAXTRY], kinked[MAXTRY];
    int ncand = numel < MAXTRY ? (int)numel : MAXTRY, nk = 0, judged = 0;
    uint64_t cs[4];
    rt_rng_seed(cs, (uint64_t)seed, STREAM_COORDS + (uint64_t)i);
    for (int k = 0; k < ncand; k++) {
      int dup;
      do {
        cand[k] = (int64_t)rt_rng_below(cs, (uint64_t)numel);
        dup = 0;
        for (int q = 0; q < k; q++) dup |= cand[q] == cand[k];
      } while (dup);
    }
    double maxerr = 0;
    for (int k = 0; k < ncand && judged < NCOORDS; k++) {
      double e = coord_err(m, &a, w + cand[k], g[cand[k]], l0, STEP, tol);
      if (e < 0) {
        kinked[nk++] = cand[k];
        continue;
      }
      judged++;
      if (e > maxerr) maxerr = e;
    }
    int second = 0;
    for (int k = 0; k < nk && judged < NCOORDS; k++) {
      double e = coord_err(m, &a, w + kinked[k], g[kinked[k]], l0, STEP / 10, tol);
      second++;
      if (e < 0) continue;
      judged++;
      if (e > maxerr) maxerr = e;
    }
    if (getenv("XDBG")) fprintf(stderr, "%s judged %d kinked %d second %d\n", name, judged, nk, second);
    if (!judged) maxerr = INFINITY;
    int ok = maxerr <= tol;
    nfail += !ok;
    if (maxerr > worst) worst = maxerr;
    if (judged)
      printf("%-*s  %-*s  max rel err %.1e  %s\n", namew, name, shapew, shape, maxerr, ok ? "ok" : "FAIL");
    else
      printf("%-*s  %-*s  no coordinate where the loss is smooth  FAIL\n", namew, name, shapew, shape);
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
