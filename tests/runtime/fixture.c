// fixture.c - a TEST DOUBLE for the runtime's driver (train.c, data.c, check.c).
//
// It stands in for what the compiler generates: a model descriptor plus the
// three entry points, written by hand in plain C. It is not how fnnc compiles
// models and tests nothing of the compiler; it lets tests/runtime/run.sh
// exercise flag parsing, data loading, batching, logging and the gradient check
// before (and independently of) the code generator.
//
//   fixture MODEL run   [trainer flags]   fnn_main
//   fixture MODEL check [check flags]     fnn_check
//
// MODEL:
//   linear   softmax regression 784 -> 10 on IDX MNIST ("fc.weight", "fc.bias")
//   mlp      784 -> 32 -> relu -> 10 on IDX MNIST (a kinked loss, for the check)
//   flat     the linear model with input [784] instead of [1,28,28]
//   csv      softmax regression 4 -> 3 on tiny/train.csv, tiny/test.csv
//   reg      linear regression 3 -> 2 (mse) on tiny/reg_train.csv, tiny/reg_test.csv
//   nodata   the linear model without data sources
//   bad      a malformed descriptor (std 0 on line 10)
// FIXTURE_BUG=sign|factor|swap in the environment makes grad_step wrong (for check).
// A training step before the model's ready hook ran (or after it ran twice)
// exits with status 3.
#include "fnnrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
  int64_t D, H, K;  // inputs, hidden units (0: none), outputs
  int classify;
  int64_t w1, b1, w2, b2;  // parameter offsets (w1/b1 unused without a hidden layer)
  int64_t nparam;
  const char *bug;
} G;

// Forward pass of row r: hidden pre-activations hp [H] and outputs z [K] in `work`.
static void forward(const FnnArgs *a, int64_t r, float *hp, float *z) {
  const float *x = a->x + r * G.D, *p = a->params;
  const float *in = x;
  int64_t din = G.D;
  float h[64];
  if (G.H) {
    for (int64_t i = 0; i < G.H; i++) {
      float s = p[G.b1 + i];
      for (int64_t j = 0; j < G.D; j++) s += p[G.w1 + i * G.D + j] * x[j];
      hp[i] = s;
      h[i] = s > 0 ? s : 0;
    }
    in = h;
    din = G.H;
  }
  for (int64_t k = 0; k < G.K; k++) {
    float s = p[G.b2 + k];
    for (int64_t j = 0; j < din; j++) s += p[G.w2 + k * din + j] * in[j];
    z[k] = s;
  }
}

// Loss of row r from z; dz = dloss/dz (unscaled by 1/n); returns the loss.
static float row_loss(const FnnArgs *a, int64_t r, const float *z, float *dz, int *correct) {
  if (G.classify) {
    int y = ((const int32_t *)a->y)[r];
    float mx = z[0];
    int arg = 0;
    for (int64_t k = 1; k < G.K; k++)
      if (z[k] > mx) mx = z[k], arg = (int)k;
    float s = 0;
    for (int64_t k = 0; k < G.K; k++) s += expf(z[k] - mx);
    for (int64_t k = 0; k < G.K; k++) dz[k] = expf(z[k] - mx) / s - (k == y);
    *correct = arg == y;
    return logf(s) + mx - z[y];
  }
  const float *t = (const float *)a->y + r * G.K;
  float l = 0;
  for (int64_t k = 0; k < G.K; k++) {
    dz[k] = z[k] - t[k];
    l += 0.5f * dz[k] * dz[k];
  }
  *correct = 0;
  return l;
}

// Loss and correct count over the batch; with `grad`, gradients into a->grads.
static void run(FnnArgs *a, int grad) {
  float loss = 0, ncorrect = 0, invn = a->hyper[FNN_HYP_INVN];
  if (grad) memset(a->grads, 0, sizeof(float) * (size_t)G.nparam);
  for (int64_t r = 0; r < a->n; r++) {
    float *hp = a->work + r * (G.H + G.K), *z = hp + G.H, dz[16], h[64], dh[64];
    int c;
    forward(a, r, hp, z);
    loss += row_loss(a, r, z, dz, &c);
    ncorrect += (float)c;
    if (!grad) {
      // eval_step's outputs: the probabilities (dz + onehot(y)) or the values z.
      float *o = a->out + FNN_OUT_ROWS + r * G.K;
      for (int64_t k = 0; k < G.K; k++)
        o[k] = G.classify ? dz[k] + (k == ((const int32_t *)a->y)[r]) : z[k];
      continue;
    }
    const float *x = a->x + r * G.D, *in = x, *p = a->params;
    int64_t din = G.D;
    if (G.H) {
      for (int64_t i = 0; i < G.H; i++) h[i] = hp[i] > 0 ? hp[i] : 0;
      in = h;
      din = G.H;
    }
    float *g = a->grads;
    for (int64_t k = 0; k < G.K; k++) {
      float d = dz[k] * invn;
      g[G.b2 + k] += d;
      for (int64_t j = 0; j < din; j++) g[G.w2 + k * din + j] += d * in[j];
    }
    if (G.H) {
      for (int64_t i = 0; i < G.H; i++) {
        float s = 0;
        for (int64_t k = 0; k < G.K; k++) s += p[G.w2 + k * G.H + i] * dz[k] * invn;
        dh[i] = hp[i] > 0 ? s : 0;
        g[G.b1 + i] += dh[i];
        for (int64_t j = 0; j < G.D; j++) g[G.w1 + i * G.D + j] += dh[i] * x[j];
      }
    }
  }
  a->out[0] = loss * invn;
  a->out[1] = ncorrect;
  if (grad && G.bug) {
    float *g = a->grads;
    int64_t w = G.H ? G.w1 : G.w2, nw = G.H ? G.H * G.D : G.K * G.D;
    if (!strcmp(G.bug, "sign"))  // the weight gradient of the first layer negated
      for (int64_t i = 0; i < nw; i++) g[w + i] = -g[w + i];
    else if (!strcmp(G.bug, "factor"))  // the output bias gradient doubled
      for (int64_t k = 0; k < G.K; k++) g[G.b2 + k] *= 2;
    else if (!strcmp(G.bug, "swap"))  // the first layer's gradient transposed by one row
      for (int64_t i = 0; i + G.D < nw; i += 2 * G.D)
        for (int64_t j = 0; j < G.D; j++) {
          float t = g[w + i + j];
          g[w + i + j] = g[w + i + G.D + j];
          g[w + i + G.D + j] = t;
        }
  }
}

// The runtime must call the model's ready hook once, before the first
// training step (fnnc run waits there for its compiled step).
static int readies;
static void ready(void) { readies++; }

static void train_step(FnnArgs *a) {
  if (readies != 1) {
    fprintf(stderr, "fixture: a training step after %d calls of ready()\n", readies);
    exit(3);
  }
  run(a, 1);
  float lr = a->hyper[FNN_HYP_LR];
  for (int64_t i = 0; i < G.nparam; i++) a->params[i] -= lr * a->grads[i];
}
static void eval_step(FnnArgs *a) { run(a, 0); }
static void grad_step(FnnArgs *a) { run(a, 1); }

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fixture linear|mlp|flat|csv|reg|nodata|bad run|check [flags]\n");
    return 2;
  }
  const char *model = argv[1], *mode = argv[2];
  const char *input = "3 1 28 28", *data =
      "train idx \"mnist/train-images-idx3-ubyte\" \"mnist/train-labels-idx1-ubyte\"\n"
      "test idx \"mnist/t10k-images-idx3-ubyte\" \"mnist/t10k-labels-idx1-ubyte\"\n";
  const char *norm = "0.1307 0.3081", *target = "class";
  G.D = 784, G.H = 0, G.K = 10, G.classify = 1;
  if (!strcmp(model, "mlp")) {
    G.H = 32;
  } else if (!strcmp(model, "flat")) {
    input = "1 784";
  } else if (!strcmp(model, "csv")) {
    G.D = 4, G.K = 3, input = "1 4", norm = "0 1";
    data = "train csv \"tiny/train.csv\" \"\"\ntest csv \"tiny/test.csv\" \"\"\n";
  } else if (!strcmp(model, "reg")) {
    G.D = 3, G.K = 2, G.classify = 0, input = "1 3", norm = "0 1", target = "values";
    data = "train csv \"tiny/reg_train.csv\" \"\"\ntest csv \"tiny/reg_test.csv\" \"\"\n";
  } else if (!strcmp(model, "nodata")) {
    data = "";
  } else if (strcmp(model, "linear") && strcmp(model, "bad")) {
    fprintf(stderr, "fixture: unknown model '%s'\n", model);
    return 2;
  }
  G.bug = getenv("FIXTURE_BUG");
  char params[512];
  if (G.H) {
    G.w1 = 0, G.b1 = G.H * G.D, G.w2 = G.b1 + G.H, G.b2 = G.w2 + G.K * G.H, G.nparam = G.b2 + G.K;
    snprintf(params, sizeof params,
             "params %lld 4\n"
             "param fc1.weight %lld %lld %lld kaiming_uniform 2 %lld %lld\n"
             "param fc1.bias %lld %lld %lld bias_uniform 1 %lld\n"
             "param fc2.weight %lld %lld %lld kaiming_uniform 2 %lld %lld\n"
             "param fc2.bias %lld %lld %lld bias_uniform 1 %lld\n",
             (long long)G.nparam, (long long)G.w1, (long long)G.w1, (long long)G.D, (long long)G.H, (long long)G.D,
             (long long)G.b1, (long long)G.b1, (long long)G.D, (long long)G.H, (long long)G.w2, (long long)G.w2,
             (long long)G.H, (long long)G.K, (long long)G.H, (long long)G.b2, (long long)G.b2, (long long)G.H,
             (long long)G.K);
  } else {
    G.w2 = 0, G.b2 = G.K * G.D, G.nparam = G.b2 + G.K;
    snprintf(params, sizeof params,
             "params %lld 2\n"
             "param fc.weight %lld %lld %lld kaiming_uniform 2 %lld %lld\n"
             "param fc.bias %lld %lld %lld bias_uniform 1 %lld\n",
             (long long)G.nparam, (long long)G.w2, (long long)G.w2, (long long)G.D, (long long)G.K, (long long)G.D,
             (long long)G.b2, (long long)G.b2, (long long)G.D, (long long)G.K);
  }
  char desc[4096];
  snprintf(desc, sizeof desc,
           "fnn 1\n"
           "model %s\n"
           "input %s\n"
           "target %s %lld\n"
           "batch 64\nepochs 2\nseed 1\nshuffle 1\n"
           "optimizer sgd 0.1 0.9 0.999 1e-08 0 0\n"
           "normalize %s\n"
           "%s"
           "%s"
           "state 0 %lld\n"
           "scratch 0\n"
           "work %lld 0\n"
           "end\n",
           model, input, target, (long long)G.K, !strcmp(model, "bad") ? "0.1 0" : norm, data, params,
           (long long)G.nparam, (long long)(G.H + G.K));
  FnnModel m = {.desc = desc, .train_step = train_step, .eval_step = eval_step, .grad_step = grad_step, .ready = ready};
  argv[2] = argv[0];  // the trainer sees "fixture [flags]"
  if (!strcmp(mode, "run")) return fnn_main(&m, argc - 2, argv + 2);
  if (!strcmp(mode, "check")) return fnn_check(&m, argc - 2, argv + 2);
  fprintf(stderr, "fixture: unknown mode '%s'\n", mode);
  return 2;
}
