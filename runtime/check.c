// check.c - `fnnc check`: the compiled gradient against finite differences.
//
// One random batch (inputs ~ N(0,1); classes uniform in [0,K), or targets
// ~ N(0,1)), parameters initialised from the seed; grad_step gives the analytic
// gradient a. For coordinates w of each parameter, eval_step's loss L at w,
// w +- h/2 and w +- h gives two central slopes
//   c1 = (L(w+h) - L(w-h)) / 2h        c2 = (L(w+h/2) - L(w-h/2)) / h
// and the coordinate passes if
//   err = |a - c2| / max(|a|, |c2|, 1e-3, N / tol)  <=  tol
// where N is the float32 noise of c2 (below).
//
// Which coordinates: 96 distinct ones drawn from the seed (all of a small
// tensor), judged in order of decreasing |a| until 12 have been judged. Large
// gradients are where a relative error shows above the float32 noise.
//
// Kinks. With ReLU or max-pool the loss is only piecewise smooth; in a CNN most
// weights move some pre-activation across zero within h = 1e-2, and there a
// finite difference is not the derivative. A coordinate is judged only if L is
// smooth enough on [w-h, w+h]:
//   K = |c1 - c2| + |(L(w+h) - 2L(w) + L(w-h)) - 4 (L(w+h/2) - 2L(w) + L(w-h/2))| / 2h
// is 0 (up to O(h^2) and noise) for a smooth L, and for one kink anywhere in
// [w-h, w+h] it is at least the error the kink puts into c2. So a coordinate
// with K <= the allowance of the judgement cannot fail because of a kink; one
// with a larger K is set aside. If fewer than 12 coordinates are smooth at h,
// the set-aside ones get a second chance at h / 10. A wrong gradient does not
// make L kinked, so it is judged and fails; a parameter with no judgeable
// coordinate fails too.
//
// Noise. The rounding error u of one evaluation of L is measured, not assumed:
// |L(w+d) + L(w-d) - 2L(w)| with d = 1e-4 (the linear term cancels, the
// quadratic one is far below an ulp) over up to 48 coordinates; u = half the
// largest, at least one ulp of max(|L|, 1). K combines L values with weights
// summing to 11/h, so N = 11u/h bounds the noise of both K and c2.
//
// Measured on tests/runtime/fixture.c (dense; ReLU MLP) and on the compiled
// models (tests/gradcheck/, models/): see tests/runtime/run.sh and the report.
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
#define NCOORDS 12            // coordinates judged per parameter
#define MAXTRY (8 * NCOORDS)  // candidate coordinates per parameter
#define NNOISE 4              // noise samples per parameter (at most 48 in all)
#define STEP 1e-2             // h; the small step is h / 10
#define NOISE_STEP 1e-4       // d of the noise measurement
#define FLOOR 1e-3            // the smallest denominator of the relative error
#ifndef CLEAN
#define CLEAN 3    // K <= CLEAN u/h: no kink on [w-h, w+h]
#endif
#ifndef RES
#define RES 4      // a slope over a span h is known to within RES u/h
#endif
#ifndef SKIP
#define SKIP 0.5   // a coordinate known to within more than SKIP |a| is skipped
#endif
#ifndef DENSE
#define DENSE 4    // a parameter with over 1/DENSE of its coordinates kinked is judged at h/10
#endif
#ifndef MARGIN
#define MARGIN 2   // at h/10, a slope is known to within MARGIN (K + RES u/h)
#endif

static const char *const check_flags[] = {"--seed", "--batch", "--tol", "--help", NULL};

typedef struct {
  const FnnModel *m;
  FnnArgs *args;
  double l0;   // the loss at the initial parameters
  double u;    // rounding error of one evaluation of the loss
  double tol;
} Ctx;

static double eval_loss(Ctx *c) {
  float out[2] = {0, 0};
  c->args->out = out;
  c->m->eval_step(c->args);
  return out[0];
}

// L(w+d) and L(w-d) for the coordinate *w; *span = the distance float32 can
// represent between the two points.
static void eval_pair(Ctx *c, float *w, double d, double *lp, double *lm, double *span) {
  float w0 = *w, wp = (float)((double)w0 + d), wm = (float)((double)w0 - d);
  *w = wp;
  *lp = eval_loss(c);
  *w = wm;
  *lm = eval_loss(c);
  *w = w0;
  *span = (double)wp - (double)wm;
}

// The central slopes c1 (step h) and c2 (step h/2) at the coordinate *w, and
// their inconsistency K (0 for a smooth loss, up to O(h^2) and noise).
static void slopes(Ctx *c, float *w, double h, double *c2, double *kink) {
  double l1p, l1m, s1, l2p, l2m, s2;
  eval_pair(c, w, h, &l1p, &l1m, &s1);
  eval_pair(c, w, h / 2, &l2p, &l2m, &s2);
  double c1 = (l1p - l1m) / s1;
  *c2 = (l2p - l2m) / s2;
  *kink = fabs(c1 - *c2) + fabs((l1p - 2 * c->l0 + l1m) - 4 * (l2p - 2 * c->l0 + l2m)) / (2 * h);
}

// The relative error of `a` against a slope c2 known to within `res`:
// |a - c2| / max(|a|, |c2|, FLOOR, res / tol); -1 if res is too coarse to say
// anything (the coordinate is skipped).
static double judge(Ctx *c, double a, double c2, double res) {
  if (!isfinite(a) || !isfinite(c2) || !isfinite(res)) return INFINITY;
  double d = fabs(a) > fabs(c2) ? fabs(a) : fabs(c2);
  if (d < FLOOR) d = FLOOR;
  if (res > SKIP * d) return -1;
  if (d < res / c->tol) d = res / c->tol;
#ifdef CHECK_DEBUG
  fprintf(stderr, "a %.5e c2 %.5e res %.2e err %.2e\n", a, c2, res, fabs(a - c2) / d);
#endif
  return fabs(a - c2) / d;
}

// Judges `a` at the small step h/10, within the inconsistency measured there.
static double judge_small(Ctx *c, float *w, double a) {
  double c2, kink, h = STEP / 10;
  slopes(c, w, h, &c2, &kink);
  return judge(c, a, c2, MARGIN * (kink + RES * c->u / h));
}

// Sorts coordinates by decreasing |g| (insertion sort: at most MAXTRY).
static void sort_by_grad(int64_t *idx, int n, const float *g) {
  for (int i = 1; i < n; i++) {
    int64_t t = idx[i];
    int j = i;
    for (; j > 0 && fabsf(g[idx[j - 1]]) < fabsf(g[t]); j--) idx[j] = idx[j - 1];
    idx[j] = t;
  }
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
             "checks the compiled gradient against finite differences of the compiled loss\n"
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
  int rc = 1, classify, np = rt_model_nparams(r);
  int64_t width = rt_model_target(r, &classify), dim = rt_model_input_numel(r);
  float *x = NULL, *y = NULL;
  int64_t(*cand)[MAXTRY] = calloc((size_t)np + 1, sizeof *cand);
  int *ncand = calloc((size_t)np + 1, sizeof *ncand);
  FnnArgs a;
  if (!cand || !ncand) {
    rt_error(prog, "out of memory");
    goto out;
  }
  if (rt_model_setup(r, prog, batch, (uint64_t)seed, &a) ||
      !(x = rt_alloc_floats(prog, "the input batch", batch * dim)) ||
      !(y = rt_alloc_floats(prog, "the target batch", batch * (classify ? 1 : width))))
    goto out;

  // The batch, the gradient, the loss.
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
  Ctx c = {m, &a, 0, 0, tol};
  c.l0 = eval_loss(&c);

  // Candidate coordinates of each parameter, largest gradients first.
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    uint64_t cs[4];
    rt_rng_seed(cs, (uint64_t)seed, STREAM_COORDS + (uint64_t)i);
    int n = numel < MAXTRY ? (int)numel : MAXTRY;
    for (int k = 0; k < n; k++) {
      int dup;
      do {
        cand[i][k] = (int64_t)rt_rng_below(cs, (uint64_t)numel);
        dup = 0;
        for (int q = 0; q < k; q++) dup |= cand[i][q] == cand[i][k];
      } while (dup);
    }
    ncand[i] = n;
  }

  // The noise of one loss evaluation, from the first candidates (in draw order).
  double worst_noise = 0;
  int nnoise = 0;
  for (int i = 0; i < np && nnoise < 48; i++)
    for (int k = 0; k < ncand[i] && k < NNOISE && nnoise < 48; k++, nnoise++) {
      int64_t off, numel;
      char shape[160];
      rt_model_param(r, i, &off, &numel, shape, sizeof shape);
      double lp, lm, span;
      eval_pair(&c, a.params + off + cand[i][k], NOISE_STEP, &lp, &lm, &span);
      double n2 = fabs(lp + lm - 2 * c.l0);
      if (n2 > worst_noise || !isfinite(n2)) worst_noise = n2;
    }
  double ulp = FLT_EPSILON * (fabs(c.l0) > 1 ? fabs(c.l0) : 1);
  c.u = worst_noise / 2 > ulp ? worst_noise / 2 : ulp;
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    sort_by_grad(cand[i], ncand[i], a.grads + off);
  }

  int namew = 4, shapew = 5;
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    int n = (int)strlen(rt_model_param(r, i, &off, &numel, shape, sizeof shape)), w = (int)strlen(shape);
    if (n > namew) namew = n;
    if (w > shapew) shapew = w;
  }
  printf("gradient check of '%s': batch %lld, seed %lld, h %.0e, tol %.0e, loss %.6g (noise %.1g)\n",
         rt_model_name(r), (long long)batch, (long long)seed, STEP, tol, c.l0, c.u);
  int nfail = 0, loss_bad = 0;
  if (!isfinite(c.l0) || !isfinite(lg) || fabs(lg - c.l0) > 1e-4 * (fabs(c.l0) > 1 ? fabs(c.l0) : 1)) {
    printf("the losses of grad_step (%.9g) and eval_step (%.9g) differ  FAIL\n", lg, c.l0);
    loss_bad = 1;
  }
  double worst = 0;
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    const char *name = rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    float *w = a.params + off;
    const float *g = a.grads + off;
    // A first look at step h. A parameter whose loss is kinked at many of its
    // coordinates (a convolution under ReLU) is judged at h/10 throughout: over
    // many kinks the slope at h is an average that K cannot tell from a
    // smooth one. Otherwise smooth coordinates are judged at h, kinked ones
    // at h/10.
    int n1 = ncand[i] < NCOORDS ? ncand[i] : NCOORDS, nk = 0, judged = 0;
    double c2s[NCOORDS], kinks[NCOORDS], clean = CLEAN * c.u / STEP;
    for (int k = 0; k < n1; k++) {
      slopes(&c, w + cand[i][k], STEP, &c2s[k], &kinks[k]);
      nk += kinks[k] > clean;
    }
    int dense = DENSE * nk > n1;
    double maxerr = 0;
    for (int k = 0; k < ncand[i] && judged < NCOORDS; k++) {
      int64_t j = cand[i][k];
      double c2 = 0, kink = INFINITY;
      if (k < n1) {
        c2 = c2s[k];
        kink = kinks[k];
      } else if (!dense) {
        slopes(&c, w + j, STEP, &c2, &kink);
      }
      double e = !dense && kink <= clean ? judge(&c, g[j], c2, RES * c.u / STEP) : judge_small(&c, w + j, g[j]);
      if (e < 0) continue;
      judged++;
      if (e > maxerr) maxerr = e;
    }
#ifdef CHECK_DEBUG
    fprintf(stderr, "%s judged %d kinked %d/%d dense %d\n", name, judged, nk, n1, dense);
#endif
    int ok = judged > 0 && maxerr <= tol;
    nfail += !ok;
    if (judged && maxerr > worst) worst = maxerr;
    if (judged)
      printf("%-*s  %-*s  max rel err %.1e  %s\n", namew, name, shapew, shape, maxerr, ok ? "ok" : "FAIL");
    else
      printf("%-*s  %-*s  the loss is not smooth at any coordinate tried  FAIL\n", namew, name, shapew, shape);
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
  free(cand);
  free(ncand);
  free(x);
  free(y);
  rt_model_free(r);
  return rc;
}
