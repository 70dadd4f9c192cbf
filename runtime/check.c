// check.c - `fnnc check`: the compiled gradient against finite differences.
//
// One random batch (inputs ~ N(0,1); classes uniform in [0,K), or targets
// ~ N(0,1)), parameters initialised from the seed; grad_step gives the analytic
// gradient a. For a coordinate w of a parameter, eval_step's loss L at w,
// w +- s/2 and w +- s gives two central slopes
//   c1 = (L(w+s) - L(w-s)) / 2s        c2 = (L(w+s/2) - L(w-s/2)) / s
// and a passes if
//   err = |a - c2| / max(|a|, |c2|, 1e-3, res / tol)  <=  tol
// where res is how well c2 is known (below): a relative error whose floor is
// raised to the numerical resolution. A parameter's line shows the largest err
// of its coordinates.
//
// Coordinates: 96 distinct ones drawn from the seed (all of a small tensor),
// judged in order of decreasing |a| until 12 have been: large gradients are
// where a wrong gradient shows above float32 noise.
//
// Noise: the rounding error of one evaluation of L is measured, not assumed.
// The fourth difference N4 = L(w+2d) - 4L(w+d) + 6L(w) - 4L(w-d) + L(w-2d),
// d = 5e-4, is pure rounding noise for a smooth L (d^4 times the fourth
// derivative is far below an ulp), and d is large enough to change every
// rounding; over up to 48 coordinates u = median |N4| / 2 (about 3 sigma of one
// evaluation; the median shrugs off coordinates where a kink got in), at least
// one ulp of max(|L|, 1). A slope over a span s carries about u/s of noise.
//
// Kinks: with ReLU or max-pool L is only piecewise smooth, and across a kink a
// finite difference is not the derivative. The inconsistency
//   K = |c1 - c2| + |(L(w+s) - 2L(w) + L(w-s)) - 4 (L(w+s/2) - 2L(w) + L(w-s/2))| / 2s
// is 0 for a smooth L up to O(s^2) and noise (measured: below 7.5u/s), and for one
// kink anywhere in [w-s, w+s] at least the error the kink puts into c2. Each
// parameter first looks at its 12 largest-gradient coordinates with s = h = 1e-2:
//   - all smooth (K <= 8u/h): they are judged at h with res = 9u/h;
//   - any kinked: every coordinate of the parameter is judged at s = h/10,
//     from two sets of points (s, s/2 and 0.7s, 0.35s): the mean of their c2,
//     K = the larger K + the difference of the two c2, res = 4K + 3u/0.7s.
//     Kinks are then usually many (in a convolution under ReLU nearly every
//     weight moves some pre-activation across zero within 1e-2): the slope
//     over h is an average over them that K cannot always tell from a smooth
//     slope; over h/10 there are few, and K (with a margin for several, which
//     can cancel out of one set's K but hardly out of both) bounds their effect.
// A coordinate whose res exceeds half of max(|a|, 1e-3) says nothing and is
// skipped; a parameter left with no judged coordinate is "not checked" (not a
// FAIL, unless no parameter at all could be checked).
//
// Measured (30 seeds each, batch 4 unless said): no false FAIL on the fixture
// models (dense, and a ReLU MLP, at batch 1..256), on tests/gradcheck/*.fnn and
// on models/mnist.fnn and mlp.fnn; every gradient scaled by 1.1 through
// FNNC_BREAK_GRAD (relu, tanh, conv2d, maxpool, matmul, xent, exp, log, sqrt,
// div, mul, add, concat, sigmoid on their gradcheck models; relu, conv2d and
// maxpool in model_mnist; relu in model_mlp and in relu.fnn at batch 16) FAILs
// for 8 of 8 seeds, as does every seeded sign, factor and swapped-row bug of the
// fixture. At batch 256 the ReLU MLP has some parameters "not checked" for 3
// seeds in 12: its kinks are dense and its gradients small.
//
// Frozen parameters (a LoRA adapter's base weight and bias) have no gradient:
// they are listed as frozen, not checked. Parameters initialised to zeros
// (LoRA's B) start from U(-0.5, 0.5) here instead: at zero, every gradient
// that flows through them (LoRA's A) would be zero and its check vacuous.
#include "rt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_BATCH 0x20000u
#define STREAM_COORDS 0x30000u
#define STREAM_ZERO 0x40000u
#define NCOORDS 12            // coordinates judged per parameter
#define MAXTRY (8 * NCOORDS)  // candidate coordinates per parameter
#define NNOISE 4              // noise samples per parameter (at most 48 in all)
#define STEP 1e-2             // h; the small step is h / 10
#define NOISE_STEP 5e-4       // d of the noise measurement
#define FLOOR 1e-3            // the smallest denominator of the relative error
#define CLEAN 8    // K <= CLEAN u/s: smooth on [w-s, w+s] (K of a smooth L stays below 7.5u/s)
#define RES_H 9    // at h, a smooth slope is known to within RES_H u/h (an unseen kink + noise)
#define KMARGIN 4  // at h/10, within KMARGIN K + RES_S u/s: K underestimates several kinks
#define RES_S 3
#define SKIP 0.5   // a coordinate known to within more than SKIP max(|a|, 1e-3) is skipped

static const char *const check_flags[] = {"--seed", "--batch", "--tol", "--help", NULL};

typedef struct {
  const FnnModel *m;
  FnnArgs *args;
  double l0;   // the loss at the initial parameters
  double u;    // rounding error of one evaluation of the loss
  double tol;
  float *out;  // eval_step's metrics and outputs: FNN_OUT_ROWS + batch * width floats
} Ctx;

static double eval_loss(Ctx *c) {
  c->out[FNN_OUT_LOSS] = 0;
  c->args->out = c->out;
  c->m->eval_step(c->args);
  return c->out[FNN_OUT_LOSS];
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
  return fabs(a - c2) / d;
}

// Judges `a` at the small step s = h/10 from two sets of points (s, s/2 and
// 0.7s, 0.35s): several kinks can cancel out of one set's K, hardly out of
// both and out of the difference of their slopes too.
static double judge_small(Ctx *c, float *w, double a) {
  double s = STEP / 10, ca, ka, cb, kb;
  slopes(c, w, s, &ca, &ka);
  slopes(c, w, 0.7 * s, &cb, &kb);
  double kink = (ka > kb ? ka : kb) + fabs(ca - cb);
  return judge(c, a, (ca + cb) / 2, KMARGIN * kink + RES_S * c->u / (0.7 * s));
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
  int64_t steps, vocab = rt_model_tokens(r, &steps);  // tokens: ids below vocab; steps target ids per row
  int64_t ny = rt_model_y_words(r);
  float *x = NULL, *y = NULL, *eout = NULL;
  int64_t(*cand)[MAXTRY] = calloc((size_t)np + 1, sizeof *cand);
  int *ncand = calloc((size_t)np + 1, sizeof *ncand);
  FnnArgs a;
  if (!cand || !ncand) {
    rt_error(prog, "out of memory");
    goto out;
  }
  if (rt_model_setup(r, prog, batch, (uint64_t)seed, &a) ||
      !(x = rt_alloc_floats(prog, "the input batch", batch * dim)) ||
      !(y = rt_alloc_floats(prog, "the target batch", batch * ny)) ||
      !(eout = rt_alloc_floats(prog, "the outputs", FNN_OUT_ROWS + batch * rt_model_out_floats(r))))
    goto out;

  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    if (!rt_model_param_zero(r, i) || rt_model_param_grad(r, i) < 0) continue;
    uint64_t zs[4];
    rt_rng_seed(zs, (uint64_t)seed, STREAM_ZERO + (uint64_t)i);
    for (int64_t j = 0; j < numel; j++) a.params[off + j] = (float)(rt_rng_unit(zs) - 0.5);
  }

  // The batch, the gradient, the loss.
  uint64_t s[4];
  rt_rng_seed(s, (uint64_t)seed, STREAM_BATCH);
  for (int64_t i = 0; i < batch * dim; i++) {
    if (vocab)
      ((int32_t *)(void *)x)[i] = (int32_t)rt_rng_below(s, (uint64_t)vocab);
    else
      x[i] = (float)rt_rng_normal(s);
  }
  for (int64_t i = 0; i < batch * ny; i++) {
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
  Ctx c = {m, &a, 0, 0, tol, eout};
  c.l0 = eval_loss(&c);

  // Candidate coordinates of each parameter, largest gradients first.
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    if (rt_model_param_grad(r, i) < 0) continue;  // frozen: no gradient, nothing to check
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
  double noise[48];
  int nnoise = 0;
  for (int i = 0; i < np && nnoise < 48; i++)
    for (int k = 0; k < ncand[i] && k < NNOISE && nnoise < 48; k++) {
      int64_t off, numel;
      char shape[160];
      rt_model_param(r, i, &off, &numel, shape, sizeof shape);
      double l2p, l2m, l1p, l1m, span;
      eval_pair(&c, a.params + off + cand[i][k], 2 * NOISE_STEP, &l2p, &l2m, &span);
      eval_pair(&c, a.params + off + cand[i][k], NOISE_STEP, &l1p, &l1m, &span);
      double n4 = fabs(l2p - 4 * l1p + 6 * c.l0 - 4 * l1m + l2m);
      noise[nnoise++] = isfinite(n4) ? n4 : INFINITY;
    }
  // u = the median / 2, at least one ulp of max(|L|, 1).
  for (int k = 1; k < nnoise; k++)
    for (int q = k; q > 0 && noise[q - 1] > noise[q]; q--) {
      double t = noise[q];
      noise[q] = noise[q - 1];
      noise[q - 1] = t;
    }
  double ulp = FLT_EPSILON * (fabs(c.l0) > 1 ? fabs(c.l0) : 1);
  c.u = nnoise ? noise[nnoise / 2] / 2 : 0;
  if (!(c.u > ulp)) c.u = isnan(c.u) ? INFINITY : ulp;
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    if (ncand[i]) sort_by_grad(cand[i], ncand[i], a.grads + rt_model_param_grad(r, i));
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
  int nfail = 0, nskip = 0, nfrozen = 0, loss_bad = 0;
  if (!isfinite(c.l0) || !isfinite(lg) || fabs(lg - c.l0) > 1e-4 * (fabs(c.l0) > 1 ? fabs(c.l0) : 1)) {
    printf("the losses of grad_step (%.9g) and eval_step (%.9g) differ  FAIL\n", lg, c.l0);
    loss_bad = 1;
  }
  double worst = 0;
  for (int i = 0; i < np; i++) {
    int64_t off, numel;
    char shape[160];
    const char *name = rt_model_param(r, i, &off, &numel, shape, sizeof shape);
    if (rt_model_param_grad(r, i) < 0) {
      nfrozen++;
      printf("%-*s  %-*s  frozen: no gradient\n", namew, name, shapew, shape);
      continue;
    }
    float *w = a.params + off;
    const float *g = a.grads + rt_model_param_grad(r, i);
    // A first look at step h. If the loss is smooth at all of the first 12
    // coordinates, they are judged at h; if it is kinked at any, the whole
    // parameter is judged at h/10: where kinks are many (a convolution under
    // ReLU) the slope over h is an average over them that K cannot always
    // tell from a smooth slope.
    int n1 = ncand[i] < NCOORDS ? ncand[i] : NCOORDS, nk = 0, judged = 0;
    double c2s[NCOORDS], kinks[NCOORDS], clean = CLEAN * c.u / STEP;
    for (int k = 0; k < n1; k++) {
      slopes(&c, w + cand[i][k], STEP, &c2s[k], &kinks[k]);
      nk += kinks[k] > clean;
    }
    int dense = nk > 0;
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
      double e = !dense && kink <= clean ? judge(&c, g[j], c2, RES_H * c.u / STEP) : judge_small(&c, w + j, g[j]);
      if (e < 0) continue;
      judged++;
      if (e > maxerr) maxerr = e;
    }
    if (!judged) {
      nskip++;
      printf("%-*s  %-*s  not checked: kinks and float32 noise leave no coordinate to judge\n", namew, name, shapew,
             shape);
      continue;
    }
    int ok = maxerr <= tol;
    nfail += !ok;
    if (maxerr > worst) worst = maxerr;
    printf("%-*s  %-*s  max rel err %.1e  %s\n", namew, name, shapew, shape, maxerr, ok ? "ok" : "FAIL");
  }
  int ntr = np - nfrozen;  // the parameters with a gradient
  if (nskip)
    printf("note: %d of %d parameters not checked; a smaller --batch (fewer kinks, larger gradients) may help\n", nskip,
           ntr);
  if (nfail)
    printf("FAIL: %d of %d parameters (max rel err %.1e, tol %.0e)\n", nfail, ntr - nskip, worst, tol);
  else if (loss_bad)
    printf("FAIL: the losses differ\n");
  else if (nskip == ntr && ntr > 0)
    printf("FAIL: no parameter could be checked\n");
  else
    printf("ok: %s%d parameters (max rel err %.1e, tol %.0e)%s\n", nskip ? "" : "all ", ntr - nskip, worst, tol,
           nfrozen ? "; frozen ones skipped" : "");
  rc = nfail || loss_bad || (nskip == ntr && ntr > 0) ? 1 : 0;
  fflush(stdout);
out:
  free(cand);
  free(ncand);
  free(x);
  free(y);
  free(eout);
  rt_model_free(r);
  return rc;
}
